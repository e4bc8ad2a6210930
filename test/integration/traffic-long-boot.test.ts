/**
 * A service that takes 75 s to answer HTTP, with a startup timeout of 120 s: requests held during
 * the boot (a GET, a POST with a body, an SSE stream and a WebSocket upgrade) are all served. No
 * default timeout of Caddy (server or reverse_proxy), of Node's HTTP server or of undici in the
 * wake-up handler may cut them. Takes about 80 s.
 */
import { createHash } from 'node:crypto';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createService, getService, startLuma, type LumaInstance } from '../support/luma.js';
import { openWebSocket } from '../support/websocket.js';

const TEST_IMAGE = 'luma-test-app:latest';
const BOOT_DELAY_MS = 75_000;

let caddy: CaddyProcess;
let luma: LumaInstance;
/** The test's own client waits as long as needed; undici's default header timeout is 300 s. */
const client = new Agent({ headersTimeout: 0, bodyTimeout: 0 });

beforeAll(async () => {
  caddy = await startCaddy();
  luma = await startLuma({ caddyAdminUrl: caddy.adminUrl });
});

afterAll(async () => {
  await client.close();
  await luma?.destroy();
  await caddy?.stop();
});

describe('long boot', () => {
  it('serves requests held for 75 s', { timeout: 150_000 }, async () => {
    await createService(luma, {
      name: 'slow-boot',
      image: TEST_IMAGE,
      env: { BOOT_DELAY_MS: String(BOOT_DELAY_MS) },
      startupTimeout: '120s',
    });
    const body = Buffer.alloc(1024 * 1024, 'slow');
    const started = Date.now();

    const [get, post, sse, socket] = await Promise.all([
      request(`${luma.url}/slow-boot/get`, { dispatcher: client }).then(async (r) => ({ status: r.statusCode, text: await r.body.text() })),
      request(`${luma.url}/slow-boot/post`, { method: 'POST', body, dispatcher: client }).then(async (r) => ({
        status: r.statusCode,
        text: await r.body.text(),
      })),
      request(`${luma.url}/slow-boot/sse?events=2&intervalMs=100`, { dispatcher: client }).then(async (r) => ({
        status: r.statusCode,
        text: await r.body.text(),
      })),
      openWebSocket(luma.port, '/slow-boot/ws'),
    ]);
    const elapsedMs = Date.now() - started;

    try {
      expect(elapsedMs).toBeGreaterThanOrEqual(BOOT_DELAY_MS);
      expect(get.status).toBe(200);
      expect(JSON.parse(get.text).path).toBe('/get');
      expect(post.status).toBe(200);
      expect(JSON.parse(post.text).bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
      expect(sse.status).toBe(200);
      expect(sse.text.match(/^data:/gm)).toHaveLength(2);
      expect(await socket.echo('after a long boot')).toBe('after a long boot');
      expect(await luma.containers({ service: 'slow-boot' })).toHaveLength(1);
      expect((await getService(luma, 'slow-boot')).status.state).toBe('ready');
    } finally {
      socket.close();
    }
  });
});
