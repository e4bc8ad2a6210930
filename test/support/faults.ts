/** Shared steps of the fault-injection tests (test/integration/faults-*.test.ts). */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { LABELS } from '../../src/model.js';
import { testLabels } from './labels.js';
import { getService, type LumaInstance } from './luma.js';
import { waitFor } from './ports.js';

const execFileAsync = promisify(execFile);

export const TEST_IMAGE = 'luma-test-app:latest';

/** Runs the docker CLI and returns its trimmed stdout. */
export async function docker(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('docker', args, { timeout: 60_000 });
  return stdout.trim();
}

/** Waits until the service reports `state` (and, when given, exactly `ready` ready replicas). */
export function waitForState(luma: LumaInstance, name: string, state: string, ready?: number, timeoutMs = 30_000): Promise<Record<string, any>> {
  return waitFor(
    `service ${name} to be ${state}`,
    async () => {
      const view = await getService(luma, name);
      if (view.status.state !== state) return undefined;
      if (ready !== undefined && view.status.readyReplicas !== ready) return undefined;
      return view;
    },
    timeoutMs,
    100,
  );
}

/**
 * Creates, without starting, a container that carries the labels a replica of `service` gets,
 * as if a controller had been killed between create and start.
 */
export async function createHalfCreatedReplica(luma: LumaInstance, service: string, name: string): Promise<string> {
  const labels = { ...testLabels(), [LABELS.instance]: await luma.instanceId(), [LABELS.service]: service, [LABELS.generation]: '1', [LABELS.specHash]: 'half-created' };
  const labelArgs = Object.entries(labels).flatMap(([key, value]) => ['--label', `${key}=${value}`]);
  return docker('create', '--name', name, '--network', luma.network, ...labelArgs, TEST_IMAGE);
}

/** Resident set size of a process in bytes, from /proc. */
export async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** Milliseconds since `since` at which `check` first returned true, polling every `intervalMs`. */
export async function timeUntil(what: string, since: number, check: () => Promise<boolean>, timeoutMs = 30_000, intervalMs = 50): Promise<number> {
  await waitFor(what, async () => ((await check()) ? true : undefined), timeoutMs, intervalMs);
  return Date.now() - since;
}
