/**
 * Races against the real Caddy and Docker engine. Requests arrive while a service scales to zero,
 * DELETE and PATCH arrive while a wake-up is in flight, and API writes to one service run
 * concurrently. Concurrent writes must neither lose nor duplicate a Caddy route.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { docker, TEST_IMAGE } from '../support/faults.js';
import { probe, reportFault, summarize, type Outcome } from '../support/fault-traffic.js';
import { createService, getService, isConnectionReset, startLuma, type LumaInstance } from '../support/luma.js';
import { sleep, waitFor } from '../support/ports.js';

let caddy: CaddyProcess;

beforeAll(async () => {
  caddy = await startCaddy();
});

afterAll(async () => {
  await caddy?.stop();
});

/**
 * Sends an API request on a new connection. In admin mode Caddy 2.6.2 can reset a connection it
 * accepted just before a config reload; such a request is sent again (up to 3 tries), and a retry
 * that finds its earlier attempt applied (409 after POST, 404 after DELETE) reports the status of
 * that attempt.
 */
async function api(luma: LumaInstance, path: string, method: 'POST' | 'PATCH' | 'DELETE', body?: unknown): Promise<{ status: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await request(`${luma.url}/api/services${path}`, {
        method,
        reset: true,
        headers: body === undefined ? {} : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      await response.body.dump();
      if (attempt > 1 && method === 'POST' && response.statusCode === 409) return { status: 201 };
      if (attempt > 1 && method === 'DELETE' && response.statusCode === 404) return { status: 204 };
      return { status: response.statusCode };
    } catch (error) {
      if (attempt >= 3 || !isConnectionReset(error)) throw error;
      await sleep(100);
    }
  }
}

describe.each(['admin', 'dns'])('races in %s upstream mode', (mode) => {
  let luma: LumaInstance;

  beforeAll(async () => {
    luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: [`-upstream-mode=${mode}`] });
  });

  afterAll(async () => {
    await luma?.destroy();
  });

  it('serves requests that race scale to zero', async () => {
    await createService(luma, { name: 'napper', image: TEST_IMAGE, inactivityTimeout: '2s' });
    const outcomes: Outcome[] = [];

    for (let cycle = 0; cycle < 2; cycle++) {
      expect((await probe(`${luma.url}/napper/`)).status).toBe(200);
      const seen = luma.logs('service idle, scaling to zero').length;
      await waitFor('scale to zero to begin', () => (luma.logs('service idle, scaling to zero').length > seen ? true : undefined), 15_000, 10);
      // Requests every 25 ms for 1.5 s from the moment the drain began, each on a new connection:
      // the route write of the drain closes idle keep-alive connections (Caddy 2.6.2, admin mode).
      const burst = Array.from({ length: 60 }, async (_, i) => {
        await sleep(i * 25);
        return probe(`${luma.url}/napper/r${i}`, { timeoutMs: 20_000 });
      });
      outcomes.push(...(await Promise.all(burst)));
      await sleep(500);
    }

    const summary = summarize(outcomes);
    await reportFault(`race-scale-to-zero-${mode}`, { clients: summary, revived: luma.logs('replica revived from idle drain').length });
    if (mode === 'dns') {
      expect(summary.failed).toBe(0);
    } else {
      // A connection accepted while Caddy 2.6.2 reloads its config (the drain's route write) can
      // be reset before its request is read. That is a connection error, never an HTTP error.
      expect(Object.keys(summary.failureStatuses).filter((status) => status !== '0')).toEqual([]);
      expect(summary.failed).toBeLessThanOrEqual(2);
    }
    expect(await luma.containers({ service: 'napper', running: true })).toHaveLength(1);
  });

  it('answers waiting clients when deleted during a wake', async () => {
    await createService(luma, { name: 'doomed', image: TEST_IMAGE, env: { BOOT_DELAY_MS: '3000' } });
    const waiting = Array.from({ length: 5 }, () => probe(`${luma.url}/doomed/`, { timeoutMs: 20_000 }));
    await waitFor('replica container created', async () => ((await luma.containers({ service: 'doomed' })).length > 0 ? true : undefined), 10_000, 50);

    const deletedAt = Date.now();
    const deleted = await api(luma, '/doomed', 'DELETE');
    const deleteMs = Date.now() - deletedAt;
    const answers = await Promise.all(waiting);
    const leftovers = await waitFor('containers removed', async () => {
      const ids = await luma.containers({ service: 'doomed' });
      return ids.length === 0 ? ids : undefined;
    }, 10_000, 100);
    await reportFault(`race-delete-during-wake-${mode}`, { deleteStatus: deleted.status, deleteMs, waiting: summarize(answers), leftovers: leftovers.length });

    expect(deleted.status).toBe(204);
    expect(answers.map((a) => a.status)).toEqual([404, 404, 404, 404, 404]);
    expect(Math.max(...answers.map((a) => a.durationMs))).toBeLessThan(5_000);
    expect((await probe(`${luma.url}/doomed/`)).status).toBe(404);
  });

  it('serves waiting clients when patched during a wake', async () => {
    await createService(luma, { name: 'morph', image: TEST_IMAGE, env: { BOOT_DELAY_MS: '2000' } });
    const waiting = Array.from({ length: 5 }, () => probe(`${luma.url}/morph/`, { timeoutMs: 20_000 }));
    await waitFor('replica container created', async () => ((await luma.containers({ service: 'morph' })).length > 0 ? true : undefined), 10_000, 50);

    const patched = await api(luma, '/morph', 'PATCH', { env: { BOOT_DELAY_MS: '0', VERSION: '2' } });
    const answers = await Promise.all(waiting);
    const replaced = await waitFor('one replica of the new spec', async () => {
      const ids = await luma.containers({ service: 'morph' });
      if (ids.length !== 1) return undefined;
      const generation = await docker('inspect', '--format', '{{index .Config.Labels "dev.luma.generation"}}', ids[0]!);
      return generation === '2' ? ids : undefined;
    }, 20_000, 200);
    await reportFault(`race-patch-during-wake-${mode}`, { patchStatus: patched.status, waiting: summarize(answers), containersAfter: replaced.length });

    expect(patched.status).toBe(200);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect((await probe(`${luma.url}/morph/`)).status).toBe(200);
  });

  it('serialises concurrent writes to one service', async () => {
    await createService(luma, { name: 'contended', image: TEST_IMAGE });
    const patches = await Promise.all(Array.from({ length: 10 }, (_, i) => api(luma, '/contended', 'PATCH', { env: { [`KEY_${i}`]: String(i) } })));
    const creates = await Promise.all(Array.from({ length: 5 }, () => api(luma, '', 'POST', { name: 'twin', image: TEST_IMAGE })));

    const view = await getService(luma, 'contended');
    const createStatuses = creates.map((r) => r.status).sort();
    await reportFault(`race-concurrent-writes-${mode}`, {
      patchStatuses: patches.map((r) => r.status),
      generation: view.generation,
      envKeys: Object.keys(view.env).length,
      createStatuses,
    });

    expect(patches.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(view.generation).toBe(11);
    expect(Object.keys(view.env).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `KEY_${i}`).sort());
    expect(createStatuses).toEqual([201, 409, 409, 409, 409]);
  });

  it('keeps exactly one route per service under concurrent writes', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `routed-${i}`);
    const created = await Promise.all(names.map((name) => api(luma, '', 'POST', { name, image: TEST_IMAGE, hosts: [`${name}.example.test`] })));
    expect(created.map((r) => r.status)).toEqual(Array(12).fill(201));

    // Wakes, deletes, creates and host changes at the same time.
    const deletedNames = names.slice(8);
    const addedNames = Array.from({ length: 4 }, (_, i) => `routed-new-${i}`);
    const results = await Promise.all([
      ...names.slice(0, 4).map(async (name) => (await probe(`${luma.url}/${name}/`, { timeoutMs: 30_000 })).status),
      ...deletedNames.map(async (name) => (await api(luma, `/${name}`, 'DELETE')).status),
      ...addedNames.map(async (name) => (await api(luma, '', 'POST', { name, image: TEST_IMAGE, hosts: [`${name}.example.test`] })).status),
      ...names.slice(4, 6).map(async (name) => (await api(luma, `/${name}`, 'PATCH', { hosts: [`${name}.example.test`, `${name}-alt.example.test`] })).status),
    ]);
    expect(results).toEqual([200, 200, 200, 200, 204, 204, 204, 204, 201, 201, 201, 201, 200, 200]);

    // PATCH responds once the spec is stored; its route write may still wait behind others.
    const instanceId = await luma.instanceId();
    const config = await waitFor('host changes in caddy', async () => {
      const text = JSON.stringify(await caddy.config());
      return text.includes('routed-4-alt.example.test') && text.includes('routed-5-alt.example.test') ? text : undefined;
    }, 10_000, 100);
    const count = (id: string) => config.split(`"@id":"${id}"`).length - 1;
    const expected = [...names.slice(0, 8), ...addedNames];
    const routeCounts = Object.fromEntries(
      [...expected, ...deletedNames].map((name) => [name, { path: count(`luma-${instanceId}.path.${name}`), host: count(`luma-${instanceId}.host.${name}`) }]),
    );
    await reportFault(`race-route-writes-${mode}`, { writes: results.length, routeCounts });

    for (const name of expected) expect(routeCounts[name], name).toEqual({ path: 1, host: 1 });
    for (const name of deletedNames) expect(routeCounts[name], name).toEqual({ path: 0, host: 0 });
    for (const name of names.slice(0, 4)) expect((await probe(`${luma.url}/${name}/`)).status, name).toBe(200);
  });
});
