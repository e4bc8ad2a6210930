/**
 * Streaming responses (server-sent events, slow downloads) through the wake-up path and through
 * Caddy warm: each chunk reaches the client when the app sends it, with nothing buffered or
 * compressed on the way. Real Caddy, controller process and Docker engine, dns upstream mode.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createService, startLuma, type LumaInstance } from '../support/luma.js';
import { sleep } from '../support/ports.js';
import { busyUpstreams, parseEvents, readTimed, type TimedResponse } from '../support/traffic.js';

const TEST_IMAGE = 'luma-test-app:latest';
/** Largest accepted delay between the app sending a chunk and the client reading it. */
const MAX_DELAY_MS = 300;

let caddy: CaddyProcess;
let luma: LumaInstance;

beforeAll(async () => {
  caddy = await startCaddy();
  luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: ['-inactivity-timeout=60s'] });
});

afterAll(async () => {
  await luma?.destroy();
  await caddy?.stop();
});

type Path = 'cold' | 'warm';

/**
 * Creates a service and, for the warm path, wakes it and waits past Caddy's SRV cache lifetime
 * (1 s), so the next request goes from Caddy straight to the replica.
 */
async function prepare(name: string, path: Path): Promise<void> {
  await createService(luma, { name, image: TEST_IMAGE, env: { BOOT_DELAY_MS: '500' } });
  if (path === 'cold') return;
  expect((await fetch(`${luma.url}/${name}/`)).status).toBe(200);
  await sleep(1_500);
}

/** Sends the request and, while it runs, reads which upstream Caddy proxies it to. */
async function readWithUpstream(url: string, headers?: Record<string, string>): Promise<{ response: TimedResponse; upstreams: string[] }> {
  const reading = readTimed(url, { headers });
  // A cold request waits for the boot (500 ms) before its first chunk, so 300 ms in it is in flight either way.
  await sleep(300);
  const upstreams = await busyUpstreams(caddy.adminUrl);
  return { response: await reading, upstreams };
}

function expectUpstream(upstreams: string[], service: string, path: Path): void {
  const mine = upstreams.filter((address) => address.includes(`.${service}.`));
  expect(mine).toHaveLength(1);
  if (path === 'cold') expect(mine[0]).toMatch(/^wake\./);
  else expect(mine[0]).not.toMatch(/^wake\./);
}

describe.each<Path>(['cold', 'warm'])('streaming on the %s path', (path) => {
  it('delivers each SSE event at once', async () => {
    const name = `sse-${path}`;
    await prepare(name, path);

    const { response, upstreams } = await readWithUpstream(`${luma.url}/${name}/sse?events=4&intervalMs=700`, {
      'accept-encoding': 'gzip, br',
    });
    expectUpstream(upstreams, name, path);
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('text/event-stream');
    expect(response.headers['content-encoding']).toBeUndefined();

    const events = parseEvents(response.chunks);
    expect(events.map((event) => event.n)).toEqual([1, 2, 3, 4]);
    for (const event of events) expect(event.receivedAt - event.sentAt).toBeLessThan(MAX_DELAY_MS);
    // The headers arrive before the first event: they are flushed, not held back with it.
    expect(response.headersAt).toBeLessThanOrEqual(events[0]!.receivedAt);
  });

  it('streams a slow download without buffering', async () => {
    const name = `download-${path}`;
    await prepare(name, path);

    // 16 chunks of 16 KiB, 150 ms apart: 2.25 s from the first chunk to the last.
    const { response, upstreams } = await readWithUpstream(`${luma.url}/${name}/stream?bytes=262144&chunkBytes=16384&delayMs=150`);
    expectUpstream(upstreams, name, path);
    expect(response.status).toBe(200);
    expect(response.headers['content-length']).toBe('262144');
    expect(response.body.length).toBe(262_144);
    expect(response.body.every((byte, i) => byte === i % 256)).toBe(true);

    const first = response.chunks[0]!.at;
    const last = response.chunks.at(-1)!.at;
    expect(last - first).toBeGreaterThan(1_800);
    // Bytes arrive in step with the app: half the body within about half the sending time.
    let received = 0;
    const halfAt = response.chunks.find((chunk) => (received += chunk.bytes) >= 131_072)!.at;
    expect(halfAt - first).toBeLessThan(1_500);
  });

  it.each([
    ['chunked', '&chunked=1'],
    ['with a length', ''],
  ])('streams small writes %s', async (kind, flag) => {
    const name = `small-${kind === 'chunked' ? 'chunked' : 'length'}-${path}`;
    await prepare(name, path);

    const { response, upstreams } = await readWithUpstream(`${luma.url}/${name}/stream?bytes=1000&chunkBytes=100&delayMs=300${flag}`);
    expectUpstream(upstreams, name, path);
    expect(response.status).toBe(200);
    if (kind === 'chunked') expect(response.headers['transfer-encoding']).toBe('chunked');
    else expect(response.headers['content-length']).toBe('1000');
    expect(response.body.length).toBe(1_000);
    // Ten writes of 100 bytes, 300 ms apart, arrive as about ten reads spread over 2.7 s.
    expect(response.chunks.length).toBeGreaterThanOrEqual(8);
    expect(response.chunks.at(-1)!.at - response.chunks[0]!.at).toBeGreaterThan(2_000);
  });
});
