import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSrvUpstreams, srvChangeDelayMs } from '../../src/caddy/dynamic-upstreams.js';
import { parseUpstreamAddress, serviceRecordName, type UpstreamTarget } from '../../src/dns/names.js';
import { DnsServer } from '../../src/dns/server.js';
import { silentLogger } from '../../src/log.js';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { freePort, sleep } from '../support/ports.js';

/**
 * Caddy 2.6.2 proxying through SRV dynamic upstreams served by DnsServer. Replicas are local
 * HTTP servers on 127.0.0.1 with distinct ports and distinct host names. A separate static route
 * carries long-lived connections: server-sent events and an upgraded (WebSocket-like) echo
 * connection, which Caddy 2.6.2 closes on every config reload.
 */

const INSTANCE_ID = 'itest';
const REFRESH_MS = 250;
const CHANGE_DELAY_MS = srvChangeDelayMs(REFRESH_MS);

interface FakeReplica {
  name: string;
  port: number;
  server: http.Server;
}

let dns: DnsServer;
let caddy: CaddyProcess;
let httpPort: number;
let wake: FakeReplica;
let replicas: FakeReplica[];
let streams: http.Server;

beforeAll(async () => {
  dns = new DnsServer({ instanceId: INSTANCE_ID, logger: silentLogger() });
  const { port: dnsPort } = await dns.listen('127.0.0.1:0');
  wake = await startFakeReplica('wake');
  replicas = await Promise.all(['r0', 'r1', 'r2'].map((name) => startFakeReplica(name)));
  streams = await startStreamServer();
  dns.setWakeAddress('127.0.0.1', wake.port);
  dns.setService('svc', [target(0)]);
  dns.setService('limited', [target(2)]);

  caddy = await startCaddy();
  httpPort = await freePort();
  const upstreams = (service: string, extra: { maxConcurrency?: number } = {}) =>
    buildSrvUpstreams({
      srvName: serviceRecordName(INSTANCE_ID, service),
      dnsAddress: `127.0.0.1:${dnsPort}`,
      refreshMs: REFRESH_MS,
      ...extra,
    });
  const config = {
    admin: { listen: new URL(caddy.adminUrl).host, config: { persist: false } },
    logging: { logs: { default: { level: 'ERROR' } } },
    apps: {
      http: {
        servers: {
          itest: {
            listen: [`127.0.0.1:${httpPort}`],
            automatic_https: { disable: true },
            routes: [
              { match: [{ path: ['/svc/*'] }], handle: [{ handler: 'reverse_proxy', ...upstreams('svc') }] },
              {
                match: [{ path: ['/limited/*'] }],
                handle: [{ handler: 'reverse_proxy', ...upstreams('limited', { maxConcurrency: 1 }) }],
              },
              {
                match: [{ path: ['/events', '/echo'] }],
                handle: [
                  {
                    handler: 'reverse_proxy',
                    upstreams: [{ dial: `127.0.0.1:${(streams.address() as AddressInfo).port}` }],
                  },
                ],
              },
            ],
          },
        },
      },
    },
  };
  const response = await fetch(`${caddy.adminUrl}/load`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(config),
  });
  if (!response.ok) throw new Error(`caddy rejected the config: ${response.status} ${await response.text()}`);
}, 20_000);

afterAll(async () => {
  await caddy?.stop();
  await dns?.close();
  for (const server of [wake?.server, streams, ...(replicas ?? []).map((replica) => replica.server)]) {
    server?.closeAllConnections();
    server?.close();
  }
});

describe('Caddy 2.6.2 with SRV upstreams', () => {
  it('follows the SRV answer', async () => {
    dns.setService('svc', [target(0)]);
    await expectOnly('svc', ['r0']);

    const changedAt = Date.now();
    dns.setService('svc', [target(1)]);
    await expectOnly('svc', ['r1']);
    expect(Date.now() - changedAt).toBeLessThan(CHANGE_DELAY_MS);

    dns.setService('svc', [target(0), target(1)]);
    await expectOnly('svc', ['r0', 'r1']);
  }, 15_000);

  it('sends an idle service to wake', async () => {
    dns.setService('svc', []);

    await expectOnly('svc', ['wake']);
  }, 10_000);

  it('lists in-flight replicas by name', async () => {
    dns.setService('svc', [target(0), target(1)]);
    await expectOnly('svc', ['r0', 'r1']);

    const slow = [1, 2, 3, 4].map(() => fetchText('/svc/slow?delay=800'));
    await sleep(300);
    const during = await serviceUpstreams('svc');
    await Promise.all(slow);
    const after = await serviceUpstreams('svc');

    expect(during.map(({ target }) => target.kind)).toEqual(['replica', 'replica']);
    expect(during.map(({ target }) => target.port).sort()).toEqual([target(0).port, target(1).port].sort());
    expect(during.reduce((sum, { numRequests }) => sum + numRequests, 0)).toBe(4);
    // Dynamic upstreams leave the list when their last request ends.
    expect(after).toEqual([]);
  }, 10_000);

  it('limits concurrent requests per replica', async () => {
    const first = fetchText('/limited/slow?delay=800');
    await sleep(200);
    const second = await fetchText('/limited/x');

    expect(second.status).toBe(503);
    expect(await first).toEqual({ status: 200, body: 'r2' });
  }, 10_000);

  it('keeps streams open across 10 answer changes', async () => {
    const events = openEventStream();
    const echo = await openEchoConnection();
    await sleep(300);

    for (let change = 0; change < 10; change += 1) {
      const next = change % 2 === 0 ? 1 : 0;
      dns.setService('svc', [target(next)]);
      await expectOnly('svc', [`r${next}`]);
    }
    const eventsBefore = events.received;
    const echoesBefore = echo.received;
    await sleep(300);

    expect(events.ended).toBe(false);
    expect(events.received).toBeGreaterThan(eventsBefore);
    expect(echo.closed).toBe(false);
    expect(echo.received).toBeGreaterThan(echoesBefore);
    events.close();
    echo.close();
  }, 30_000);

  // Shows that the check above detects a reload: one admin API write closes the upgraded connection.
  it('closes upgraded connection on config write', async () => {
    const echo = await openEchoConnection();
    await sleep(300);

    const response = await fetch(`${caddy.adminUrl}/config/apps/http/servers/itest/routes/0/handle/0/transport/dial_timeout`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: '"2s"',
    });
    expect(response.status).toBe(200);
    await sleep(500);

    expect(echo.closed).toBe(true);
    echo.close();
  }, 10_000);
});

function target(index: number): { replicaId: string; ip: string; port: number } {
  return { replicaId: `${String(index).repeat(12)}abcdef`, ip: '127.0.0.1', port: replicas[index]!.port };
}

/** Polls until consecutive responses come only from `expected` and cover all of it. */
async function expectOnly(service: string, expected: string[]): Promise<void> {
  const deadline = Date.now() + CHANGE_DELAY_MS + 2_000;
  let last: string[] = [];
  while (Date.now() < deadline) {
    const bodies = new Set<string>();
    for (let request = 0; request < 12; request += 1) {
      const { status, body } = await fetchText(`/${service}/x`);
      bodies.add(`${status} ${body}`);
    }
    last = [...bodies].sort();
    if (last.join() === expected.map((name) => `200 ${name}`).sort().join()) return;
    await sleep(50);
  }
  expect(last).toEqual(expected.map((name) => `200 ${name}`).sort());
}

async function fetchText(pathname: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${httpPort}${pathname}`);
  return { status: response.status, body: await response.text() };
}

/** Returns the entries of `GET /reverse_proxy/upstreams` that belong to `service`. */
async function serviceUpstreams(service: string): Promise<Array<{ target: UpstreamTarget; numRequests: number }>> {
  const response = await fetch(`${caddy.adminUrl}/reverse_proxy/upstreams`);
  const entries = (await response.json()) as Array<{ address: string; num_requests: number }>;
  return entries.flatMap((entry) => {
    const target = parseUpstreamAddress(INSTANCE_ID, entry.address);
    return target?.service === service ? [{ target, numRequests: entry.num_requests }] : [];
  });
}

function startFakeReplica(name: string): Promise<FakeReplica> {
  const server = http.createServer((request, response) => {
    const delay = Number(new URL(request.url ?? '/', 'http://replica').searchParams.get('delay') ?? 0);
    setTimeout(() => response.end(name), delay);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ name, port: (server.address() as AddressInfo).port, server }));
  });
}

/** Serves server-sent events on `/events`, one every 100 ms, and an echo on upgrade requests. */
function startStreamServer(): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let sequence = 0;
    const timer = setInterval(() => response.write(`data: ${sequence++}\n\n`), 100);
    request.on('close', () => clearInterval(timer));
  });
  server.on('upgrade', (_request, socket: Socket) => {
    socket.on('error', () => socket.destroy());
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function openEventStream(): { received: number; ended: boolean; close: () => void } {
  const state = { received: 0, ended: false, close: () => request.destroy() };
  const request = http.get(`http://127.0.0.1:${httpPort}/events`, (response) => {
    response.on('data', (chunk: Buffer) => {
      state.received += chunk.toString().split('data:').length - 1;
    });
    response.on('end', () => (state.ended = true));
    response.on('error', () => (state.ended = true));
  });
  request.on('error', () => (state.ended = true));
  return state;
}

/** Opens an upgraded connection through Caddy and sends a message every 100 ms, counting echoes. */
async function openEchoConnection(): Promise<{ received: number; closed: boolean; close: () => void }> {
  const socket = await new Promise<Socket>((resolve, reject) => {
    const request = http.request({
      host: '127.0.0.1',
      port: httpPort,
      path: '/echo',
      headers: { connection: 'Upgrade', upgrade: 'echo' },
    });
    request.on('upgrade', (_response, upgraded: Socket) => resolve(upgraded));
    request.on('response', (response) => reject(new Error(`upgrade rejected with status ${response.statusCode}`)));
    request.on('error', reject);
    request.end();
  });

  const timer = setInterval(() => socket.write('ping'), 100);
  const state = {
    received: 0,
    closed: false,
    close: () => {
      clearInterval(timer);
      socket.destroy();
    },
  };
  socket.on('data', () => (state.received += 1));
  socket.on('error', () => socket.destroy());
  socket.on('close', () => {
    clearInterval(timer);
    state.closed = true;
  });
  return state;
}
