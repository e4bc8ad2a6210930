/**
 * Global setup of the integration tests: checks that a Docker engine responds and that the `caddy`
 * binary runs, and fails the run with instructions when either is missing, so that nothing is
 * skipped silently. Then removes the containers and networks that earlier, interrupted test runs
 * left behind (see labels.ts).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LABELS } from '../../src/model.js';
import { LEFTOVER_AGE_MS, TEST_LABEL, TEST_PID_LABEL } from './labels.js';

const execFileAsync = promisify(execFile);

const INSTALL_HINT = 'run `bash scripts/install-deps.sh --test` as root: it installs docker.io and caddy when missing and starts dockerd';

interface DockerObject {
  id: string;
  created: string;
  labels: Record<string, string>;
}

interface NetworkObject extends DockerObject {
  /** Ids of the containers attached to the network. */
  containers: string[];
}

export async function setup(): Promise<void> {
  const dockerVersion = await checkDocker();
  const caddyVersion = await checkCaddy();
  console.log(`integration tests: docker engine ${dockerVersion}, caddy ${caddyVersion}`);

  await removeLeftovers();
}

async function run(file: string, args: string[], timeoutMs = 30_000): Promise<string> {
  const { stdout } = await execFileAsync(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

/** Returns the last line of a failed command's output, or the error message when it printed nothing. */
function failureText(error: unknown): string {
  const output = (error as { stderr?: string }).stderr?.trim();
  if (output) return output.split('\n').at(-1) ?? output;
  return error instanceof Error ? error.message : String(error);
}

async function checkDocker(): Promise<string> {
  try {
    return await run('docker', ['version', '--format', '{{.Server.Version}} (API {{.Server.APIVersion}})'], 15_000);
  } catch (error) {
    throw new Error(`Docker engine not reachable (${failureText(error)}); ${INSTALL_HINT}`, { cause: error });
  }
}

async function checkCaddy(): Promise<string> {
  try {
    const output = await run('caddy', ['version'], 15_000);
    return output.split(/\s+/)[0] ?? output;
  } catch (error) {
    throw new Error(`caddy binary not usable (${failureText(error)}); ${INSTALL_HINT}`, { cause: error });
  }
}

/** True when the object was created by a test process that is gone, or is old enough to be. */
function isLeftover(object: DockerObject, now: number): boolean {
  const pid = Number(object.labels[TEST_PID_LABEL]);
  if (Number.isInteger(pid) && pid > 0) return !processExists(pid);
  return now - Date.parse(object.created) > LEFTOVER_AGE_MS;
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function listTestContainers(): Promise<DockerObject[]> {
  const ids = await run('docker', ['ps', '--all', '--quiet', '--filter', `label=${TEST_LABEL}=1`]);
  if (ids === '') return [];

  const inspected = JSON.parse(await inspectExisting('container', ids.split('\n'))) as Array<{
    Id: string;
    Created: string;
    Config: { Labels: Record<string, string> | null };
  }>;
  return inspected.map((container) => ({
    id: container.Id,
    created: container.Created,
    labels: container.Config.Labels ?? {},
  }));
}

async function listTestNetworks(): Promise<NetworkObject[]> {
  const ids = await run('docker', ['network', 'ls', '--quiet', '--filter', `label=${TEST_LABEL}=1`]);
  if (ids === '') return [];

  const inspected = JSON.parse(await inspectExisting('network', ids.split('\n'))) as Array<{
    Id: string;
    Created: string;
    Labels: Record<string, string> | null;
    Containers: Record<string, unknown> | null;
  }>;
  return inspected.map((network) => ({
    id: network.Id,
    created: network.Created,
    labels: network.Labels ?? {},
    containers: Object.keys(network.Containers ?? {}),
  }));
}

/** Returns the subset of `ids` that carry Luma's instance label, i.e. replicas a tested controller made. */
async function lumaReplicas(ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const inspected = JSON.parse(await inspectExisting('container', ids)) as Array<{
    Id: string;
    Config: { Labels: Record<string, string> | null };
  }>;
  return inspected.filter((container) => container.Config.Labels?.[LABELS.instance] !== undefined).map((container) => container.Id);
}

/**
 * Inspects Docker objects, skipping those removed since they were listed: another test run may
 * be cleaning up at the same time. `docker inspect` then still prints the objects it found, but
 * exits non-zero.
 */
async function inspectExisting(kind: 'container' | 'network', ids: string[]): Promise<string> {
  try {
    return await run('docker', [kind, 'inspect', ...ids]);
  } catch (error) {
    const stdout = (error as { stdout?: string }).stdout?.trim();
    if (stdout?.startsWith('[')) return stdout;
    return '[]';
  }
}

async function removeLeftovers(): Promise<void> {
  const now = Date.now();
  const containers = (await listTestContainers()).filter((container) => isLeftover(container, now));
  const networks = (await listTestNetworks()).filter((network) => isLeftover(network, now));

  // Replicas that a controller under test started on a leftover network carry Luma's labels but
  // not the test label; they go too, or the network cannot be removed.
  const attached = networks.flatMap((network) => network.containers);
  const replicas = await lumaReplicas(attached);
  const containerIds = [...new Set([...containers.map((container) => container.id), ...replicas])];

  let removed = 0;
  for (const id of containerIds) {
    if (await removeQuietly(['rm', '--force', '--volumes', id])) removed += 1;
  }
  for (const network of networks) {
    for (const containerId of network.containers.filter((id) => !containerIds.includes(id))) {
      await removeQuietly(['network', 'disconnect', '--force', network.id, containerId]);
    }
    if (await removeQuietly(['network', 'rm', network.id])) removed += 1;
  }

  if (removed > 0) {
    console.log(`integration tests: removed ${removed} leftover containers and networks of earlier test runs`);
  }
}

/**
 * Runs a docker removal and returns whether it succeeded. Another test run's global setup may
 * remove the same leftovers at the same time, so a failure only warns: the tests create their
 * own uniquely named objects and do not depend on the cleanup.
 */
async function removeQuietly(args: string[]): Promise<boolean> {
  try {
    await run('docker', args, 60_000);
    return true;
  } catch (error) {
    const text = failureText(error);
    if (!/no such|not found|is not connected/i.test(text)) {
      console.warn(`integration tests: failed to clean up with docker ${args.join(' ')}: ${text}`);
    }
    return false;
  }
}
