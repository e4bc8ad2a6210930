import { type ChildProcess, spawn } from 'node:child_process';
import { Agent, request } from 'undici';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from './ports.js';

/** A real Caddy started for one test file. */
export interface CaddyProcess {
  /**
   * Admin endpoint, the same across restarts: `http://127.0.0.1:<port>`, or `unix//<dir>/admin.sock`
   * with `adminSocket`. Both forms are accepted by CaddyAdmin.
   */
  readonly adminUrl: string;
  /** Process id of the current Caddy process; changes on restart. */
  readonly pid: number;
  /** Temporary directory holding the config, HOME and Caddy's data; removed by stop(). */
  readonly dir: string;
  /** Last 64 KiB of Caddy's stderr (its log), for failure messages. */
  output(): string;
  /** Stops Caddy and removes its temporary directory. */
  stop(): Promise<void>;
  /** Restarts Caddy, with the config it was running or with the initial empty one. */
  restart(options: { keepConfig: boolean }): Promise<void>;
  /** Returns the running config as `GET /config/` shows it. */
  config(): Promise<unknown>;
  /** Stops Caddy and keeps its temporary directory, so `start` can run it again. */
  halt(): Promise<void>;
  /** Starts a halted Caddy with `config` (Caddy JSON, for example an earlier `config()`), or with the initial empty one. */
  start(config?: unknown): Promise<void>;
}

export interface StartCaddyOptions {
  /** Caddy binary; default `/usr/bin/caddy`. */
  binary?: string;
  /** Serve the admin API on a unix socket in the temporary directory instead of TCP. */
  adminSocket?: boolean;
}

const OUTPUT_LIMIT = 64 * 1024;
const STOP_TIMEOUT_MS = 5_000;
const START_TIMEOUT_MS = 10_000;

/**
 * Starts `caddy run` with an admin endpoint on a free loopback port and nothing else configured.
 * HOME and the XDG directories point into a temporary directory, so Caddy's autosave and
 * certificate storage never touch the real user's files, and `persist: false` turns autosave off.
 */
export async function startCaddy(options: StartCaddyOptions = {}): Promise<CaddyProcess> {
  const binary = options.binary ?? '/usr/bin/caddy';
  const dir = await mkdtemp(path.join(tmpdir(), 'luma-caddy-'));
  const home = path.join(dir, 'home');
  await mkdir(home);
  const socketPath = path.join(dir, 'admin.sock');
  const adminListen = options.adminSocket === true ? `unix/${socketPath}` : `127.0.0.1:${await freePort()}`;
  const adminUrl = options.adminSocket === true ? adminListen : `http://${adminListen}`;
  // Over a unix socket Caddy accepts only an empty Host header.
  const agent = new Agent(options.adminSocket === true ? { connect: { socketPath } } : {});
  const readConfig = async (): Promise<{ status: number; config: unknown }> => {
    const origin = options.adminSocket === true ? 'http://localhost' : adminUrl;
    const headers = options.adminSocket === true ? { host: '' } : {};
    const response = await request(`${origin}/config/`, { dispatcher: agent, headers, reset: true });
    return { status: response.statusCode, config: await response.body.json() };
  };
  const configFile = path.join(dir, 'caddy.json');
  const initialConfig = {
    admin: { listen: adminListen, config: { persist: false } },
    storage: { module: 'file_system', root: path.join(dir, 'data') },
  };

  let child: ChildProcess | undefined;
  let output = '';

  const launch = async (config: unknown): Promise<void> => {
    await writeFile(configFile, JSON.stringify(config));
    const started = spawn(binary, ['run', '--config', configFile], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: home,
        XDG_DATA_HOME: path.join(home, 'data'),
        XDG_CONFIG_HOME: path.join(home, 'config'),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = started;
    // Stops this Caddy when the test worker exits without stop() (a crash, a timeout kill).
    const killChild = () => started.kill('SIGKILL');
    process.once('exit', killChild);
    started.once('exit', () => process.off('exit', killChild));
    started.stderr?.on('data', (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT);
    });

    let exited = false;
    started.once('exit', () => {
      exited = true;
    });
    await waitFor(
      `caddy admin API at ${adminUrl}`,
      async () => {
        if (exited) throw new Error(`caddy exited during start-up:\n${output}`);
        const { status } = await readConfig();
        return status === 200 ? true : undefined;
      },
      START_TIMEOUT_MS,
      50,
    );
  };

  const terminate = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;

    const exit = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exit;
    clearTimeout(timer);
  };

  await launch(initialConfig);

  return {
    adminUrl,
    dir,
    get pid(): number {
      if (child?.pid === undefined) throw new Error('caddy is not running');
      return child.pid;
    },
    output: () => output,
    async stop(): Promise<void> {
      await terminate();
      await agent.close();
      await rm(dir, { recursive: true, force: true });
    },
    async config(): Promise<unknown> {
      return (await readConfig()).config;
    },
    halt: terminate,
    async start(config: unknown = initialConfig): Promise<void> {
      if (child !== undefined) throw new Error('caddy is already running');
      await launch(config);
    },
    async restart({ keepConfig }): Promise<void> {
      let config: unknown = initialConfig;
      if (keepConfig) config = (await readConfig()).config;
      await terminate();
      await launch(config);
    },
  };
}
