/**
 * Caddy restarts under traffic, against the real Caddy and Docker engine: Caddy restarted with an
 * empty config, and Caddy restarted with an old (autosaved) config that misses changes made while
 * it was down. The controller must re-install its server and routes within about 2 s.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { docker, TEST_IMAGE, waitForState } from '../support/faults.js';
import { between, lastFailureEnd, probe, reportFault, startTraffic, summarize } from '../support/fault-traffic.js';
import { createService, startLuma, type LumaInstance } from '../support/luma.js';
import { sleep, waitFor } from '../support/ports.js';

describe.each(['admin', 'dns'])('caddy restarts in %s upstream mode', (mode) => {
  let caddy: CaddyProcess;
  let luma: LumaInstance;

  beforeAll(async () => {
    caddy = await startCaddy();
    luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: [`-upstream-mode=${mode}`] });
  });

  afterAll(async () => {
    await luma?.destroy();
    await caddy?.stop();
  });

  /** Controller API address, reachable while Caddy is down. */
  function apiUrl(): string {
    const started = luma.logs('luma started').at(-1);
    return `http://${String(started?.apiAddress)}/api`;
  }

  it('re-installs routes after caddy restarts empty', async () => {
    await createService(luma, { name: 'steady', image: TEST_IMAGE });
    expect((await probe(`${luma.url}/steady/`)).status).toBe(200);
    await waitForState(luma, 'steady', 'ready', 1);

    const traffic = startTraffic(`${luma.url}/steady/`, { concurrency: 2, intervalMs: 20, maxMs: 30_000, timeoutMs: 10_000 });
    await sleep(500);
    const restartAt = traffic.elapsed();
    await caddy.restart({ keepConfig: false });
    const caddyUpAt = traffic.elapsed();
    await waitFor('a request to succeed after the restart', async () =>
      traffic.outcomes.find((o) => o.at > caddyUpAt && o.status === 200), 15_000, 50);
    await sleep(1_000);
    const outcomes = await traffic.stop();

    const recoveryMs = lastFailureEnd(outcomes, caddyUpAt);
    await reportFault(`caddy-restart-empty-${mode}`, {
      caddyDownMs: caddyUpAt - restartAt,
      clients: summarize(between(outcomes, restartAt, Infinity)),
      routesBackAfterCaddyUpMs: recoveryMs,
    });
    expect(recoveryMs).toBeLessThan(3_000);
    expect(summarize(between(outcomes, caddyUpAt + recoveryMs + 1, Infinity)).failed).toBe(0);
  });

  it('repairs a stale autosaved config', async () => {
    await createService(luma, { name: 'removed', image: TEST_IMAGE });
    const [steadyBefore] = await luma.containers({ service: 'steady', running: true });
    const saved = await caddy.config();
    await caddy.halt();

    // Changes while Caddy is down: every route write for them fails.
    const created = await fetch(`${apiUrl()}/services`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'added', image: TEST_IMAGE }),
    });
    expect(created.status).toBe(201);
    const deleted = await fetch(`${apiUrl()}/services/removed`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    await docker('kill', steadyBefore!);
    await sleep(2_500);

    const startedAt = Date.now();
    await caddy.start(saved);
    const caddyUpMs = Date.now() - startedAt;
    const checks = {
      added: async () => (await probe(`${luma.url}/added/`)).status === 200,
      removed: async () => (await probe(`${luma.url}/removed/`)).status === 404,
      steady: async () => {
        const outcome = await probe(`${luma.url}/steady/`);
        return outcome.status === 200 && outcome.containerId !== undefined;
      },
    };
    const repairedMs: Record<string, number> = {};
    await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        await waitFor(`route of ${name} repaired`, async () => ((await check()) ? true : undefined), 15_000, 50);
        repairedMs[name] = Date.now() - startedAt - caddyUpMs;
      }),
    );
    await reportFault(`caddy-restart-stale-${mode}`, { caddyStartMs: caddyUpMs, repairedAfterCaddyUpMs: repairedMs });

    expect(Math.max(...Object.values(repairedMs))).toBeLessThan(8_000);
    expect(await luma.containers({ service: 'removed' })).toEqual([]);
    expect(await luma.containers({ service: 'steady', running: true })).not.toContain(steadyBefore);
  });
});
