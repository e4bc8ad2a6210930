import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { probeUntilReady } from '../../src/controller/readiness.js';
import { isLumaError } from '../../src/errors.js';

const running: Array<Server | TcpServer> = [];
const openSockets = new Set<Socket>();

afterEach(async () => {
  for (const socket of openSockets) socket.destroy();
  openSockets.clear();
  await Promise.all(running.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

function track(server: Server | TcpServer): void {
  server.on('connection', (socket: Socket) => {
    openSockets.add(socket);
    socket.on('close', () => openSockets.delete(socket));
  });
  running.push(server);
}

async function listen(server: Server | TcpServer, port = 0): Promise<string> {
  track(server);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function httpServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Server {
  return createServer(handler);
}

/** Returns a loopback address with nothing listening (a port that was free a moment ago). */
async function closedAddress(): Promise<string> {
  const server = createTcpServer();
  const address = await new Promise<string>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
  await new Promise((resolve) => server.close(resolve));
  return address;
}

const running_ = async () => undefined;

describe('probeUntilReady', () => {
  it('accepts 404 on first probe', async () => {
    const address = await listen(httpServer((_req, res) => res.writeHead(404).end('no route')));
    const result = await probeUntilReady({ address, timeoutMs: 2000, hasExited: running_ });
    expect(result.attempts).toBe(1);
    expect(result.status).toBe(404);
    expect(result.elapsedMs).toBeLessThan(200);
  });

  it('waits out 503 replies', async () => {
    const readyAt = Date.now() + 150;
    const address = await listen(httpServer((_req, res) => res.writeHead(Date.now() < readyAt ? 503 : 200).end()));
    const result = await probeUntilReady({ address, timeoutMs: 2000, hasExited: running_ });
    expect(result.status).toBe(200);
    expect(result.attempts).toBeGreaterThan(1);
    expect(Date.now()).toBeGreaterThanOrEqual(readyAt);
  });

  it('sees a late listener within 50 ms', async () => {
    const address = await closedAddress();
    const port = Number(address.split(':')[1]);
    const server = httpServer((_req, res) => res.end('ok'));
    let listeningAt = 0;
    setTimeout(() => {
      void listen(server, port).then(() => (listeningAt = Date.now()));
    }, 300);

    const result = await probeUntilReady({ address, timeoutMs: 3000, hasExited: running_ });
    const latencyMs = Date.now() - listeningAt;

    expect(result.status).toBe(200);
    expect(latencyMs).toBeLessThanOrEqual(60);
    // At least one probe per 50 ms while nothing listened.
    expect(result.attempts).toBeGreaterThanOrEqual(6);
  });

  it('times out on silent listener', async () => {
    const silent = createTcpServer(() => undefined);
    const address = await listen(silent);
    const startedAt = Date.now();

    const error = await probeUntilReady({ address, timeoutMs: 400, healthCheck: { path: '/', timeoutMs: 150 }, hasExited: running_ }).catch(
      (caught: unknown) => caught,
    );

    expect(isLumaError(error, 'startup_timeout')).toBe(true);
    expect((error as Error).message).toContain('no response within');
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(400);
    expect(Date.now() - startedAt).toBeLessThan(800);
  });

  it.each([
    { name: 'health path 200', status: 200, ready: true },
    { name: 'health path 204', status: 204, ready: true },
    { name: 'health path 404', status: 404, ready: false },
    { name: 'health path 302', status: 302, ready: false },
  ])('treats $name as ready=$ready', async ({ status, ready }) => {
    const paths: string[] = [];
    const address = await listen(
      httpServer((req, res) => {
        paths.push(req.url ?? '');
        res.writeHead(status).end();
      }),
    );

    const outcome = await probeUntilReady({ address, timeoutMs: 200, healthCheck: { path: '/healthz', timeoutMs: 100 }, hasExited: running_ }).then(
      () => 'ready',
      (error: unknown) => (isLumaError(error, 'startup_timeout') ? (error as Error).message : String(error)),
    );

    expect(paths[0]).toBe('/healthz');
    if (ready) expect(outcome).toBe('ready');
    else expect(outcome).toContain(`last: status ${status}`);
  });

  it('stops when the replica exits', async () => {
    const address = await closedAddress();
    const exitAt = Date.now() + 100;
    const startedAt = Date.now();

    const error = await probeUntilReady({
      address,
      timeoutMs: 5000,
      hasExited: () => (Date.now() >= exitAt ? { exitCode: 4 } : undefined),
    }).catch((caught: unknown) => caught);

    expect(isLumaError(error, 'replica_exited')).toBe(true);
    expect((error as { details: { exitCode: number } }).details.exitCode).toBe(4);
    expect(Date.now() - startedAt).toBeLessThan(400);
  });

  it('rejects with the abort reason', async () => {
    const address = await listen(createTcpServer(() => undefined));
    const controller = new AbortController();
    const reason = new Error('client went away');
    setTimeout(() => controller.abort(reason), 100);
    const startedAt = Date.now();

    await expect(probeUntilReady({ address, timeoutMs: 5000, signal: controller.signal, hasExited: running_ })).rejects.toBe(reason);
    expect(Date.now() - startedAt).toBeLessThan(400);
  });

  it('leaves no probe connections open', async () => {
    let connections = 0;
    const readyAt = Date.now() + 100;
    const server = httpServer((_req, res) => res.writeHead(Date.now() < readyAt ? 503 : 200).end('body'));
    server.on('connection', () => (connections += 1));
    const address = await listen(server);

    const result = await probeUntilReady({ address, timeoutMs: 2000, hasExited: running_ });
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect(connections).toBe(result.attempts);
    expect(openSockets.size).toBe(0);
  });
});
