/**
 * Runs the real Luma controller as a child process (through tsx, so no build is needed) against a
 * real Caddy and the real Docker engine, on free ports, with its own data directory, Docker
 * network and test labels. `stop()` removes every container the instance created.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { LABELS } from '../../src/model.js';
import { testLabels } from './labels.js';
import { freePort, sleep, waitFor } from './ports.js';
import { request } from 'undici';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

export interface LumaOptions {
  caddyAdminUrl: string;
  /** Extra flags, e.g. `['-inactivity-timeout=3s']`. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Reuse a data directory (to restart an instance); a new temp dir otherwise. */
  dataDir?: string;
  network?: string;
  port?: number;
}

export interface LumaInstance {
  /** Caddy's public listener, e.g. `http://127.0.0.1:41234`. */
  url: string;
  port: number;
  dataDir: string;
  network: string;
  options: LumaOptions;
  process: ChildProcess;
  /** Everything the process printed so far (pino JSON lines). */
  output(): string;
  /** Parsed log lines that have `msg` equal to `message`. */
  logs(message?: string): Array<Record<string, unknown>>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  /** Instance id from the data directory. */
  instanceId(): Promise<string>;
  /** Ids of running and stopped containers of this instance. */
  containers(filter?: { service?: string; running?: boolean }): Promise<string[]>;
  /** Stops the process and removes its containers, network and data directory. */
  destroy(): Promise<void>;
}

export async function startLuma(options: LumaOptions): Promise<LumaInstance> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'luma-test-')));
  const network = options.network ?? `luma-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const port = options.port ?? (await freePort());
  const labels = Object.entries(testLabels())
    .map(([key, value]) => `${key}=${value}`)
    .join(',');

  const args = [
    '--import',
    'tsx',
    path.join(ROOT, 'src/main.ts'),
    `-port=${port}`,
    `--caddy-admin=${options.caddyAdminUrl}`,
    `--data-dir=${dataDir}`,
    `--network=${network}`,
    '--api-address=127.0.0.1:0',
    '--wake-address=127.0.0.1:0',
    '--dns-address=127.0.0.1:0',
    '--log-level=debug',
    ...(options.args ?? []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, LUMA_CONTAINER_LABELS: labels, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  // A test worker that exits without destroy() (a crash, a timeout kill) must not leave the
  // controller running: it would keep its ports and go on managing containers.
  const killChild = () => child.kill('SIGKILL');
  process.once('exit', killChild);
  child.once('exit', () => process.off('exit', killChild));

  const url = `http://127.0.0.1:${port}`;
  const instance: LumaInstance = {
    url,
    port,
    dataDir,
    network,
    options: { ...options, dataDir, network, port },
    process: child,
    output: () => output,
    logs: (message) =>
      output
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => {
          try {
            return JSON.parse(line) as Record<string, unknown>;
          } catch {
            return {};
          }
        })
        .filter((entry) => message === undefined || entry.msg === message),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async instanceId() {
      return (await readFile(path.join(dataDir, 'instance-id'), 'utf8')).trim();
    },
    async containers(filter = {}) {
      const id = await instance.instanceId();
      const args = ['ps', '-q', '--no-trunc', '--filter', `label=${LABELS.instance}=${id}`];
      if (filter.service) args.push('--filter', `label=${LABELS.service}=${filter.service}`);
      if (!filter.running) args.push('-a');
      const { stdout } = await execFileAsync('docker', args);
      return stdout.split('\n').filter(Boolean);
    },
    async destroy() {
      await instance.kill();
      const ids = await instance.containers().catch(() => []);
      if (ids.length > 0) await execFileAsync('docker', ['rm', '-f', ...ids]).catch(() => undefined);
      await execFileAsync('docker', ['network', 'rm', network]).catch(() => undefined);
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };

  try {
    await waitFor(
      'luma to answer /api/health through caddy',
      async () => {
        if (child.exitCode !== null) throw new Error(`luma exited with ${child.exitCode}`);
        const response = await fetch(`${url}/api/health`);
        return response.ok ? true : undefined;
      },
      30_000,
      100,
    );
  } catch (error) {
    await instance.kill();
    throw new Error(`luma did not start:\n${output.slice(-4000)}`, { cause: error });
  }
  return instance;
}

/** Connection errors that Caddy 2.6.2 causes on a connection it accepted just before a config reload. */
export function isConnectionReset(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE';
}

/**
 * Sends an API request on a new connection, and again (up to 3 tries) when Caddy resets it. In
 * admin mode every config write makes Caddy 2.6.2 close idle keep-alive connections, and it can
 * reset a new connection accepted just before the reload.
 */
async function apiRequest(url: string, method: 'GET' | 'POST', body?: unknown): Promise<{ status: number; text: string; attempts: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await request(url, {
        method,
        reset: true,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.statusCode, text: await response.body.text(), attempts: attempt };
    } catch (error) {
      if (attempt >= 3 || !isConnectionReset(error)) throw error;
      await sleep(100);
    }
  }
}

/** Registers a service through the API and returns the response body. */
export async function createService(luma: LumaInstance, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const response = await apiRequest(`${luma.url}/api/services`, 'POST', body);
  // A POST that was reset after Luma created the service gets 409 on its retry.
  if (response.status === 409 && response.attempts > 1) return getService(luma, String(body.name));
  if (response.status !== 201) throw new Error(`create service failed: ${response.status} ${response.text}`);
  return JSON.parse(response.text) as Record<string, unknown>;
}

export async function getService(luma: LumaInstance, name: string): Promise<Record<string, any>> {
  const response = await apiRequest(`${luma.url}/api/services/${name}`, 'GET');
  if (response.status !== 200) throw new Error(`get service failed: ${response.status} ${response.text}`);
  return JSON.parse(response.text) as Record<string, any>;
}

export { sleep };
