import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessLogReceiver } from '../../src/caddy/access-log.js';
import { CaddyAdmin, configPath, idPath } from '../../src/caddy/admin.js';
import { CaddyRouting } from '../../src/caddy/routing.js';
import type { AccessLogEntry, ServiceRoute } from '../../src/caddy/types.js';
import { isLumaError, type LumaError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { freePort, sleep, waitFor } from '../support/ports.js';

/**
 * CaddyRouting, CaddyAdmin and AccessLogReceiver against a real Caddy (/usr/bin/caddy, 2.6.2 on
 * the reference machine). Apps, the API and the wake-up handler are local HTTP servers on
 * 127.0.0.1 that echo what they received.
 */

interface Received {
  url: string;
  headers: http.IncomingHttpHeaders;
}

interface EchoServer {
  name: string;
  address: string;
  received: Received[];
  close(): Promise<void>;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const INSTANCE_ID = 'itest';

let caddy: CaddyProcess;
let admin: CaddyAdmin;
let routing: CaddyRouting;
let receiver: AccessLogReceiver;
let port: number;
let api: EchoServer;
let wake: EchoServer;
let replica1: EchoServer;
let replica2: EchoServer;
const accessLog: AccessLogEntry[] = [];

/** Starts an HTTP server that records each request and returns it as JSON. */
async function startEcho(name: string): Promise<EchoServer> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    received.push({ url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname.endsWith('/events') || url.pathname.endsWith('/ndjson')) {
      // Two chunks 800 ms apart, without Content-Length.
      const sse = url.pathname.endsWith('/events');
      res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/x-ndjson' });
      res.write(sse ? 'data: first\n\n' : '{"n":1}\n');
      setTimeout(() => res.end(sse ? 'data: second\n\n' : '{"n":2}\n'), 800);
      return;
    }
    const delay = url.pathname.endsWith('/slow') ? Number(url.searchParams.get('ms') ?? 1000) : 0;
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name, url: req.url, headers: req.headers }));
    }, delay);
  });
  const upgraded = new Set<Socket>();
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket) => {
    received.push({ url: req.url ?? '', headers: req.headers });
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n');
    socket.pipe(socket);
  });
  server.keepAliveTimeout = 1_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    name,
    address,
    received,
    close: () =>
      new Promise((resolve) => {
        for (const socket of upgraded) socket.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Sends a request through Caddy's public port; the path goes on the wire exactly as given. */
function send(path: string, headers: Record<string, string> = {}, listenPort = port): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: listenPort, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function echoed(reply: Reply): { name: string; url: string; headers: Record<string, string> } {
  expect(reply.status, reply.body).toBe(200);
  return JSON.parse(reply.body) as { name: string; url: string; headers: Record<string, string> };
}

async function inFlight(address: string): Promise<number | undefined> {
  const upstreams = await routing.readUpstreams();
  return upstreams.find((upstream) => upstream.address === address)?.numRequests;
}

function routes(): ServiceRoute[] {
  return [
    { service: 'web', hosts: ['web.test'], upstreams: [replica1.address] },
    { service: 'sleepy', hosts: [], upstreams: [] },
    { service: 'limited', hosts: [], upstreams: [replica2.address], maxConcurrency: 1 },
  ];
}

async function caught(promise: Promise<unknown>): Promise<LumaError> {
  try {
    await promise;
  } catch (error) {
    if (isLumaError(error)) return error;
    throw error;
  }
  throw new Error('expected a LumaError');
}

beforeAll(async () => {
  [api, wake, replica1, replica2] = await Promise.all(['api', 'wake', 'replica1', 'replica2'].map(startEcho));
  receiver = new AccessLogReceiver({ logger: silentLogger(), onEntry: (entry) => accessLog.push(entry) });
  await receiver.start();
  caddy = await startCaddy();
  port = await freePort();
  admin = new CaddyAdmin({ address: caddy.adminUrl, logger: silentLogger() });
  routing = new CaddyRouting({
    admin,
    logger: silentLogger(),
    instanceId: INSTANCE_ID,
    port,
    listenHost: '127.0.0.1',
    apiAddress: api.address,
    wakeAddress: wake.address,
    accessLogAddress: receiver.address,
  });
});

afterAll(async () => {
  await admin?.close();
  await caddy?.stop();
  await receiver?.stop();
  await Promise.all([api, wake, replica1, replica2].map((server) => server?.close()));
});

describe('CaddyRouting install', () => {
  it('ensureServer on empty caddy', async () => {
    expect(await admin.get('/config/apps')).toBeNull();
    expect(await routing.serverPresent()).toBe(false);

    await routing.ensureServer(routes());

    expect(await routing.serverPresent()).toBe(true);
    expect(echoed(await send('/web/')).name).toBe('replica1');
  });

  it('ensureServer keeps foreign config', async () => {
    const otherPort = await freePort();
    const other = {
      listen: [`127.0.0.1:${otherPort}`],
      routes: [{ handle: [{ handler: 'static_response', body: 'other' }] }],
    };
    await admin.put(configPath('apps', 'http', 'servers', 'other'), other);
    await admin.put(configPath('logging', 'logs', 'other'), { writer: { output: 'discard' } });

    await routing.ensureServer(routes());

    expect(await admin.get(configPath('apps', 'http', 'servers', 'other'))).toEqual(other);
    expect(await admin.get(configPath('logging', 'logs', 'other'))).toEqual({ writer: { output: 'discard' } });
    expect((await send('/', {}, otherPort)).body).toBe('other');
  });
});

describe('Caddy routes', () => {
  it('api route sets client ip', async () => {
    const reply = echoed(await send('/api/v1/services?x=1', { 'X-Luma-Client-Ip': '6.6.6.6' }));

    expect(reply.name).toBe('api');
    expect(reply.url).toBe('/api/v1/services?x=1');
    expect(reply.headers['x-luma-client-ip']).toBe('127.0.0.1');
    // Caddy 2.6.2 without trusted_proxies replaces client-sent X-Forwarded-* headers.
    expect(reply.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(reply.headers['x-forwarded-proto']).toBe('http');
    expect(reply.headers['x-forwarded-host']).toBe(`127.0.0.1:${port}`);
    expect(reply.headers.host).toBe(`127.0.0.1:${port}`);
  });

  it('spoofed forwarded headers replaced', async () => {
    const spoofed = { 'X-Forwarded-For': '9.9.9.9', 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'evil.test' };
    const reply = echoed(await send('/web/', spoofed));

    expect(reply.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(reply.headers['x-forwarded-proto']).toBe('http');
    expect(reply.headers['x-forwarded-host']).toBe(`127.0.0.1:${port}`);
  });

  it.each([
    { name: 'percent encodings', path: '/web/a%2Fb/c%20d/%E2%82%AC?q=%2F&x', expected: '/a%2Fb/c%20d/%E2%82%AC?q=%2F&x' },
    { name: 'repeated slashes', path: '/web//double//slash', expected: '//double//slash' },
    { name: 'dot segments', path: '/web/x/../y', expected: '/x/../y' },
    { name: 'upper case prefix', path: '/WEB/upper', expected: '/upper' },
    { name: 'prefix only', path: '/web/', expected: '/' },
    { name: 'prefix in query', path: '/web/x?next=/web/y', expected: '/x?next=/web/y' },
  ])('path route keeps $name', async ({ path, expected }) => {
    const reply = echoed(await send(path, { 'X-Forwarded-Prefix': '/spoofed' }));

    expect(reply.name).toBe('replica1');
    expect(reply.url).toBe(expected);
    expect(reply.headers['x-forwarded-prefix']).toBe('/web');
  });

  it.each([
    { path: '/web?a=1&b=%2F', location: '/web/?a=1&b=%2F' },
    { path: '/web', location: '/web/' },
    { path: '/web?', location: '/web/' },
  ])('redirect of $path', async ({ path, location }) => {
    const reply = await send(path);

    expect(reply.status).toBe(308);
    expect(reply.headers.location).toBe(location);
  });

  it.each([
    { name: 'lower case', host: 'web.test' },
    { name: 'upper case with port', host: 'WEB.Test:1234' },
  ])('host route with $name host', async ({ host }) => {
    const reply = echoed(await send('/sleepy/x', { Host: host, 'X-Forwarded-Prefix': '/spoofed' }));

    expect(reply.name).toBe('replica1');
    expect(reply.url).toBe('/sleepy/x');
    expect(reply.headers['x-forwarded-prefix']).toBeUndefined();
    expect(reply.headers.host).toBe(host);
  });

  it('sleeping service reaches wake', async () => {
    const reply = echoed(await send('/sleepy/hello?x=1'));

    expect(reply.name).toBe('wake');
    expect(reply.url).toBe('/hello?x=1');
    expect(reply.headers['x-forwarded-prefix']).toBe('/sleepy');
  });

  it.each([
    { path: '/nope/x', body: 'no service named "nope"\n' },
    { path: '/nope.txt', body: 'no service named "nope.txt"\n' },
    { path: '/', body: 'not found\n' },
  ])('404 for $path', async ({ path, body }) => {
    const reply = await send(path);

    expect(reply.status).toBe(404);
    expect(reply.body).toBe(body);
    expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8');
  });

  it.each([
    { name: 'event stream', path: '/web/events' },
    { name: 'chunked json', path: '/web/ndjson' },
  ])('$name not buffered', async ({ path }) => {
    const started = Date.now();
    const firstChunkMs = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        res.once('data', () => resolve(Date.now() - started));
        res.resume();
      });
      req.on('error', reject);
      req.end();
    });

    // The app sends the second chunk 800 ms after the first.
    expect(firstChunkMs).toBeLessThan(500);
  });
});

describe('CaddyRouting updates', () => {
  it('setRoute leaves other config alone', async () => {
    const before = (await admin.get('/config/')) as { apps: { http: { servers: Record<string, unknown> } }; logging: unknown };
    const sleepyBefore = await admin.get(idPath(`luma-${INSTANCE_ID}.path.sleepy`));

    await routing.setRoute({ service: 'web', hosts: ['web.test', 'www.web.test'], upstreams: [replica1.address] });

    const after = (await admin.get('/config/')) as typeof before;
    expect(after.apps.http.servers.other).toEqual(before.apps.http.servers.other);
    expect(after.logging).toEqual(before.logging);
    expect(await admin.get(idPath(`luma-${INSTANCE_ID}.path.sleepy`))).toEqual(sleepyBefore);
    expect(echoed(await send('/x', { Host: 'www.web.test' })).name).toBe('replica1');
  });

  it('setRoute adds and removes services', async () => {
    await routing.setRoute({ service: 'extra', hosts: ['extra.test'], upstreams: [replica2.address] });
    expect(echoed(await send('/extra/a')).name).toBe('replica2');
    expect(echoed(await send('/a', { Host: 'extra.test' })).name).toBe('replica2');

    await routing.removeRoute('extra');
    expect((await send('/extra/a')).status).toBe(404);
    expect((await send('/a/', { Host: 'extra.test' })).body).toBe('no service named "a"\n');
    expect(echoed(await send('/web/')).name).toBe('replica1');
  });

  it('error route answers 503 fast', async () => {
    const closedPort = await freePort();
    const downPort = await freePort();
    const down = new CaddyRouting({
      admin,
      logger: silentLogger(),
      instanceId: 'down',
      port: downPort,
      listenHost: '127.0.0.1',
      apiAddress: api.address,
      wakeAddress: `127.0.0.1:${closedPort}`,
    });
    await down.ensureServer([{ service: 'app', hosts: [], upstreams: [] }]);

    const started = Date.now();
    const reply = await send('/app/x', {}, downPort);

    expect(Date.now() - started).toBeLessThan(500);
    expect(reply.status).toBe(503);
    expect(reply.headers['retry-after']).toBe('1');
    expect(reply.body).toBe('service unavailable, retry in a moment\n');
    await down.removeServer();
  });
});

describe('Caddy in-flight counts', () => {
  it('readUpstreams counts in-flight', async () => {
    const slow = send('/limited/slow?ms=1500');
    await waitFor('one request in flight', async () => ((await inFlight(replica2.address)) === 1 ? true : undefined), 2_000, 50);

    const rejected = await send('/limited/x');
    expect(rejected.status).toBe(503);
    expect(rejected.headers['retry-after']).toBe('1');

    expect(echoed(await slow).name).toBe('replica2');
    expect(await inFlight(replica2.address)).toBe(0);
  });

  it('caddy forgets unparked in-flight counter', async () => {
    // Documents the Caddy behaviour parking works around: the route change goes straight
    // through the admin API, without CaddyRouting's parking.
    const pathRoute = idPath(`luma-${INSTANCE_ID}.path.limited`, 'handle', 1, 'upstreams');
    // Unparks replica2, which removeRoute('extra') parked.
    await routing.setDraining([replica2.address]);
    await routing.setDraining([]);
    const slow = send('/limited/slow?ms=1500');
    await waitFor('one request in flight', async () => ((await inFlight(replica2.address)) === 1 ? true : undefined), 2_000, 50);

    await admin.patch(pathRoute, [{ dial: replica1.address, max_requests: 1 }]);

    expect(await inFlight(replica2.address)).toBeUndefined();
    expect(echoed(await slow).name).toBe('replica2');
    await routing.ensureServer(routes());
  });

  it('parking keeps in-flight counter', async () => {
    const slow = send('/web/slow?ms=2000');
    const slower = send('/web/slow?ms=3000');
    await waitFor('two requests in flight', async () => ((await inFlight(replica1.address)) === 2 ? true : undefined), 2_000, 50);

    await routing.setRoute({ service: 'web', hosts: ['web.test'], upstreams: [replica2.address] });
    expect(await inFlight(replica1.address)).toBe(2);
    expect(echoed(await send('/web/x')).name).toBe('replica2');

    await routing.setDraining([replica1.address]);
    expect(echoed(await slow).name).toBe('replica1');
    expect(await inFlight(replica1.address)).toBe(1);
    expect(echoed(await slower).name).toBe('replica1');
    expect(await inFlight(replica1.address)).toBe(0);

    await routing.setDraining([]);
    expect(await inFlight(replica1.address)).toBeUndefined();
  });
});

describe('Caddy access log', () => {
  it('receiver gets original uri', async () => {
    accessLog.length = 0;
    await send('/web/a%2Fb//c?q=1', { Host: 'Log.Test:8080' });

    const entry = await waitFor('access log entry', () => accessLog.find((item) => item.uri === '/web/a%2Fb//c?q=1'), 2_000, 20);
    expect(entry.host).toBe('log.test');
    expect(entry.status).toBe(200);
    expect(Math.abs(entry.at.getTime() - Date.now())).toBeLessThan(5_000);
    expect(entry.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('receiver restart resumes entries', async () => {
    await receiver.stop();
    await send('/web/while-stopped');
    await receiver.start();
    accessLog.length = 0;

    for (let attempt = 0; attempt < 3; attempt++) await send(`/web/after-restart-${attempt}`);

    await waitFor('entries after restart', () => (accessLog.length >= 3 ? true : undefined), 2_000, 20);
    expect(accessLog.map((entry) => entry.uri)).not.toContain('/web/while-stopped');
  });
});

describe('Caddy restart', () => {
  it('ensureServer after empty restart', async () => {
    await caddy.restart({ keepConfig: false });
    expect(await routing.serverPresent()).toBe(false);

    await routing.ensureServer(routes());

    expect(echoed(await send('/web/')).name).toBe('replica1');
  });

  it('setRoute reinstalls missing server', async () => {
    await caddy.restart({ keepConfig: false });

    await routing.setRoute({ service: 'web', hosts: ['web.test'], upstreams: [replica2.address] });

    expect(echoed(await send('/web/')).name).toBe('replica2');
    expect(echoed(await send('/sleepy/')).name).toBe('wake');
  });

  it('restart keeping config', async () => {
    await caddy.restart({ keepConfig: true });

    expect(await routing.serverPresent()).toBe(true);
    expect(echoed(await send('/web/')).name).toBe('replica2');
  });
});

describe('CaddyAdmin', () => {
  it('detects 2.6 features', async () => {
    const features = await admin.detectFeatures();

    expect(features.release).toBe('before-2.8');
    expect(features.etag).toBe(true);
    expect(features.goVersion).toMatch(/^go1\.\d+/);
  });

  it('if-match mismatch rejected', async () => {
    const server = { listen: [`127.0.0.1:${await freePort()}`], routes: [{ handle: [{ handler: 'static_response', body: 'x' }] }] };
    await admin.put(configPath('apps', 'http', 'servers', 'scratch'), server);
    const path = configPath('apps', 'http', 'servers', 'scratch', 'routes', 0, 'handle', 0, 'body');
    const { etag } = await admin.read(path);
    expect(etag).toBeDefined();

    await admin.patch(path, 'changed', { ifMatch: etag });
    const error = await caught(admin.patch(path, 'again', { ifMatch: etag }));

    expect(error.code).toBe('caddy_rejected');
    expect(error.details.status).toBe(412);
  });

  it.each([
    { name: 'missing key', path: configPath('apps', 'http', 'servers', 'absent', 'listen'), status: 500 },
    { name: 'unknown id', path: idPath('absent'), status: 404 },
  ])('rejects patch of $name', async ({ path, status }) => {
    const error = await caught(admin.patch(path, ['x']));

    expect(error.code).toBe('caddy_rejected');
    expect(error.details.status).toBe(status);
  });

  it('enforce_origin accepts client', async () => {
    await admin.patch(configPath('admin'), { listen: new URL(caddy.adminUrl).host, enforce_origin: true, config: { persist: false } });
    try {
      expect(await admin.get(configPath('admin', 'enforce_origin'))).toBe(true);
      const bare = await fetch(`${caddy.adminUrl}/config/`);
      expect(bare.status).toBe(403);
    } finally {
      await admin.patch(configPath('admin', 'enforce_origin'), false);
    }
  });

  it('reads survive back-to-back reloads', async () => {
    let writing = true;
    const reads = (async () => {
      let count = 0;
      while (writing && count < 500) {
        await routing.readUpstreams();
        count++;
      }
      return count;
    })();
    for (let write = 0; write < 20; write++) await routing.setDraining(write % 2 === 0 ? [replica1.address] : []);
    writing = false;

    expect(await reads).toBeGreaterThan(0);
  });

  it('unreachable admin is unavailable', async () => {
    const closed = new CaddyAdmin({ address: `http://127.0.0.1:${await freePort()}`, logger: silentLogger(), timeoutMs: 1_000 });

    const error = await caught(closed.get('/config/'));

    expect(error.code).toBe('caddy_unavailable');
    await closed.close();
  });

  it('unix socket admin works', async () => {
    const socketCaddy = await startCaddy({ adminSocket: true });
    const socketAdmin = new CaddyAdmin({ address: socketCaddy.adminUrl, logger: silentLogger() });
    try {
      await socketAdmin.put(configPath('apps', 'http', 'servers', 'x'), { listen: [`127.0.0.1:${await freePort()}`] });
      expect(await socketAdmin.readUpstreams()).toEqual([]);
      expect((await socketAdmin.detectFeatures()).etag).toBe(true);
    } finally {
      await socketAdmin.close();
      await socketCaddy.stop();
    }
  });
});

describe('reload during requests', () => {
  it('reload closes upgraded connections', async () => {
    // Caddy 2.6.2 behaviour that only stream_close_delay (Caddy 2.7+) changes.
    const upgraded = await new Promise<Socket>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/web/socket', headers: { Connection: 'Upgrade', Upgrade: 'test' }, agent: false });
      req.on('upgrade', (_res, socket) => resolve(socket));
      req.on('error', reject);
      req.end();
    });
    const closed = new Promise<void>((resolve) => upgraded.once('close', () => resolve()));
    upgraded.resume();

    await routing.setRoute({ service: 'sleepy', hosts: ['sleepy-a.test'], upstreams: [] });

    const outcome = await Promise.race([closed.then(() => 'closed'), sleep(2_000).then(() => 'open')]);
    upgraded.destroy();
    expect(outcome).toBe('closed');
  });

  it('stream_close_delay rejected by caddy 2.6', async () => {
    const delayed = new CaddyRouting({
      admin,
      logger: silentLogger(),
      instanceId: 'delayed',
      port: await freePort(),
      listenHost: '127.0.0.1',
      apiAddress: api.address,
      wakeAddress: wake.address,
      streamCloseDelayMs: 60_000,
    });

    const error = await caught(delayed.ensureServer([]));

    expect(error.code).toBe('caddy_rejected');
    expect(String(error.details.caddyError)).toContain('stream_close_delay');
  });

  it('in-flight request survives reload', async () => {
    const slow = send('/web/slow?ms=1500');
    await sleep(300);

    await routing.setRoute({ service: 'sleepy', hosts: ['sleepy-b.test'], upstreams: [] });
    expect(echoed(await send('/x', { Host: 'sleepy-b.test' })).name).toBe('wake');

    expect(echoed(await slow).name).toBe('replica2');
  });
});
