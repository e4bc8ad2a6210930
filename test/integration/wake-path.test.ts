/**
 * End to end through the real Caddy, the real controller process and the real Docker engine:
 * registering a service, waking it with a request, replaying held requests, the warm path, scale
 * to zero and waking again.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createService, getService, startLuma, type LumaInstance } from '../support/luma.js';
import { sleep, waitFor } from '../support/ports.js';

const TEST_IMAGE = 'luma-test-app:latest';

interface Echo {
  method: string;
  path: string;
  query: Record<string, string>;
  rawUrl: string;
  headers: Record<string, string>;
  bodyLength: number;
  bodySha256: string;
  containerId: string;
}

let caddy: CaddyProcess;

beforeAll(async () => {
  caddy = await startCaddy();
});

afterAll(async () => {
  await caddy?.stop();
});

describe.each(['admin', 'dns'])('wake path in %s upstream mode', (mode) => {
  let luma: LumaInstance;

  beforeAll(async () => {
    luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: ['-inactivity-timeout=3s', `-upstream-mode=${mode}`] });
  });

  afterAll(async () => {
    await luma?.destroy();
  });

  it('replays a cold GET with prefix, query and forwarding headers', async () => {
    await createService(luma, { name: 'cold-get', image: TEST_IMAGE });

    const response = await fetch(`${luma.url}/cold-get/some/path%20x?a=1&b=two`, { headers: { 'x-custom': 'kept' } });
    expect(response.status).toBe(200);
    const echo = (await response.json()) as Echo;
    expect(echo.method).toBe('GET');
    expect(echo.rawUrl).toBe('/some/path%20x?a=1&b=two');
    expect(echo.headers['x-forwarded-prefix']).toBe('/cold-get');
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echo.headers['x-forwarded-proto']).toBe('http');
    expect(echo.headers['x-custom']).toBe('kept');
    expect(echo.headers.host).toBe(`127.0.0.1:${luma.port}`);

    const containers = await luma.containers({ service: 'cold-get', running: true });
    expect(containers).toHaveLength(1);
  });

  it('replays a cold POST body exactly once', async () => {
    await createService(luma, { name: 'cold-post', image: TEST_IMAGE });
    const body = Buffer.alloc(3 * 1024 * 1024, 'luma');
    const expectedHash = createHash('sha256').update(body).digest('hex');

    const response = await fetch(`${luma.url}/cold-post/upload`, { method: 'POST', body });
    expect(response.status).toBe(200);
    const echo = (await response.json()) as Echo;
    expect(echo.method).toBe('POST');
    expect(echo.bodyLength).toBe(body.length);
    expect(echo.bodySha256).toBe(expectedHash);
  });

  it('starts one container for 50 concurrent cold requests', async () => {
    await createService(luma, { name: 'burst', image: TEST_IMAGE, env: { BOOT_DELAY_MS: '500' } });

    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => fetch(`${luma.url}/burst/r/${i}`).then(async (r) => ({ status: r.status, echo: (await r.json()) as Echo }))),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200));
    const containerIds = new Set(responses.map((r) => r.echo.containerId));
    expect(containerIds.size).toBe(1);
    expect(responses.map((r) => r.echo.path).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `/r/${i}`).sort());
    expect(await luma.containers({ service: 'burst' })).toHaveLength(1);
  });

  it('serves warm requests through caddy without the controller', async () => {
    await createService(luma, { name: 'warm', image: TEST_IMAGE });
    const first = (await (await fetch(`${luma.url}/warm/`)).json()) as Echo;

    const view = await getService(luma, 'warm');
    expect(view.status.state).toBe('ready');
    const replicaAddress = view.status.replicas[0]?.address as string;
    const instanceId = await luma.instanceId();

    // A held request shows which upstream Caddy picked. Right after the wake Caddy may still
    // route to the wake-up handler (until the route write lands, or the cached SRV answer
    // expires in dns mode), so the probe repeats until Caddy dials the replica itself.
    const upstream = await waitFor('caddy to proxy straight to the replica', async () => {
      const held = fetch(`${luma.url}/warm/hold?ms=600`);
      await sleep(300);
      const upstreams = (await (await fetch(`${caddy.adminUrl}/reverse_proxy/upstreams`)).json()) as Array<{ address: string; num_requests: number }>;
      expect((await held).status).toBe(200);
      return upstreams.find((u) => u.num_requests > 0 && (u.address === replicaAddress || (u.address.includes(`.warm.${instanceId}.`) && !u.address.startsWith('wake.'))));
    }, 10_000, 0);
    expect(upstream.address).not.toMatch(/^wake\./);

    const second = (await (await fetch(`${luma.url}/warm/again`)).json()) as Echo;
    expect(second.containerId).toBe(first.containerId);
    expect(second.headers['x-forwarded-prefix']).toBe('/warm');
  });

  it('redirects the bare prefix and names unknown services', async () => {
    await createService(luma, { name: 'redir', image: TEST_IMAGE });
    const redirect = await fetch(`${luma.url}/redir?x=1`, { redirect: 'manual' });
    expect(redirect.status).toBe(308);
    expect(redirect.headers.get('location')).toBe('/redir/?x=1');

    const missing = await fetch(`${luma.url}/no-such-service/`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain('no-such-service');
  });

  it('scales to zero when idle and wakes again', async () => {
    await createService(luma, { name: 'sleepy', image: TEST_IMAGE });
    const first = (await (await fetch(`${luma.url}/sleepy/`)).json()) as Echo;

    await waitFor(
      'service to scale to zero',
      async () => {
        const view = await getService(luma, 'sleepy');
        const running = await luma.containers({ service: 'sleepy', running: true });
        return view.status.state === 'sleeping' && running.length === 0 ? true : undefined;
      },
      20_000,
      250,
    );

    const again = await fetch(`${luma.url}/sleepy/`);
    expect(again.status).toBe(200);
    const second = (await again.json()) as Echo;
    expect(second.containerId).not.toBe(first.containerId);
  });

  it('keeps a service awake while a stream is open', async () => {
    await createService(luma, { name: 'streamer', image: TEST_IMAGE });
    await fetch(`${luma.url}/streamer/`); // wake, so the stream goes through the warm path
    await waitFor('route to the replica', async () => {
      const view = await getService(luma, 'streamer');
      return view.status.state === 'ready' ? true : undefined;
    });

    // 8 events 1 s apart keep one request open well past the 3 s inactivity timeout.
    const response = await fetch(`${luma.url}/streamer/sse?events=8&intervalMs=1000`);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const text = await response.text();
    expect(text.match(/^data:/gm)?.length).toBe(8);

    const view = await getService(luma, 'streamer');
    expect(view.status.state).toBe('ready');
    expect(await luma.containers({ service: 'streamer', running: true })).toHaveLength(1);
  });

  it('keeps minReplicas warm and restarts a killed one', async () => {
    await createService(luma, { name: 'floor', image: TEST_IMAGE, minReplicas: 1 });
    const [first] = await waitFor('minimum replica', async () => {
      const ids = await luma.containers({ service: 'floor', running: true });
      const view = await getService(luma, 'floor');
      return ids.length === 1 && view.status.state === 'ready' ? ids : undefined;
    }, 30_000, 200);

    const { execFile } = await import('node:child_process');
    await new Promise((resolve) => execFile('docker', ['kill', first!], resolve));

    await waitFor('replacement replica', async () => {
      const ids = await luma.containers({ service: 'floor', running: true });
      return ids.length === 1 && ids[0] !== first ? ids : undefined;
    }, 30_000, 200);
    await sleep(100);
  });
});
