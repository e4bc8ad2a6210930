/**
 * Faults of the Docker engine and of replicas, against the real Caddy and Docker engine. The
 * engine goes away for a while: a TCP proxy in front of its socket is cut, and the real dockerd
 * stays up. Replicas die (docker kill, docker rm -f, a crash, an OOM kill), and one replica keeps
 * crashing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { startDockerProxy, type DockerProxy } from '../support/docker-proxy.js';
import { docker, TEST_IMAGE, waitForState } from '../support/faults.js';
import { between, lastFailureEnd, probe, reportFault, startTraffic, summarize } from '../support/fault-traffic.js';
import { createService, getService, startLuma, type LumaInstance } from '../support/luma.js';
import { sleep, waitFor } from '../support/ports.js';

let caddy: CaddyProcess;

beforeAll(async () => {
  caddy = await startCaddy();
});

afterAll(async () => {
  await caddy?.stop();
});

/** An app for the OOM case: `/oom` allocates 1 MiB buffers until the kernel kills the container. */
const OOM_APP = `
const http = require('node:http');
http.createServer((req, res) => {
  if (req.url.endsWith('/oom')) {
    console.log('oom-app allocating until the memory limit');
    const kept = [];
    for (;;) kept.push(Buffer.alloc(1 << 20, 1));
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ containerId: require('node:os').hostname() }));
}).listen(Number(process.env.PORT));
`;

/** An app that responds over HTTP, then exits with code 9 after 700 ms, every time. */
const CRASHING_APP = `
const http = require('node:http');
console.log('crashing-app starting');
http.createServer((req, res) => res.end('ok')).listen(Number(process.env.PORT), () => {
  setTimeout(() => {
    console.error('crashing-app giving up');
    process.exit(9);
  }, 700);
});
`;

describe('docker engine outage', () => {
  let proxy: DockerProxy;
  let luma: LumaInstance;

  beforeAll(async () => {
    proxy = await startDockerProxy();
    luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: [`--docker-host=${proxy.dockerHost}`] });
  });

  afterAll(async () => {
    await luma?.destroy();
    await proxy?.close();
  });

  it('reconnects, reconciles and replaces replicas that died', async () => {
    await createService(luma, { name: 'floor', image: TEST_IMAGE, minReplicas: 1 });
    await createService(luma, { name: 'awake', image: TEST_IMAGE });
    expect((await probe(`${luma.url}/awake/`)).status).toBe(200);
    await waitForState(luma, 'floor', 'ready', 1);
    const before = [...(await luma.containers({ service: 'floor' })), ...(await luma.containers({ service: 'awake' }))];
    expect(before).toHaveLength(2);

    const traffic = {
      floor: startTraffic(`${luma.url}/floor/`, { concurrency: 2, intervalMs: 50, maxMs: 60_000, timeoutMs: 20_000 }),
      awake: startTraffic(`${luma.url}/awake/`, { concurrency: 2, intervalMs: 50, maxMs: 60_000, timeoutMs: 20_000 }),
    };
    await sleep(500);
    const cutAt = traffic.floor.elapsed();
    await proxy.cut();
    await sleep(1_000);
    // The replicas die with the engine gone, as on a daemon restart without live-restore.
    await docker('kill', ...before);
    await sleep(3_000);
    const restoredAt = traffic.floor.elapsed();
    const acceptedBefore = proxy.accepted;
    await proxy.restore();

    const recovered = await waitFor('both services to serve from new replicas', async () => {
      const views = [await getService(luma, 'floor'), await getService(luma, 'awake')];
      const ready = views.flatMap((view) => (view.status.replicas as Array<{ id: string; state: string }>).filter((r) => r.state === 'ready'));
      return ready.length === 2 && ready.every((replica) => !before.includes(replica.id)) ? true : undefined;
    }, 30_000, 100);
    expect(recovered).toBe(true);
    const readyAt = traffic.floor.elapsed();
    await sleep(1_500);
    const outcomes = { floor: await traffic.floor.stop(), awake: await traffic.awake.stop() };

    // The event stream reconnects on its own capped backoff (at most 10 s between attempts).
    await waitFor('event stream reconnected', () => (luma.logs('docker event stream connected').length >= 2 ? true : undefined), 15_000, 100);
    const reconnectedAt = traffic.floor.elapsed();
    const reconnected = luma.logs('docker event stream connected').length;
    await reportFault('docker-outage', {
      eventStreamBackAfterRestoreMs: reconnectedAt - restoredAt,
      outageMs: restoredAt - cutAt,
      replicasReadyAfterRestoreMs: readyAt - restoredAt,
      floor: summarize(between(outcomes.floor, cutAt, Infinity)),
      awake: summarize(between(outcomes.awake, cutAt, Infinity)),
      lastFailureAfterRestoreMs: {
        floor: lastFailureEnd(outcomes.floor, restoredAt),
        awake: lastFailureEnd(outcomes.awake, restoredAt),
      },
      eventStreamConnects: reconnected,
      proxyConnectionsAfterRestore: proxy.accepted - acceptedBefore,
    });

    expect(luma.logs('docker event stream disconnected').length).toBeGreaterThanOrEqual(1);
    expect(reconnected).toBeGreaterThanOrEqual(2);
    const after = [...(await luma.containers({ service: 'floor' })), ...(await luma.containers({ service: 'awake' }))];
    expect(after).toHaveLength(2);
    for (const id of before) expect(after).not.toContain(id);
    expect(summarize(between(outcomes.floor, readyAt + 1_000, Infinity)).failed).toBe(0);
    expect(summarize(between(outcomes.awake, readyAt + 1_000, Infinity)).failed).toBe(0);
  });
});

describe.each(['admin', 'dns'])('replica deaths in %s upstream mode', (mode) => {
  let luma: LumaInstance;

  beforeAll(async () => {
    luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: [`-upstream-mode=${mode}`] });
  });

  afterAll(async () => {
    await luma?.destroy();
  });

  const deaths: Array<{ kind: string; inject: (url: string, container: string) => Promise<void> }> = [
    { kind: 'docker-kill', inject: async (_url, container) => void (await docker('kill', container)) },
    { kind: 'docker-rm', inject: async (_url, container) => void (await docker('rm', '-f', container)) },
    {
      kind: 'crash-endpoint',
      // Caddy picks one of the two replicas; which one crashes is read back from the echo.
      inject: async (url) => void (await probe(`${url}/crash`)),
    },
  ];

  it.each(deaths)('routes around and replaces a replica after $kind', async ({ kind, inject }) => {
    const name = `pair-${kind}`;
    await createService(luma, { name, image: TEST_IMAGE, minReplicas: 2 });
    await waitForState(luma, name, 'ready', 2);
    const before = await luma.containers({ service: name, running: true });
    await sleep(1_500); // dns mode: Caddy's cached SRV answer lists both replicas

    const traffic = startTraffic(`${luma.url}/${name}/`, { concurrency: 4, intervalMs: 20, maxMs: 30_000, timeoutMs: 10_000 });
    await sleep(500);
    const faultAt = traffic.elapsed();
    await inject(`${luma.url}/${name}`, before[0]!);
    const replaced = await waitFor('a replacement replica', async () => {
      const running = await luma.containers({ service: name, running: true });
      const view = await getService(luma, name);
      return running.length === 2 && view.status.readyReplicas === 2 && running.some((id) => !before.includes(id)) ? running : undefined;
    }, 30_000, 100);
    const replacedAt = traffic.elapsed();
    await sleep(1_000);
    const outcomes = await traffic.stop();

    const after = summarize(between(outcomes, faultAt, Infinity));
    const lastFailureMs = lastFailureEnd(outcomes, faultAt);
    const view = await getService(luma, name);
    await reportFault(`replica-death-${kind}-${mode}`, {
      clients: after,
      lastFailureAfterFaultMs: lastFailureMs,
      replacedAfterMs: replacedAt - faultAt,
      lastError: view.status.lastError === null ? null : { message: view.status.lastError.message, exitCode: view.status.lastError.exitCode },
    });

    expect(lastFailureMs).toBeLessThan(2_500);
    expect(replaced).toHaveLength(2);
    expect(await luma.containers({ service: name })).toHaveLength(2);
  });
});

describe('replica crashes', () => {
  let luma: LumaInstance;

  beforeAll(async () => {
    luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: ['-upstream-mode=admin'] });
  });

  afterAll(async () => {
    await luma?.destroy();
  });

  it('reports an OOM kill and replaces the replica', async () => {
    await createService(luma, { name: 'oom', image: TEST_IMAGE, command: ['node', '-e', OOM_APP], resources: { memory: '64MiB' }, minReplicas: 1 });
    const view = await waitForState(luma, 'oom', 'ready', 1);
    const first = view.status.replicas[0].id as string;

    const startedAt = Date.now();
    const killed = await probe(`${luma.url}/oom/oom`, { timeoutMs: 20_000 });
    await waitFor('replacement after the OOM kill', async () => {
      const current = await getService(luma, 'oom');
      return current.status.readyReplicas === 1 && current.status.replicas[0].id !== first ? current : undefined;
    }, 30_000, 100);
    const replacedAfterMs = Date.now() - startedAt;
    const exitLog = await waitFor('exit logged', () => luma.logs('replica exited unexpectedly').find((entry) => entry.replica !== undefined), 5_000);
    await reportFault('replica-oom-kill', {
      killedRequestStatus: killed.status,
      replacedAfterMs,
      logged: { exitCode: exitLog.exitCode, oomKilled: exitLog.oomKilled, logTail: exitLog.logTail },
    });

    // Through Caddy straight to the replica, Caddy's error route turns the reset into 503. A
    // request that the wake-up handler replayed (the route still pointed at it) gets its 502.
    expect([502, 503]).toContain(killed.status);
    expect(exitLog.exitCode).toBe(137);
    expect(exitLog.oomKilled).toBe(true);
    expect((await probe(`${luma.url}/oom/`)).status).toBe(200);
  });

  it('backs off a replica that keeps crashing', async () => {
    await createService(luma, { name: 'crashing', image: TEST_IMAGE, command: ['node', '-e', CRASHING_APP], minReplicas: 1 });

    // Poll the API for 14 s: replicas that became ready, crashes, and the state between them.
    const readyAt = new Map<string, number>();
    const crashes = new Set<string>();
    let failedView: Record<string, any> | undefined;
    const deadline = Date.now() + 14_000;
    while (Date.now() < deadline) {
      const view = await getService(luma, 'crashing');
      for (const replica of view.status.replicas as Array<{ id: string; readyAt: string | null }>) {
        if (replica.readyAt !== null && !readyAt.has(replica.id)) readyAt.set(replica.id, Date.parse(replica.readyAt));
      }
      if (view.status.lastError !== null) crashes.add(view.status.lastError.at);
      if (view.status.state === 'failed' && view.status.lastError?.logTail !== undefined) failedView = view;
      await sleep(100);
    }
    const readyTimes = [...readyAt.values()].sort((a, b) => a - b);
    const crashTimes = [...crashes].map((at) => Date.parse(at)).sort((a, b) => a - b);
    // Delay from each crash to the next replica becoming ready; the boot itself takes ~0.3 s.
    const gaps = crashTimes.map((at) => (readyTimes.find((t) => t > at) ?? Number.NaN) - at).filter((gap) => !Number.isNaN(gap));
    await reportFault('replica-crash-loop', {
      observedMs: 14_000,
      replicasStarted: readyTimes.length,
      crashes: crashTimes.length,
      crashToNextReadyMs: gaps,
      failedState: failedView === undefined ? null : { state: failedView.status.state, lastError: failedView.status.lastError, retryAt: failedView.status.retryAt },
    });

    expect(readyTimes.length).toBeGreaterThanOrEqual(3);
    expect(readyTimes.length).toBeLessThanOrEqual(7);
    expect(gaps.length).toBeGreaterThanOrEqual(3);
    expect(gaps.at(-1)!).toBeGreaterThan(gaps[0]! + 1_500);
    expect(failedView?.status.lastError.exitCode).toBe(9);
    expect((failedView?.status.lastError.logTail as string[]).join('\n')).toContain('crashing-app giving up');
    expect(failedView?.status.retryAt).not.toBeNull();
  });
});
