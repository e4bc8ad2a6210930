/** Checks that the benchmarks can run, and describes the machine they run on. */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const TEST_IMAGE = 'luma-test-app:latest';

const INSTALL_HINT = 'run `bash scripts/install-deps.sh --test` as root: it installs docker.io and caddy when missing and starts dockerd';

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  docker: string;
  caddy: string;
  node: string;
  /** Commit of the working tree, with a remark when src/ has uncommitted changes. */
  revision: string;
}

async function run(file: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await execFileAsync(file, args, { cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

function lastLine(error: unknown): string {
  const stderr = (error as { stderr?: string }).stderr?.trim();
  if (stderr) return stderr.split('\n').at(-1) ?? stderr;
  return error instanceof Error ? error.message : String(error);
}

/**
 * Checks the Docker engine and the Caddy binary, and builds the test image when it is missing or
 * outdated (scripts/build-image.sh does nothing when the image is up to date). Returns the
 * machine description. Throws with a hint when a tool is missing.
 */
export async function prepareEnvironment(): Promise<Machine> {
  let docker: string;
  try {
    docker = await run('docker', ['version', '--format', '{{.Server.Version}} (API {{.Server.APIVersion}})'], 15_000);
  } catch (error) {
    throw new Error(`Docker engine not reachable (${lastLine(error)}); ${INSTALL_HINT}`, { cause: error });
  }

  let caddy: string;
  try {
    caddy = (await run('caddy', ['version'], 15_000)).split(/\s+/)[0] ?? '';
  } catch (error) {
    throw new Error(`caddy binary not usable (${lastLine(error)}); ${INSTALL_HINT}`, { cause: error });
  }

  try {
    await run('bash', ['scripts/build-image.sh', TEST_IMAGE, 'test/app'], 300_000);
  } catch (error) {
    throw new Error(`build of ${TEST_IMAGE} failed (${lastLine(error)})`, { cause: error });
  }

  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: os.totalmem() / 1024 ** 3,
    kernel: `${os.type()} ${os.release()}`,
    docker,
    caddy,
    node: process.version,
    revision: await describeRevision(),
  };
}

async function describeRevision(): Promise<string> {
  try {
    const commit = await run('git', ['rev-parse', '--short', 'HEAD'], 10_000);
    const changed = await run('git', ['status', '--porcelain', '--', 'src'], 10_000);
    return changed === '' ? `commit ${commit}` : `commit ${commit} with uncommitted changes in src/`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

/** Returns the 1, 5 and 15 minute load averages as text, such as `0.42 0.80 0.91`. */
export async function loadAverage(): Promise<string> {
  try {
    return (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  } catch {
    return os.loadavg().map((value) => value.toFixed(2)).join(' ');
  }
}

export function describeMachine(machine: Machine): string {
  return [
    `- CPU: ${machine.cores} cores (${machine.cpuModel})`,
    `- memory: ${machine.memoryGiB.toFixed(1)} GiB`,
    `- kernel: ${machine.kernel}`,
    `- Docker engine: ${machine.docker}`,
    `- Caddy: ${machine.caddy}`,
    `- Node.js: ${machine.node}`,
    `- Luma: ${machine.revision}`,
  ].join('\n');
}
