/**
 * Faults of the controller process, against the real Caddy and Docker engine: SIGKILL and
 * restart under traffic in both upstream modes, SIGTERM, and a damaged data directory.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createHalfCreatedReplica, TEST_IMAGE, waitForState } from '../support/faults.js';
import { createService, getService, startLuma, type LumaInstance } from '../support/luma.js';
import { freePort, sleep, waitFor } from '../support/ports.js';
import { between, probe, reportFault, startTraffic, summarize } from '../support/fault-traffic.js';

let caddy: CaddyProcess;

beforeAll(async () => {
  caddy = await startCaddy();
});

afterAll(async () => {
  await caddy?.stop();
});

/** Time the controller stays down. */
const DOWN_MS = 3_000;

describe.each(['admin', 'dns'])('controller killed in %s upstream mode', (mode) => {
  let luma: LumaInstance;

  beforeAll(async () => {
    luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: [`-upstream-mode=${mode}`] });
  });

  afterAll(async () => {
    await luma?.destroy();
    // A restarted instance reuses the first one's data directory, which destroy() keeps.
    if (luma) await rm(luma.dataDir, { recursive: true, force: true });
  });

  it('adopts replicas and cleans up after SIGKILL', async () => {
    await createService(luma, { name: 'warm', image: TEST_IMAGE });
    await createService(luma, { name: 'cold', image: TEST_IMAGE });
    await createService(luma, { name: 'slow', image: TEST_IMAGE, env: { BOOT_DELAY_MS: '8000' } });
    await createService(luma, { name: 'stuck', image: TEST_IMAGE, env: { NEVER_ANSWER: '1' }, startupTimeout: '8s' });
    expect((await probe(`${luma.url}/warm/`)).status).toBe(200);
    const [warmContainer] = await luma.containers({ service: 'warm', running: true });

    // When the kill lands: a container created but never started, one that is still booting
    // and will respond, and one that never responds.
    const halfCreated = await createHalfCreatedReplica(luma, 'warm', `luma-h10-half-${mode}-${process.pid}`);
    const slowRequest = probe(`${luma.url}/slow/`, { timeoutMs: 60_000 });
    const stuckRequest = probe(`${luma.url}/stuck/`, { timeoutMs: 60_000 });
    const [slowContainer, stuckContainer] = await waitFor('booting replicas running', async () => {
      const slow = await luma.containers({ service: 'slow', running: true });
      const stuck = await luma.containers({ service: 'stuck', running: true });
      return slow.length === 1 && stuck.length === 1 ? [slow[0]!, stuck[0]!] : undefined;
    }, 30_000, 100);

    const warm = startTraffic(`${luma.url}/warm/`, { concurrency: 4, intervalMs: 20, maxMs: 30_000, timeoutMs: 10_000 });
    await sleep(1_000);

    const killedAt = warm.elapsed();
    await luma.kill();
    // Requests for a service that is asleep: they start after the kill, so none wakes it early.
    const cold = startTraffic(`${luma.url}/cold/`, { concurrency: 2, intervalMs: 100, maxMs: 30_000, timeoutMs: 10_000 });
    const coldOffset = warm.elapsed();
    await sleep(DOWN_MS);
    const restartAt = warm.elapsed();
    luma = await startLuma({ ...luma.options });
    const upAt = warm.elapsed();

    const coldFirstOk = await waitFor('a cold request to succeed after restart', async () => {
      const ok = cold.outcomes.find((o) => o.at + coldOffset >= restartAt && o.status === 200);
      return ok;
    }, 30_000, 50);
    await sleep(2_000);
    const warmOutcomes = await warm.stop();
    const coldOutcomes = await cold.stop();
    const interrupted = [await slowRequest, await stuckRequest];
    const adoptedSentAt = warm.elapsed();
    const adoptedSlow = await probe(`${luma.url}/slow/`, { timeoutMs: 20_000 });

    const warmDown = summarize(between(warmOutcomes, killedAt, restartAt));
    const warmRestart = summarize(between(warmOutcomes, restartAt, Infinity));
    const coldDown = summarize(between(coldOutcomes, 0, restartAt - coldOffset));
    const warmFailures = warmOutcomes.filter((o) => o.status !== 200);
    const warmLastFailure = warmFailures.length === 0 ? null : Math.max(...warmFailures.map((o) => o.at + o.durationMs));
    await reportFault(`controller-sigkill-${mode}`, {
      downMs: restartAt - killedAt,
      startMs: upAt - restartAt,
      warmWhileDown: warmDown,
      warmAfterRestart: warmRestart,
      coldWhileDown: coldDown,
      coldRecoveryMs: coldFirstOk.at + coldOffset + coldFirstOk.durationMs - restartAt,
      warmRecoveredAfterRestartMs: warmLastFailure === null ? 0 : Math.max(0, warmLastFailure - restartAt),
      interruptedWakeStatuses: interrupted.map((o) => o.status),
      bootingReplicaAdopted: adoptedSlow.containerId !== undefined && slowContainer.startsWith(adoptedSlow.containerId),
      bootingReplicaServedAfterRestartMs: adoptedSentAt + adoptedSlow.durationMs - restartAt,
    });

    // Cold requests while the controller is down: a fast 503 with Retry-After, never a hang.
    expect(coldDown.sent).toBeGreaterThan(3);
    expect(coldDown.succeeded).toBe(0);
    expect(coldDown.failureStatuses).toEqual({ 503: coldDown.sent });
    expect(coldDown.withRetryAfter).toBe(coldDown.sent);
    expect(coldDown.maxFailureMs).toBeLessThan(1_500);
    expect(interrupted.map((o) => o.status)).toEqual([503, 503]);
    if (mode === 'admin') expect(warmDown.failed).toBe(0);

    // Adoption: the warm replica is the same container, nothing duplicated, leftovers removed.
    const view = await waitForState(luma, 'warm', 'ready', 1);
    expect(view.status.replicas[0].id).toBe(warmContainer);
    await waitFor('leftover containers removed', async () => {
      const all = await luma.containers();
      return !all.includes(halfCreated) && !all.includes(stuckContainer) ? true : undefined;
    }, 15_000, 200);
    expect(await luma.containers({ service: 'warm' })).toEqual([warmContainer]);
    expect(await luma.containers({ service: 'cold' })).toHaveLength(1);
    // The replica that was booting is adopted once it responds instead of being started again.
    expect(adoptedSlow.status).toBe(200);
    expect(slowContainer.startsWith(adoptedSlow.containerId!)).toBe(true);
    expect(await luma.containers({ service: 'slow' })).toEqual([slowContainer]);
  });
});

describe('controller shutdown', () => {
  let luma: LumaInstance;

  beforeAll(async () => {
    luma = await startLuma({ caddyAdminUrl: caddy.adminUrl });
  });

  afterAll(async () => {
    await luma?.destroy();
    // A restarted instance reuses the first one's data directory, which destroy() keeps.
    if (luma) await rm(luma.dataDir, { recursive: true, force: true });
  });

  it('finishes wake-ups on SIGTERM and keeps replicas', async () => {
    await createService(luma, { name: 'booting', image: TEST_IMAGE, env: { BOOT_DELAY_MS: '2500' } });
    await createService(luma, { name: 'idle', image: TEST_IMAGE });
    const waiting = Array.from({ length: 3 }, () => probe(`${luma.url}/booting/`, { timeoutMs: 30_000 }));
    await waitFor('booting replica running', async () => ((await luma.containers({ service: 'booting', running: true })).length === 1 ? true : undefined), 10_000, 50);

    const signalledAt = Date.now();
    luma.process.kill('SIGTERM');
    await sleep(200);
    const write = await fetch(`${luma.url}/api/services`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'late', image: TEST_IMAGE }),
    });
    const read = await fetch(`${luma.url}/api/services/booting`);
    const cold = await probe(`${luma.url}/idle/`);
    const exitCode = await luma.stop();
    const exitMs = Date.now() - signalledAt;
    const answers = await Promise.all(waiting);
    const [container] = await luma.containers({ service: 'booting', running: true });

    luma = await startLuma({ ...luma.options });
    const adopted = await probe(`${luma.url}/booting/`);
    await reportFault('controller-sigterm', {
      exitCode,
      exitMs,
      waitingWakeUps: summarize(answers),
      writeDuringShutdown: { status: write.status, retryAfter: write.headers.get('retry-after') },
      readDuringShutdown: read.status,
      coldDuringShutdown: { status: cold.status, durationMs: cold.durationMs, retryAfter: cold.retryAfter },
      adoptedAfterRestart: adopted.containerId !== undefined && container?.startsWith(adopted.containerId) === true,
    });

    expect(exitCode).toBe(0);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(write.status).toBe(503);
    expect(read.status).toBe(200);
    expect(cold.status).toBe(503);
    expect(cold.retryAfter).toMatch(/^\d+$/);
    expect(container).toBeDefined();
    expect(adopted.status).toBe(200);
    expect(container!.startsWith(adopted.containerId!)).toBe(true);
    expect(await luma.containers({ service: 'booting' })).toHaveLength(1);
  });
});

/** Runs the controller until it exits or `timeoutMs` passes; for start-up failures. */
async function runLumaUntilExit(dataDir: string, timeoutMs = 20_000): Promise<{ exitCode: number | null; output: string }> {
  const root = path.resolve(import.meta.dirname, '../..');
  const args = [
    '--import',
    'tsx',
    path.join(root, 'src/main.ts'),
    `-port=${await freePort()}`,
    `--caddy-admin=${caddy.adminUrl}`,
    `--data-dir=${dataDir}`,
    `--network=luma-h10-unused-${process.pid}`,
    '--api-address=127.0.0.1:0',
    '--wake-address=127.0.0.1:0',
    '--dns-address=127.0.0.1:0',
  ];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  clearTimeout(timer);
  return { exitCode, output };
}

describe('data directory faults', () => {
  const SPEC = {
    name: 'kept',
    image: TEST_IMAGE,
    port: 8080,
    minReplicas: 0,
    maxReplicas: 10,
    env: {},
    hosts: [],
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    generation: 1,
  };

  it('starts after a crash mid-write of the store', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'luma-h10-store-'));
    await writeFile(path.join(dataDir, 'services.json'), JSON.stringify({ version: 1, services: [SPEC] }));
    // What a crash between write and rename leaves: a partial temp file next to the old file.
    await writeFile(path.join(dataDir, 'services.json.0123456789ab.tmp'), '{"version":1,"services":[{"name":"kept","ima');

    const luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, dataDir });
    try {
      const view = await getService(luma, 'kept');
      const removed = luma.logs('removed temp files of an interrupted write');
      await reportFault('store-crash-mid-write', { started: true, service: view.name, removedTempFiles: removed[0]?.files });
      expect(view.image).toBe(TEST_IMAGE);
      expect(removed[0]?.files).toEqual(['services.json.0123456789ab.tmp']);
      expect((await readdir(dataDir)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    } finally {
      await luma.destroy();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('stops start-up on a corrupt store', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'luma-h10-corrupt-'));
    const file = path.join(dataDir, 'services.json');
    await writeFile(file, '{"version":1,"services":[{"name":"kept"');
    try {
      const started = Date.now();
      const { exitCode, output } = await runLumaUntilExit(dataDir);
      const fatal = output.split('\n').find((line) => line.includes('"level":60')) ?? '';
      await reportFault('store-corrupt', { exitCode, exitMs: Date.now() - started, message: (JSON.parse(fatal || '{}') as { msg?: string }).msg });

      expect(exitCode).toBe(1);
      expect(fatal).toContain(file);
      expect(fatal).toContain('not valid JSON');
      expect(fatal).toContain('store_corrupt');
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
