/**
 * Request bodies sent while a service boots: a 50 MiB upload, a chunked upload and an
 * `Expect: 100-continue` request reach the app intact and exactly once; bodies over
 * `-max-body-size` get 413 at once; the controller's memory stays bounded while uploads wait for a replica.
 * Real Caddy, controller process and Docker engine, dns upstream mode.
 */
import { Readable } from 'node:stream';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createService, getService, startLuma, type LumaInstance } from '../support/luma.js';
import { sleep } from '../support/ports.js';
import { sendRaw } from '../support/traffic.js';

const execFileAsync = promisify(execFile);
const TEST_IMAGE = 'luma-test-app:latest';
const MiB = 1024 * 1024;
const MAX_BODY_BYTES = 64 * MiB;

interface Echo {
  method: string;
  headers: Record<string, string>;
  bodyLength: number;
  bodySha256: string;
}

let caddy: CaddyProcess;
let luma: LumaInstance;
const upload = Buffer.alloc(50 * MiB);
let uploadSha256: string;

beforeAll(async () => {
  for (let i = 0; i < upload.length; i += 4) upload.writeUInt32LE(i, i);
  uploadSha256 = sha256(upload);
  caddy = await startCaddy();
  luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: [`-max-body-size=${MAX_BODY_BYTES}`, '-inactivity-timeout=60s'] });
});

afterAll(async () => {
  await luma?.destroy();
  await caddy?.stop();
});

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Creates a sleeping service whose app logs one line per request. */
async function createLoggingService(name: string, bootDelayMs: number): Promise<void> {
  await createService(luma, { name, image: TEST_IMAGE, env: { BOOT_DELAY_MS: String(bootDelayMs), LOG_REQUESTS: '1' } });
}

/** Returns how many requests the service's containers logged for `path`. */
async function requestsSeen(service: string, path: string): Promise<number> {
  let count = 0;
  for (const id of await luma.containers({ service })) {
    const { stdout } = await execFileAsync('docker', ['logs', id], { maxBuffer: 16 * MiB });
    count += stdout.split('\n').filter((line) => line.startsWith('test-app request ') && line.split(' ')[3] === path).length;
  }
  return count;
}

async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
  return kib * 1024;
}

// Every request here opens a new connection (`reset: true`): creating a service writes Caddy's
// config, and Caddy 2.6.2 then closes idle keep-alive connections, so a pooled one could fail.
describe('uploads to a cold service', () => {
  it('delivers a 50 MiB body once', async () => {
    await createLoggingService('up-big', 1_000);

    const response = await request(`${luma.url}/up-big/big`, { method: 'POST', body: upload, reset: true });
    expect(response.statusCode).toBe(200);
    const echo = (await response.body.json()) as Echo;
    expect(echo.bodyLength).toBe(upload.length);
    expect(echo.bodySha256).toBe(uploadSha256);
    expect(await requestsSeen('up-big', '/big')).toBe(1);
  });

  it('delivers a chunked body once', async () => {
    await createLoggingService('up-chunked', 1_000);
    const chunks = Array.from({ length: 80 }, (_, i) => upload.subarray(i * 65_536, (i + 1) * 65_536));

    const response = await request(`${luma.url}/up-chunked/chunked`, {
      method: 'POST',
      reset: true,
      body: Readable.from(
        (async function* () {
          for (const chunk of chunks) yield chunk;
        })(),
      ),
    });
    expect(response.statusCode).toBe(200);
    const echo = (await response.body.json()) as Echo;
    expect(echo.headers['transfer-encoding']).toBe('chunked');
    expect(echo.bodyLength).toBe(80 * 65_536);
    expect(echo.bodySha256).toBe(sha256(Buffer.concat(chunks)));
    expect(await requestsSeen('up-chunked', '/chunked')).toBe(1);
  });

  it('delivers an expect-continue body once', async () => {
    await createLoggingService('up-continue', 1_000);
    const body = upload.subarray(0, 4 * MiB);

    const response = await sendRaw({
      port: luma.port,
      head: [
        'POST /up-continue/continue HTTP/1.1',
        `Host: 127.0.0.1:${luma.port}`,
        `Content-Length: ${body.length}`,
        'Expect: 100-continue',
        'Connection: close',
      ],
      body,
      waitForContinue: true,
    });
    expect(response.informational[0]).toBe('HTTP/1.1 100 Continue');
    expect(response.status).toBe(200);
    const echo = JSON.parse(response.body.toString()) as Echo;
    expect(echo.bodyLength).toBe(body.length);
    expect(echo.bodySha256).toBe(sha256(body));
    expect(echo.headers.expect).toBeUndefined();
    expect(await requestsSeen('up-continue', '/continue')).toBe(1);
  });
});

describe.each(['cold', 'warm'])('body limit on the %s path', (path) => {
  const name = `limit-${path}`;

  beforeAll(async () => {
    await createLoggingService(name, 0);
    if (path === 'warm') {
      expect((await fetch(`${luma.url}/${name}/`)).status).toBe(200);
      await sleep(1_500);
    }
  });

  it('rejects a declared length at once', async () => {
    // Like curl with a large body: the client waits for `100 Continue` before sending it.
    const response = await sendRaw({
      port: luma.port,
      head: [
        `POST /${name}/declared HTTP/1.1`,
        `Host: 127.0.0.1:${luma.port}`,
        `Content-Length: ${MAX_BODY_BYTES + 1}`,
        'Expect: 100-continue',
      ],
      body: Buffer.alloc(1024),
      waitForContinue: true,
      timeoutMs: 5_000,
    });
    expect(response.informational).toEqual([]);
    expect(response.status).toBe(413);
    expect(response.headers.connection).toBe('close');
    expect(response.elapsedMs).toBeLessThan(1_000);
    expect(response.body.toString()).toContain(`${MAX_BODY_BYTES} bytes`);
    expect((await getService(luma, name)).status.state).toBe(path === 'cold' ? 'sleeping' : 'ready');
    expect(await requestsSeen(name, '/declared')).toBe(0);
  });

  it('rejects a chunked body over the limit', async () => {
    const chunk = upload.subarray(0, MiB);
    const response = await request(`${luma.url}/${name}/chunked`, {
      method: 'POST',
      reset: true,
      body: Readable.from(
        (async function* () {
          // 65 chunks of 1 MiB: one over the limit. The generator stops when the request fails.
          for (let i = 0; i < 65; i++) yield chunk;
        })(),
      ),
    }).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
    // The reply may come before the whole body was sent; undici then reports the reset instead.
    if (response instanceof Error) {
      expect(response.message).toMatch(/other side closed|socket|reset|EPIPE/i);
      return;
    }
    expect(response.statusCode).toBe(413);
    await response.body.dump();
  });

  it('accepts a body at the limit', async () => {
    const body = Buffer.alloc(MAX_BODY_BYTES, 7);
    const response = await request(`${luma.url}/${name}/at-limit`, { method: 'POST', body, reset: true });
    expect(response.statusCode).toBe(200);
    const echo = (await response.body.json()) as Echo;
    expect(echo.bodyLength).toBe(MAX_BODY_BYTES);
  });
});

describe('controller memory', () => {
  it('stays bounded while holding uploads', async () => {
    await createLoggingService('up-held', 6_000);
    const pid = luma.process.pid!;
    const baseline = await residentBytes(pid);
    let peak = baseline;
    let caddyPeak = await residentBytes(caddy.pid);
    const caddyBaseline = caddyPeak;

    let sampling = true;
    const sampler = (async () => {
      // Bounded: at most 600 samples, 100 ms apart.
      for (let i = 0; i < 600 && sampling; i++) {
        peak = Math.max(peak, await residentBytes(pid));
        caddyPeak = Math.max(caddyPeak, await residentBytes(caddy.pid));
        await sleep(100);
      }
    })();

    const started = Date.now();
    const responses = await Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        const response = await request(`${luma.url}/up-held/held-${i}`, { method: 'POST', body: upload, reset: true });
        return { status: response.statusCode, echo: (await response.body.json()) as Echo };
      }),
    );
    const elapsedMs = Date.now() - started;
    sampling = false;
    await sampler;

    for (const { status, echo } of responses) {
      expect(status).toBe(200);
      expect(echo.bodySha256).toBe(uploadSha256);
    }
    for (let i = 0; i < 4; i++) expect(await requestsSeen('up-held', `/held-${i}`)).toBe(1);

    const growthMiB = (peak - baseline) / MiB;
    console.log(
      `4 x 50 MiB uploads held for a 6 s boot, ${elapsedMs} ms in all: controller RSS ${(baseline / MiB).toFixed(1)} MiB` +
        ` -> peak ${(peak / MiB).toFixed(1)} MiB (+${growthMiB.toFixed(1)} MiB); caddy RSS` +
        ` ${(caddyBaseline / MiB).toFixed(1)} -> peak ${(caddyPeak / MiB).toFixed(1)} MiB`,
    );
    expect(elapsedMs).toBeGreaterThan(5_000);
    // The 200 MiB of bodies wait in socket buffers, not in the controller's heap.
    expect(growthMiB).toBeLessThan(64);
  });
});
