/**
 * The test app (test/app/server.js) as a plain process on 127.0.0.1, so the behaviour other
 * tests rely on is checked without Docker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { request, WebSocket } from 'undici';
import { freePort } from '../support/ports.js';

const APP = new URL('../app/server.js', import.meta.url).pathname;
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

interface RunningApp {
  child: ChildProcess;
  origin: string;
  port: number;
  output: () => string;
}

/** Starts the app and resolves once it printed its first line, or exited. */
async function startApp(env: Record<string, string> = {}): Promise<RunningApp> {
  const port = await freePort();
  const child = spawn(process.execPath, [APP], { env: { PATH: process.env.PATH ?? '', PORT: String(port), ...env } });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await Promise.race([once(child.stdout!, 'data'), once(child, 'exit')]);
  return { child, origin: `http://127.0.0.1:${port}`, port, output: () => output };
}

async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
}

describe('test app routes', () => {
  let app: RunningApp;

  it('echoes request with body hash', async () => {
    app = await startApp();
    const body = 'x'.repeat(100_000);
    const response = await request(`${app.origin}/svc/some/path?a=1&a=2&b=3`, { method: 'POST', body, headers: { 'x-test': 'yes' } });
    const echo = (await response.body.json()) as Record<string, unknown>;

    expect(response.statusCode).toBe(200);
    expect(echo.method).toBe('POST');
    expect(echo.path).toBe('/svc/some/path');
    expect(echo.rawUrl).toBe('/svc/some/path?a=1&a=2&b=3');
    expect(echo.query).toEqual({ a: ['1', '2'], b: '3' });
    expect((echo.headers as Record<string, string>)['x-test']).toBe('yes');
    expect(echo.bodyLength).toBe(100_000);
    expect(echo.bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
    expect(echo.containerId).toBe(hostname());
    expect(echo.pid).toBe(app.child.pid);
  });

  it('serves special routes', async () => {
    app = await startApp();

    const teapot = await request(`${app.origin}/svc/status/418`);
    expect(teapot.statusCode).toBe(418);
    await teapot.body.dump();

    const empty = await request(`${app.origin}/status/204`);
    expect(empty.statusCode).toBe(204);
    await empty.body.dump();

    const redirect = await request(`${app.origin}/redirect?to=/elsewhere`);
    expect(redirect.statusCode).toBe(302);
    expect(redirect.headers.location).toBe('/elsewhere');
    await redirect.body.dump();

    const cookie = await request(`${app.origin}/svc/cookie`);
    expect(cookie.headers['set-cookie']).toEqual(['luma_a=1; Path=/', 'luma_b=2; Path=/; HttpOnly']);
    await cookie.body.dump();

    const health = await request(`${app.origin}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();

    const plainWs = await request(`${app.origin}/ws`);
    expect(plainWs.statusCode).toBe(426);
    await plainWs.body.dump();
  });

  it('holds request for given time', async () => {
    app = await startApp();
    const startedAt = Date.now();
    const response = await request(`${app.origin}/hold?ms=200`);
    await response.body.dump();
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(195);
  });

  it('streams bytes in pattern', async () => {
    app = await startApp();
    const response = await request(`${app.origin}/stream?bytes=300000&chunkBytes=65536`);
    const data = Buffer.from(await response.body.arrayBuffer());

    expect(response.headers['content-length']).toBe('300000');
    expect(data.length).toBe(300_000);
    expect(data.every((byte, index) => byte === index % 256)).toBe(true);
  });

  it('streams chunked without length', async () => {
    app = await startApp();
    const response = await request(`${app.origin}/stream?bytes=1000&chunkBytes=100&chunked=1`);
    const data = Buffer.from(await response.body.arrayBuffer());

    expect(response.headers['content-length']).toBeUndefined();
    expect(response.headers['transfer-encoding']).toBe('chunked');
    expect(data.length).toBe(1_000);
    expect(data.every((byte, index) => byte === index % 256)).toBe(true);
  });

  it('sends server-sent events spaced', async () => {
    app = await startApp();
    const response = await request(`${app.origin}/svc/sse?events=3&intervalMs=100`);
    const arrivals: number[] = [];
    let text = '';
    for await (const chunk of response.body) {
      arrivals.push(Date.now());
      text += chunk.toString();
    }

    expect(response.headers['content-type']).toBe('text/event-stream');
    expect(text.match(/^data: /gm)).toHaveLength(3);
    expect(text).toContain('id: 3\n');
    // Each event is flushed on its own, about 100 ms apart.
    expect(arrivals.length).toBeGreaterThanOrEqual(3);
    expect((arrivals.at(-1) ?? 0) - (arrivals[0] ?? 0)).toBeGreaterThanOrEqual(180);
  });

  it('echoes websocket messages', async () => {
    app = await startApp();
    const socket = new WebSocket(`ws://127.0.0.1:${app.port}/svc/ws`);
    socket.binaryType = 'arraybuffer';
    const received: Array<string | number[]> = [];
    const closed = new Promise<number>((resolve) => socket.addEventListener('close', (event) => resolve(event.code)));
    socket.addEventListener('message', (event) => {
      received.push(typeof event.data === 'string' ? event.data : [...new Uint8Array(event.data as ArrayBuffer)]);
      if (received.length === 3) socket.close(4000, 'done');
    });
    await once(socket as unknown as EventTarget, 'open');

    socket.send('héllo');
    socket.send(new Uint8Array([1, 2, 255]));
    socket.send('y'.repeat(70_000));

    expect(await closed).toBe(4000);
    expect(received[0]).toBe('héllo');
    expect(received[1]).toEqual([1, 2, 255]);
    expect(received[2]).toBe('y'.repeat(70_000));
  });
});

describe('test app boot modes', () => {
  it('logs requests when asked', async () => {
    const app = await startApp({ LOG_REQUESTS: '1' });
    const response = await request(`${app.origin}/svc/x?y=1`, { method: 'POST', body: 'abc' });
    await response.body.dump();

    expect(app.output()).toContain('test-app request POST /svc/x?y=1\n');
  });

  it('fails then becomes ready', async () => {
    const app = await startApp({ FAIL_UNTIL_MS: '300' });
    const early = await request(`${app.origin}/healthz`);
    await early.body.dump();
    await new Promise((resolve) => setTimeout(resolve, 350));
    const late = await request(`${app.origin}/healthz`);
    await late.body.dump();

    expect(early.statusCode).toBe(503);
    expect(late.statusCode).toBe(200);
  });

  it('crashes on boot with code', async () => {
    const app = await startApp({ CRASH_ON_BOOT: '3' });
    expect(await exitOf(app.child)).toBe(3);
    expect(app.output()).toContain('test-app crash-on-boot: missing configuration DATABASE_URL');
  });

  it('exits promptly on SIGTERM', async () => {
    const app = await startApp();
    // A request in flight must not delay the exit.
    const held = request(`${app.origin}/hold?ms=5000`).then(
      () => 'answered',
      () => 'cut off',
    );
    await new Promise((resolve) => setTimeout(resolve, 50));

    const startedAt = Date.now();
    app.child.kill('SIGTERM');

    expect(await exitOf(app.child)).toBe(0);
    expect(Date.now() - startedAt).toBeLessThan(300);
    expect(await held).toBe('cut off');
  });

  it('exits with 7 after crash route', async () => {
    const app = await startApp();
    const response = await request(`${app.origin}/crash`);
    await response.body.dump();
    expect(response.statusCode).toBe(200);
    expect(await exitOf(app.child)).toBe(7);
  });

  it('never answers in silent mode', async () => {
    const app = await startApp({ NEVER_ANSWER: '1' });
    const socket = connect(app.port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    let received = 0;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.destroy();
    expect(received).toBe(0);
  });
});
