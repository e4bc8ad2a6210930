import { createHash, randomBytes } from 'node:crypto';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type RequestListener,
  type Server,
} from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LumaError, type ErrorCode } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import type { ServiceSpec } from '../../src/model.js';
import { WakeHandler, type WakeHandlerOptions } from '../../src/wake/handler.js';
import { openTunnel, type TunnelOutcome } from '../../src/wake/tunnel.js';
import type { ReplicaLease, ReplicaProvider } from '../../src/wake/types.js';

// Every server, client and replica here is on 127.0.0.1; nothing needs Docker or Caddy.

const MiB = 1024 * 1024;

function spec(name: string, hosts: string[] = []): ServiceSpec {
  const now = new Date().toISOString();
  return {
    name,
    image: `127.0.0.1:1/${name}:latest`,
    port: 8080,
    minReplicas: 0,
    maxReplicas: 1,
    env: {},
    hosts,
    createdAt: now,
    updatedAt: now,
    generation: 1,
  };
}

type LeaseSource = (service: string, signal: AbortSignal, call: number) => Promise<string>;

/** A ReplicaProvider whose `acquire` resolves with a lease on the address `source` returns. */
class FakeProvider implements ReplicaProvider {
  acquireCalls = 0;
  inFlight = 0;
  maxInFlight = 0;
  released = 0;
  doubleReleases = 0;
  readonly signals: AbortSignal[] = [];
  private readonly specs = new Map<string, ServiceSpec>();

  constructor(
    public source: LeaseSource,
    specs: ServiceSpec[] = [spec('api', ['app.example.test'])],
  ) {
    for (const item of specs) this.specs.set(item.name, item);
  }

  async acquire(service: string, signal: AbortSignal): Promise<ReplicaLease> {
    this.acquireCalls += 1;
    const call = this.acquireCalls;
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.signals.push(signal);
    try {
      const address = await this.source(service, signal, call);
      return this.lease(address, call);
    } finally {
      this.inFlight -= 1;
    }
  }

  serviceForHost(host: string): ServiceSpec | undefined {
    return [...this.specs.values()].find((item) => item.hosts.includes(host));
  }

  service(name: string): ServiceSpec | undefined {
    return this.specs.get(name);
  }

  private lease(address: string, call: number): ReplicaLease {
    let released = false;
    return {
      replicaId: `replica-${call}`,
      address,
      release: () => {
        if (released) this.doubleReleases += 1;
        else this.released += 1;
        released = true;
      },
    };
  }
}

/** Resolves with `address`, or rejects with the signal's reason once it aborts. */
function leaseAfter(address: string, delayMs: number): LeaseSource {
  return (_service, signal) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => resolve(address), delayMs);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(signal.reason);
      });
    });
}

/** Never resolves; rejects with the signal's reason once it aborts. */
const leaseNever: LeaseSource = (_service, signal) =>
  new Promise<string>((_resolve, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason));
  });

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

interface Upstream {
  address: string;
  hits: number;
  server: Server;
}

/** Starts a replica stand-in on 127.0.0.1; `hits` counts the requests it received. */
async function startUpstream(
  listener: RequestListener,
  onUpgrade?: (req: IncomingMessage, socket: Duplex, head: Buffer) => void,
): Promise<Upstream> {
  const upstream: Upstream = { address: '', hits: 0, server: createServer() };
  const upgraded = new Set<Duplex>();
  upstream.server.on('request', (req, res) => {
    upstream.hits += 1;
    req.on('error', () => undefined);
    listener(req, res);
  });
  if (onUpgrade !== undefined) {
    upstream.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      upstream.hits += 1;
      upgraded.add(socket);
      onUpgrade(req, socket, head);
    });
  }
  await new Promise<void>((resolve) => upstream.server.listen(0, '127.0.0.1', resolve));
  upstream.address = `127.0.0.1:${(upstream.server.address() as AddressInfo).port}`;
  cleanups.push(async () => {
    upstream.server.closeAllConnections();
    for (const socket of upgraded) socket.destroy();
    await new Promise<void>((resolve) => upstream.server.close(() => resolve()));
  });
  return upstream;
}

/** Returns an address on 127.0.0.1 where nothing listens (connections are refused). */
async function refusedAddress(): Promise<string> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

async function startHandler(
  provider: ReplicaProvider,
  overrides: Partial<WakeHandlerOptions> = {},
): Promise<{ handler: WakeHandler; port: number }> {
  const handler = new WakeHandler({
    logger: silentLogger(),
    provider,
    maxQueuedPerService: 100,
    maxQueuedTotal: 200,
    maxBodyBytes: 8 * MiB,
    ...overrides,
  });
  const { port } = await handler.listen('127.0.0.1:0');
  cleanups.push(() => handler.close());
  return { handler, port };
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface SendOptions {
  method?: string;
  path?: string;
  headers?: OutgoingHttpHeaders;
  /** Sent in one write, or chunk by chunk when an array (chunked unless Content-Length is set). */
  body?: Buffer | Buffer[];
  timeoutMs?: number;
}

/** Sends one request with node:http on a fresh connection and collects the reply. */
function send(port: number, options: SendOptions = {}): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: options.method ?? 'GET',
      path: options.path ?? '/',
      headers: { 'x-forwarded-prefix': '/api', ...options.headers },
      agent: false,
    });
    const timer = setTimeout(() => req.destroy(new Error('request timed out')), options.timeoutMs ?? 8_000);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
    });

    const body = options.body;
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else void writeChunks(req, body);
  });
}

async function writeChunks(req: ReturnType<typeof httpRequest>, chunks: Buffer[]): Promise<void> {
  for (const chunk of chunks) {
    if (req.destroyed) return;
    req.write(chunk);
    await sleep(2);
  }
  req.end();
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A replica stand-in that responds with the SHA-256 and length of the request body it read. */
const hashBody: RequestListener = (req, res) => {
  const hash = createHash('sha256');
  let length = 0;
  req.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    length += chunk.length;
  });
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        hash: hash.digest('hex'),
        length,
        transferEncoding: req.headers['transfer-encoding'] ?? null,
        expect: req.headers.expect ?? null,
      }),
    );
  });
};

describe('wake handler replay', () => {
  it('GET replay keeps target and headers', async () => {
    let seen: { url: string; rawHeaders: string[] } | undefined;
    const upstream = await startUpstream((req, res) => {
      seen = { url: req.url ?? '', rawHeaders: req.rawHeaders };
      res.end('ok');
    });
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider);

    const path = '/a%2Fb/%E2%9C%93/x;y?q=%20z&q=2&empty=&%3D=%26';
    const reply = await send(port, {
      path,
      headers: {
        host: 'api.example.test',
        'x-forwarded-for': '203.0.113.7',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'example.test',
        connection: 'keep-alive, x-hop',
        'x-hop': 'dropped',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'x-kept': 'kept',
      },
    });

    expect(reply.status).toBe(200);
    expect(reply.body.toString()).toBe('ok');
    expect(seen?.url).toBe(path);
    const names = seen!.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    const value = (name: string): string | undefined => seen!.rawHeaders[seen!.rawHeaders.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === name) + 1];
    expect(value('host')).toBe('api.example.test');
    expect(value('x-forwarded-for')).toBe('203.0.113.7');
    expect(value('x-forwarded-proto')).toBe('https');
    expect(value('x-forwarded-host')).toBe('example.test');
    expect(value('x-forwarded-prefix')).toBe('/api');
    expect(value('x-kept')).toBe('kept');
    expect(names.filter((name) => name === 'x-forwarded-for')).toHaveLength(1);
    expect(names).not.toContain('x-hop');
    expect(names).not.toContain('keep-alive');
    expect(names).not.toContain('te');
    expect(provider.released).toBe(1);
    expect(provider.doubleReleases).toBe(0);
  });

  it.each([
    { name: 'prefix of known service', headers: { 'x-forwarded-prefix': '/api' }, status: 200, text: 'ok' },
    { name: 'host with port', headers: { 'x-forwarded-prefix': '', host: 'APP.example.test:8443' }, status: 200, text: 'ok' },
    { name: 'unknown prefix', headers: { 'x-forwarded-prefix': '/nope' }, status: 404, text: 'service "nope" not found' },
    { name: 'unknown host', headers: { 'x-forwarded-prefix': '', host: 'other.test' }, status: 404, text: 'no service for host "other.test"' },
  ])('service resolution: $name', async ({ headers, status, text }) => {
    const upstream = await startUpstream((_req, res) => res.end('ok'));
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider);

    const reply = await send(port, { headers });

    expect(reply.status).toBe(status);
    expect(reply.body.toString()).toContain(text);
  });

  it('POST 5 MiB body arrives once intact', async () => {
    const upstream = await startUpstream(hashBody);
    const provider = new FakeProvider(leaseAfter(upstream.address, 50));
    const { port } = await startHandler(provider);
    const body = randomBytes(5 * MiB);

    const reply = await send(port, { method: 'POST', path: '/upload', body, headers: { 'content-length': body.length } });

    expect(reply.status).toBe(200);
    const result = JSON.parse(reply.body.toString()) as { hash: string; length: number };
    expect(result.length).toBe(body.length);
    expect(result.hash).toBe(sha256(body));
    expect(upstream.hits).toBe(1);
    expect(provider.released).toBe(1);
  });

  it('chunked upload stays chunked and intact', async () => {
    const upstream = await startUpstream(hashBody);
    const provider = new FakeProvider(leaseAfter(upstream.address, 50));
    const { port } = await startHandler(provider);
    const chunks = Array.from({ length: 16 }, () => randomBytes(64 * 1024));

    const reply = await send(port, { method: 'PUT', path: '/upload', body: chunks });

    expect(reply.status).toBe(200);
    const result = JSON.parse(reply.body.toString()) as { hash: string; length: number; transferEncoding: string };
    expect(result.transferEncoding).toBe('chunked');
    expect(result.length).toBe(16 * 64 * 1024);
    expect(result.hash).toBe(sha256(Buffer.concat(chunks)));
    expect(upstream.hits).toBe(1);
  });

  it('100-continue waits for the replica', async () => {
    const upstream = await startUpstream(hashBody);
    const provider = new FakeProvider(leaseAfter(upstream.address, 300));
    const { port } = await startHandler(provider);
    const body = randomBytes(256 * 1024);
    const startedAt = Date.now();

    const result = await new Promise<{ continueAfterMs: number; status: number; text: string }>((resolve, reject) => {
      let continueAfterMs = -1;
      const req = httpRequest({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/upload',
        agent: false,
        headers: { 'x-forwarded-prefix': '/api', expect: '100-continue', 'content-length': body.length },
      });
      const timer = setTimeout(() => req.destroy(new Error('request timed out')), 5_000);
      req.on('continue', () => {
        continueAfterMs = Date.now() - startedAt;
        req.end(body);
      });
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ continueAfterMs, status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() });
        });
      });
      req.flushHeaders();
    });

    expect(result.continueAfterMs).toBeGreaterThanOrEqual(280);
    expect(result.status).toBe(200);
    const echoed = JSON.parse(result.text) as { hash: string; expect: string | null };
    expect(echoed.hash).toBe(sha256(body));
    expect(echoed.expect).toBeNull();
  });

  it('100-continue with oversized body gets 413', async () => {
    const provider = new FakeProvider(leaseNever);
    const { port } = await startHandler(provider, { maxBodyBytes: 1024 });

    const reply = await send(port, {
      method: 'POST',
      headers: { expect: '100-continue', 'content-length': 4096 },
    });

    expect(reply.status).toBe(413);
    expect(provider.acquireCalls).toBe(0);
  });

  it('SSE first event arrives before stream ends', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: one\n\n');
      setTimeout(() => res.end('data: two\n\n'), 600);
    });
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider);
    const startedAt = Date.now();

    const events = await new Promise<Array<{ atMs: number; text: string }>>((resolve, reject) => {
      const received: Array<{ atMs: number; text: string }> = [];
      const req = httpRequest({ host: '127.0.0.1', port, path: '/events', agent: false, headers: { 'x-forwarded-prefix': '/api' } });
      req.on('error', reject);
      req.on('response', (res) => {
        res.on('data', (chunk: Buffer) => received.push({ atMs: Date.now() - startedAt, text: chunk.toString() }));
        res.on('end', () => {
          received.push({ atMs: Date.now() - startedAt, text: '<end>' });
          resolve(received);
        });
      });
      req.end();
    });

    expect(events[0]!.text).toBe('data: one\n\n');
    const endAt = events[events.length - 1]!.atMs;
    expect(endAt - events[0]!.atMs).toBeGreaterThanOrEqual(400);
    expect(events.map((event) => event.text).join('')).toBe('data: one\n\ndata: two\n\n<end>');
    expect(provider.released).toBe(1);
  });

  it('slow replica holds back request body', async () => {
    // The replica reads nothing, so socket buffers and stream high-water marks bound what the client
    // can write. A handler that buffered the whole body would take all 64 MiB at once.
    const upstream = await startUpstream(() => undefined);
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider, { maxBodyBytes: 128 * MiB, closeTimeoutMs: 500 });
    const chunk = Buffer.alloc(MiB, 7);

    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      agent: false,
      headers: { 'x-forwarded-prefix': '/api', 'content-length': 64 * MiB },
    });
    req.on('error', () => undefined);
    cleanups.push(async () => {
      req.destroy();
    });
    let written = 0;
    const deadline = Date.now() + 1_000;
    while (written < 64 * MiB && Date.now() < deadline) {
      written += chunk.length;
      if (!req.write(chunk)) await Promise.race([new Promise((resolve) => req.once('drain', resolve)), sleep(100)]);
    }

    expect(upstream.hits).toBe(1);
    expect(written).toBeLessThan(32 * MiB);
  });

  it('slow client holds back response body', async () => {
    let produced = 0;
    const upstream = await startUpstream((_req, res) => {
      const chunk = Buffer.alloc(MiB, 7);
      const deadline = Date.now() + 1_000;
      const pump = (): void => {
        while (produced < 64 * MiB && Date.now() < deadline) {
          produced += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider);

    const req = httpRequest({ host: '127.0.0.1', port, path: '/big', agent: false, headers: { 'x-forwarded-prefix': '/api' } });
    req.on('error', () => undefined);
    cleanups.push(async () => {
      req.destroy();
    });
    req.on('response', (res) => res.pause());
    req.end();
    await sleep(1_000);

    expect(upstream.hits).toBe(1);
    expect(produced).toBeGreaterThan(0);
    expect(produced).toBeLessThan(32 * MiB);
  });

  it('early response closes unfinished upload', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(401, { 'content-type': 'text/plain' });
      res.end('login first');
    });
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider);

    const result = await new Promise<{ status: number; connection: string | undefined; text: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, method: 'PUT', agent: false, headers: { 'x-forwarded-prefix': '/api' } });
      const timer = setTimeout(() => req.destroy(new Error('request timed out')), 5_000);
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, text: Buffer.concat(chunks).toString() });
          req.destroy();
        });
      });
      // The body never ends, so only the early response can finish this request.
      req.write(Buffer.alloc(1024, 1));
    });

    expect(result.status).toBe(401);
    expect(result.text).toBe('login first');
    expect(result.connection).toBe('close');
    await waitFor(() => provider.released === 1, 'release');
  });

  it('302 and multiple Set-Cookie pass through', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly']);
      res.writeHead(302, { location: '/login?next=%2Fx' });
      res.end();
    });
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider);

    const reply = await send(port, { path: '/private' });

    expect(reply.status).toBe(302);
    expect(reply.headers.location).toBe('/login?next=%2Fx');
    expect(reply.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; HttpOnly']);
  });
});

describe('wake handler gate', () => {
  it('50 concurrent held requests all answered', async () => {
    const upstream = await startUpstream((req, res) => res.end(req.url));
    let openGate: (() => void) | undefined;
    const gateOpened = new Promise<void>((resolve) => (openGate = resolve));
    const provider = new FakeProvider(async () => {
      await gateOpened;
      return upstream.address;
    });
    const { handler, port } = await startHandler(provider);

    const replies = Promise.all(Array.from({ length: 50 }, (_, i) => send(port, { path: `/r/${i}` })));
    await waitFor(() => provider.acquireCalls === 50, '50 acquire calls');
    expect(provider.maxInFlight).toBe(50);
    expect(handler.waiting('api')).toBe(50);
    setTimeout(() => openGate!(), 300);
    const results = await replies;

    expect(results.map((reply) => reply.status)).toEqual(Array(50).fill(200));
    expect(results.map((reply) => reply.body.toString())).toEqual(Array.from({ length: 50 }, (_, i) => `/r/${i}`));
    await waitFor(() => provider.released === 50, '50 releases');
    expect(provider.doubleReleases).toBe(0);
    expect(handler.waiting('api')).toBe(0);
    expect(handler.stats().replayed).toBe(50);
  });

  it.each([
    { bound: 'per service', maxQueuedPerService: 2, maxQueuedTotal: 10 },
    { bound: 'total', maxQueuedPerService: 10, maxQueuedTotal: 2 },
  ])('queue full $bound gives 503', async ({ maxQueuedPerService, maxQueuedTotal }) => {
    const provider = new FakeProvider(leaseNever, [spec('api'), spec('web')]);
    const { handler, port } = await startHandler(provider, { maxQueuedPerService, maxQueuedTotal });

    const held = [
      send(port).catch(() => undefined),
      send(port, { headers: { 'x-forwarded-prefix': maxQueuedTotal === 2 ? '/web' : '/api' } }).catch(() => undefined),
    ];
    await waitFor(() => provider.acquireCalls === 2, '2 acquire calls');
    const reply = await send(port);

    expect(reply.status).toBe(503);
    expect(reply.headers['retry-after']).toBe('5');
    expect(reply.body.toString()).toContain('service "api"');
    expect(provider.acquireCalls).toBe(2);
    expect(handler.stats().rejectedQueueFull).toBe(1);
    await handler.close();
    await Promise.all(held);
  });

  it('client abort frees slot and signal', async () => {
    const provider = new FakeProvider(leaseNever);
    const { handler, port } = await startHandler(provider);

    const req = httpRequest({ host: '127.0.0.1', port, path: '/', agent: false, headers: { 'x-forwarded-prefix': '/api' } });
    req.on('error', () => undefined);
    req.end();
    await waitFor(() => provider.acquireCalls === 1, 'acquire call');
    expect(handler.waiting('api')).toBe(1);
    req.destroy();

    await waitFor(() => provider.signals[0]!.aborted, 'signal abort');
    await waitFor(() => handler.waiting('api') === 0, 'slot freed');
    expect(handler.stats().waiting).toBe(0);
  });

  it.each<{ code: ErrorCode; status: number }>([
    { code: 'wake_queue_full', status: 503 },
    { code: 'wake_backoff', status: 503 },
    { code: 'shutting_down', status: 503 },
    { code: 'docker_unavailable', status: 503 },
    { code: 'image_not_found', status: 502 },
    { code: 'image_pull_failed', status: 502 },
    { code: 'replica_exited', status: 502 },
    { code: 'startup_timeout', status: 504 },
    { code: 'service_not_found', status: 404 },
    { code: 'service_deleted', status: 404 },
    { code: 'caddy_unavailable', status: 502 },
  ])('acquire error $code gives $status', async ({ code, status }) => {
    const provider = new FakeProvider(() => Promise.reject(new LumaError(code, `reason for ${code}`)));
    const { port } = await startHandler(provider);

    const reply = await send(port);

    expect(reply.status).toBe(status);
    expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8');
    const text = reply.body.toString();
    expect(text.split('\n')).toHaveLength(2);
    expect(text).toContain('service "api"');
    if (status === 404) {
      expect(reply.headers['retry-after']).toBeUndefined();
    } else {
      expect(reply.headers['retry-after']).toBe('5');
      expect(text).toContain(`reason for ${code}`);
      expect(text).toContain('(retry after 5s)');
    }
  });

  it('acquire error formats body and retry', async () => {
    const cases = [
      {
        error: new LumaError('image_not_found', 'image "x" not found'),
        body: 'service "api" failed to start: image "x" not found (retry after 5s)\n',
        retryAfter: '5',
      },
      {
        error: new LumaError('wake_backoff', 'service "api" failed to start recently: boom', { details: { retryAfterMs: 11_200 } }),
        body: 'service "api" failed to start recently: boom (retry after 12s)\n',
        retryAfter: '12',
      },
      {
        error: new Error('secret internal detail'),
        body: 'service "api" failed to start: internal error (retry after 5s)\n',
        retryAfter: '5',
      },
    ];
    for (const { error, body, retryAfter } of cases) {
      const provider = new FakeProvider(() => Promise.reject(error));
      const { port } = await startHandler(provider);

      const reply = await send(port);

      expect(reply.body.toString()).toBe(body);
      expect(reply.headers['retry-after']).toBe(retryAfter);
    }
  });
});

describe('wake handler limits and failures', () => {
  it('Content-Length over limit gives 413', async () => {
    const provider = new FakeProvider(leaseNever);
    const { port } = await startHandler(provider, { maxBodyBytes: 1 * MiB });

    const reply = await send(port, { method: 'POST', body: Buffer.alloc(1 * MiB + 1) });

    expect(reply.status).toBe(413);
    expect(reply.body.toString()).toContain('exceeds the limit of 1048576 bytes');
    expect(provider.acquireCalls).toBe(0);
  });

  it('chunked body over limit gives 413', async () => {
    const upstream = await startUpstream(hashBody);
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider, { maxBodyBytes: 1 * MiB });
    const chunks = Array.from({ length: 40 }, () => Buffer.alloc(64 * 1024, 1));

    const reply = await send(port, { method: 'POST', body: chunks }).catch((error: Error) => error);

    // The client may see the reset of a body it is still sending instead of the reply.
    if (reply instanceof Error) expect(reply.message).toMatch(/EPIPE|ECONNRESET|socket hang up/);
    else expect(reply.status).toBe(413);
    await waitFor(() => provider.released === 1, 'release');
  });

  it('connect refused retries exactly once', async () => {
    const upstream = await startUpstream(hashBody);
    const refused = await refusedAddress();
    const provider = new FakeProvider(async (_service, _signal, call) => (call === 1 ? refused : upstream.address));
    const { handler, port } = await startHandler(provider);
    const body = randomBytes(100 * 1024);

    const reply = await send(port, { method: 'POST', body, headers: { 'content-length': body.length } });

    expect(reply.status).toBe(200);
    expect((JSON.parse(reply.body.toString()) as { hash: string }).hash).toBe(sha256(body));
    expect(provider.acquireCalls).toBe(2);
    expect(provider.released).toBe(2);
    expect(upstream.hits).toBe(1);
    expect(handler.stats().retried).toBe(1);
  });

  it('connect refused twice gives 502', async () => {
    const refused = await refusedAddress();
    const provider = new FakeProvider(async () => refused);
    const { port } = await startHandler(provider);

    const reply = await send(port);

    expect(reply.status).toBe(502);
    expect(reply.body.toString()).toContain('could not connect to a replica');
    expect(provider.acquireCalls).toBe(2);
    expect(provider.released).toBe(2);
  });

  it('reset after request sent gives 502 without retry', async () => {
    const upstream = await startUpstream((req) => {
      req.resume();
      req.on('end', () => req.socket.destroy());
    });
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider);

    const reply = await send(port, { method: 'POST', body: Buffer.from('charge the card once') });

    expect(reply.status).toBe(502);
    expect(reply.body.toString()).toContain('the replica did not send a valid response');
    expect(upstream.hits).toBe(1);
    expect(provider.acquireCalls).toBe(1);
    expect(provider.released).toBe(1);
  });

  it('reset mid-response cuts client once', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { port } = await startHandler(provider);

    const reply = await send(port, { method: 'POST', body: Buffer.from('x') }).catch((error: Error) => error);

    expect(reply).toBeInstanceOf(Error);
    expect(upstream.hits).toBe(1);
    expect(provider.acquireCalls).toBe(1);
    await waitFor(() => provider.released === 1, 'release');
  });
});

/** Returns the Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 section 4.2.2). */
function websocketAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

/** Encodes a final text frame of up to 125 bytes, masked as a client must. */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

/** Decodes a frame of up to 125 bytes, masked or not; returns undefined until it is complete. */
function decodeFrame(data: Buffer): { text: string; length: number } | undefined {
  if (data.length < 2) return undefined;
  const masked = (data[1]! & 0x80) !== 0;
  const payloadLength = data[1]! & 0x7f;
  const headerLength = masked ? 6 : 2;
  if (data.length < headerLength + payloadLength) return undefined;
  const payload = data.subarray(headerLength, headerLength + payloadLength);
  const mask = masked ? data.subarray(2, 6) : undefined;
  const text = Buffer.from(payload.map((byte, i) => (mask === undefined ? byte : byte ^ mask[i % 4]!))).toString();
  return { text, length: headerLength + payloadLength };
}

/** Accepts a WebSocket upgrade on a node:http server and echoes text frames of up to 125 bytes. */
function echoWebSocket(req: IncomingMessage, socket: Duplex): void {
  const key = req.headers['sec-websocket-key'] ?? '';
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${websocketAccept(key)}\r\n\r\n`,
  );
  let buffered = Buffer.alloc(0);
  socket.on('error', () => undefined);
  socket.on('end', () => socket.end());
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    const frame = decodeFrame(buffered);
    if (frame === undefined) return;
    buffered = buffered.subarray(frame.length);
    const payload = Buffer.from(frame.text);
    socket.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
  });
}

/** Reads from `socket` until `done` returns a value or the time runs out. */
function readUntil<T>(socket: Socket, done: (data: Buffer) => T | undefined, timeoutMs = 3_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`no complete answer within ${timeoutMs} ms: ${data.toString()}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      data = Buffer.concat([data, chunk]);
      const result = done(data);
      if (result !== undefined) finish(undefined, result);
    };
    const finish = (error?: Error, result?: T): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      if (error !== undefined) reject(error);
      else resolve(result as T);
    };
    socket.on('data', onData);
  });
}

describe('wake handler upgrades', () => {
  it('WebSocket upgrade replayed and echoes', async () => {
    const upstream = await startUpstream((_req, res) => res.end(), echoWebSocket);
    const provider = new FakeProvider(leaseAfter(upstream.address, 100));
    const { handler, port } = await startHandler(provider);
    const key = randomBytes(16).toString('base64');

    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    cleanups.push(async () => {
      socket.destroy();
    });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const handshake = readUntil(socket, (data) => {
      const end = data.indexOf('\r\n\r\n');
      return end === -1 ? undefined : data.subarray(0, end).toString('latin1');
    });
    socket.write(
      'GET /chat?room=1 HTTP/1.1\r\nHost: app.example.test\r\nX-Forwarded-Prefix: /api\r\n' +
        'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
        `Sec-WebSocket-Key: ${key}\r\n\r\n`,
    );

    const head = await handshake;
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols');
    expect(head).toContain(`Sec-WebSocket-Accept: ${websocketAccept(key)}`);

    const echoed = readUntil(socket, (data) => decodeFrame(data)?.text);
    socket.write(maskedTextFrame('hello through the wake handler'));
    expect(await echoed).toBe('hello through the wake handler');
    expect(handler.stats().tunnels).toBe(1);
    expect(provider.released).toBe(0);

    socket.end();
    await waitFor(() => provider.released === 1, 'release after close');
    await waitFor(() => handler.stats().tunnels === 0, 'tunnel closed');
    expect(upstream.hits).toBe(1);
  });

  it('upgrade with failed wake gets raw 502', async () => {
    const provider = new FakeProvider(() => Promise.reject(new LumaError('image_not_found', 'image "x" not found')));
    const { port } = await startHandler(provider);

    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    cleanups.push(async () => {
      socket.destroy();
    });
    const answer = readUntil(socket, (data) => (data.includes('\n', data.indexOf('\r\n\r\n') + 4) ? data.toString() : undefined));
    socket.write('GET /ws HTTP/1.1\r\nHost: a\r\nX-Forwarded-Prefix: /api\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');

    const text = await answer;
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 502 Bad Gateway');
    expect(text).toContain('Retry-After: 5');
    expect(text).toContain('service "api" failed to start: image "x" not found (retry after 5s)');
  });
  it('half-closed tunnel ends after grace', async () => {
    // The replica accepts the upgrade and then ignores the client's FIN.
    const upstream = await startUpstream(
      (_req, res) => res.end(),
      (_req, socket) => {
        socket.on('error', () => undefined);
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n');
      },
    );
    let released = 0;
    const outcomes: TunnelOutcome[] = [];
    const front = createServer();
    front.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => undefined);
      const lease = { replicaId: 'replica-1', address: upstream.address, release: () => (released += 1) };
      void openTunnel({ req, socket, head, lease, signal: new AbortController().signal, halfCloseGraceMs: 200 }).then((outcome) =>
        outcomes.push(outcome),
      );
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      front.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
    });

    const socket = connect((front.address() as AddressInfo).port, '127.0.0.1');
    socket.on('error', () => undefined);
    cleanups.push(async () => {
      socket.destroy();
    });
    const answer = readUntil(socket, (data) => (data.includes('\r\n\r\n') ? data.toString('latin1') : undefined));
    socket.write('GET /t HTTP/1.1\r\nHost: a\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n');
    expect((await answer).split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols');
    socket.end();
    const endedAt = Date.now();

    await waitFor(() => released === 1, 'release after grace');
    expect(Date.now() - endedAt).toBeGreaterThanOrEqual(150);
    expect(outcomes.map((outcome) => outcome.kind)).toEqual(['opened']);
  });
});

describe('wake handler close', () => {
  it('close rejects waiting, drains replays', async () => {
    const upstream = await startUpstream((_req, res) => {
      setTimeout(() => res.end('slow'), 300);
    });
    const provider = new FakeProvider(async (_service, signal, call) =>
      call === 1 ? upstream.address : leaseNever('api', signal, call),
    );
    const { handler, port } = await startHandler(provider);

    const replaying = send(port, { path: '/slow' });
    await waitFor(() => upstream.hits === 1, 'replay started');
    const waiting = send(port, { path: '/waiting' });
    await waitFor(() => provider.acquireCalls === 2, 'second acquire');

    await handler.close();

    const [slow, refused] = await Promise.all([replaying, waiting]);
    expect(slow.status).toBe(200);
    expect(slow.body.toString()).toBe('slow');
    expect(refused.status).toBe(503);
    expect(refused.body.toString()).toContain('luma is shutting down');
    expect(provider.released).toBe(1);
  });

  it('listen on busy port rejects', async () => {
    const { port } = await startHandler(new FakeProvider(leaseNever));
    const second = new WakeHandler({
      logger: silentLogger(),
      provider: new FakeProvider(leaseNever),
      maxQueuedPerService: 1,
      maxQueuedTotal: 1,
      maxBodyBytes: 1,
    });
    cleanups.push(() => second.close());

    const error = await second.listen(`127.0.0.1:${port}`).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(LumaError);
    expect((error as LumaError).code).toBe('invalid_setting');
    expect((error as LumaError).message).toContain('EADDRINUSE');
  });

  it('close before listen resolves', async () => {
    const handler = new WakeHandler({
      logger: silentLogger(),
      provider: new FakeProvider(leaseNever),
      maxQueuedPerService: 1,
      maxQueuedTotal: 1,
      maxBodyBytes: 1,
    });

    await handler.close();

    await expect(handler.listen('127.0.0.1:0')).rejects.toThrow('cannot listen in state closed');
  });

  it('close cuts replays at deadline', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: forever\n\n');
    });
    const provider = new FakeProvider(leaseAfter(upstream.address, 0));
    const { handler, port } = await startHandler(provider, { closeTimeoutMs: 200 });

    const stream = send(port, { path: '/events' }).catch((error: Error) => error);
    await waitFor(() => handler.stats().running === 1, 'stream running');
    const startedAt = Date.now();
    await handler.close();

    expect(Date.now() - startedAt).toBeLessThan(2_000);
    expect(await stream).toBeInstanceOf(Error);
    expect(provider.released).toBe(1);
  });
});
