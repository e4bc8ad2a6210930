import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIPv4, isIPv6, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Agent } from 'undici';
import { LumaError, SettingError } from '../errors.js';
import type { Logger } from '../log.js';
import { shuttingDownError, type WakeContext, type WakeCounters } from './context.js';
import { FailureLog } from './failure-log.js';
import { LeaseQueue } from './lease-queue.js';
import { sendReply } from './replies.js';
import { serveRequest } from './request.js';
import type { ReplicaProvider } from './types.js';
import { serveUpgrade } from './upgrade.js';

export interface WakeHandlerOptions {
  logger: Logger;
  provider: ReplicaProvider;
  /** Requests of one service that may wait for a replica at the same time; more get 503 at once. */
  maxQueuedPerService: number;
  /** Requests of all services that may wait for a replica at the same time. */
  maxQueuedTotal: number;
  /** Largest request body accepted, in bytes; larger bodies get 413. */
  maxBodyBytes: number;
  /** `Retry-After` of error replies, in seconds, unless the error carries its own. Default 5. */
  retryAfterSeconds?: number;
  /** Time `close()` lets running replays and tunnels finish before cutting them, in ms. Default 10 000. */
  closeTimeoutMs?: number;
  /** Connections per replica in the shared undici agent; more requests queue in undici. Default 128. */
  maxConnectionsPerReplica?: number;
}

/** Gauges and counters of the wake-up handler; the counters count since start. */
export interface WakeStats extends WakeCounters {
  /** Requests waiting for a replica now. */
  waiting: number;
  waitingByService: Record<string, number>;
  /** HTTP requests being replayed and upgrades being connected to a replica now. */
  running: number;
  /** Open upgrade tunnels (WebSocket and others). */
  tunnels: number;
  /** Requests that took a gate slot. */
  held: number;
  /** Requests rejected because a gate bound was reached. */
  rejectedQueueFull: number;
}

type HandlerState = 'created' | 'listening' | 'closing' | 'closed';

/** Node's idle keep-alive timeout, above the 2 min that Caddy 2.6 keeps idle upstream connections, so Caddy closes first. */
const KEEP_ALIVE_TIMEOUT_MS = 130_000;
/** Time a client may take to send the request headers. */
const HEADERS_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;
const LOG_REPEAT_INTERVAL_MS = 10_000;

/**
 * The controller's private HTTP listener that Caddy proxies a service's requests to while the
 * service has no ready replica. Each request waits in a bounded queue for a lease on a replica
 * (`ReplicaProvider.acquire`, which starts one when needed), is replayed there once with undici,
 * and its response is streamed back. Upgrades (WebSocket) are tunnelled over TCP.
 *
 * `Expect: 100-continue` requests get the `100 Continue` only once a replica is leased, so the
 * client sends the body when it can be forwarded. The request sent to the replica has no `Expect` header.
 * NOTE: Caddy 2.6.2 sends its own `100 Continue` to the client at once and forwards this one later
 * as a second 1xx, so behind Caddy the body arrives early and waits in socket buffers.
 */
export class WakeHandler {
  private readonly logger: Logger;
  private readonly closeTimeoutMs: number;
  private readonly server: Server;
  private readonly agent: Agent;
  private readonly queue: LeaseQueue;
  private readonly ctx: WakeContext;

  private state: HandlerState = 'created';
  private closing: Promise<void> | undefined;
  /** Requests and upgrades whose client connection is still in use; `close()` waits for zero. */
  private open = 0;
  private readonly idleWaiters = new Set<() => void>();

  constructor(options: WakeHandlerOptions) {
    requirePositiveInteger('maxQueuedPerService', options.maxQueuedPerService);
    requirePositiveInteger('maxQueuedTotal', options.maxQueuedTotal);
    requirePositiveInteger('maxBodyBytes', options.maxBodyBytes);
    const maxConnections = options.maxConnectionsPerReplica ?? 128;
    requirePositiveInteger('maxConnectionsPerReplica', maxConnections);

    this.logger = options.logger.child({ component: 'wake' });
    this.closeTimeoutMs = options.closeTimeoutMs ?? 10_000;
    this.queue = new LeaseQueue(options.provider, options.maxQueuedPerService, options.maxQueuedTotal, () =>
      this.notifyIfIdle(),
    );

    // requestTimeout 0: a request may wait for a replica and stream for as long as it needs.
    this.server = createServer({
      requestTimeout: 0,
      headersTimeout: HEADERS_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      keepAlive: true,
      noDelay: true,
    });
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, false));
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, true));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));

    // Timeouts are 0 (none): the time to first byte and between chunks is the replica's business.
    this.agent = new Agent({
      connections: maxConnections,
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { timeout: CONNECT_TIMEOUT_MS },
    });

    this.ctx = {
      logger: this.logger,
      failures: new FailureLog(this.logger, LOG_REPEAT_INTERVAL_MS),
      provider: options.provider,
      queue: this.queue,
      dispatcher: this.agent,
      counters: { replayed: 0, retried: 0, failed: 0 },
      maxBodyBytes: options.maxBodyBytes,
      retryAfterSeconds: options.retryAfterSeconds ?? 5,
      accepting: () => this.state === 'listening',
      running: new Set(),
      tunnels: new Set(),
    };
  }

  /** Starts listening on `address` (`host:port`, port 0 picks a free one) and returns the bound address. */
  async listen(address: string): Promise<{ host: string; port: number }> {
    if (this.state !== 'created') throw new Error(`wake-up handler cannot listen in state ${this.state}`);
    const { host, port } = parseListenAddress(address);

    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        const message = `listen on ${address} failed: ${error.message}`;
        reject(new LumaError('invalid_setting', message, { cause: error, details: { setting: 'wake listen address', value: address } }));
      };
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });

    this.server.on('error', (error) => this.logger.error({ err: error }, 'wake-up listener failed'));
    this.state = 'listening';
    const bound = this.server.address() as AddressInfo;
    this.logger.info({ address: bound.address, port: bound.port }, 'wake-up handler listening');
    return { host: bound.address, port: bound.port };
  }

  /**
   * Stops accepting connections and rejects waiting requests with 503 `shutting_down`. Running
   * replays and tunnels get up to `closeTimeoutMs` to finish and are cut after that. Calling it
   * again returns the same promise.
   */
  close(): Promise<void> {
    if (this.closing === undefined) this.closing = this.shutdown();
    return this.closing;
  }

  /** Number of requests of `service` waiting for a replica now; replays in progress are not counted. */
  waiting(service: string): number {
    return this.queue.waiting(service);
  }

  stats(): WakeStats {
    return {
      waiting: this.queue.total,
      waitingByService: this.queue.byService(),
      running: this.ctx.running.size,
      tunnels: this.ctx.tunnels.size,
      held: this.queue.held,
      rejectedQueueFull: this.queue.rejected,
      ...this.ctx.counters,
    };
  }

  private async shutdown(): Promise<void> {
    const wasListening = this.state === 'listening';
    this.state = 'closing';
    if (wasListening) {
      const { waiting, running, tunnels } = this.stats();
      this.logger.info({ waiting, running, tunnels }, 'closing wake-up handler');
    }

    const shuttingDown = shuttingDownError();
    this.queue.abortAll(shuttingDown);

    const serverClosed = wasListening
      ? new Promise<void>((resolve) => this.server.close(() => resolve()))
      : Promise.resolve();
    this.server.closeIdleConnections();

    const drained = await this.waitForIdle(this.closeTimeoutMs);
    if (!drained) {
      const { running, tunnels } = this.stats();
      this.logger.warn({ running, tunnels, timeoutMs: this.closeTimeoutMs }, 'cut replays still running at close deadline');
      for (const abort of this.ctx.running) abort.abort(shuttingDown);
      for (const socket of this.ctx.tunnels) socket.destroy();
    }
    this.server.closeAllConnections();

    await (drained ? this.agent.close() : this.agent.destroy());
    await serverClosed;
    this.state = 'closed';
    if (wasListening) this.logger.info('wake-up handler closed');
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    this.open += 1;
    res.once('close', () => {
      this.open -= 1;
      this.notifyIfIdle();
    });

    serveRequest(this.ctx, req, res, expectsContinue).catch((error: unknown) => {
      this.logger.error({ err: error, method: req.method, url: req.url }, 'serve request failed');
      if (res.headersSent) res.destroy();
      else sendReply(res, { status: 500, message: 'wake-up handler failed' }, true);
    });
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.open += 1;
    socket.once('close', () => {
      this.open -= 1;
      this.notifyIfIdle();
    });
    socket.on('error', (error) => this.logger.debug({ err: error }, 'client socket of an upgrade failed'));

    serveUpgrade(this.ctx, req, socket, head).catch((error: unknown) => {
      this.logger.error({ err: error, url: req.url }, 'serve upgrade failed');
      socket.destroy();
    });
  }

  private isIdle(): boolean {
    return this.open === 0 && this.queue.total === 0;
  }

  private notifyIfIdle(): void {
    if (!this.isIdle()) return;
    for (const wake of this.idleWaiters) wake();
  }

  /** Resolves true once no request or upgrade is open, or false after `timeoutMs`. */
  private waitForIdle(timeoutMs: number): Promise<boolean> {
    if (this.isIdle()) return Promise.resolve(true);

    return new Promise<boolean>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.idleWaiters.delete(done);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.idleWaiters.delete(done);
        resolve(false);
      }, timeoutMs);
      this.idleWaiters.add(done);
    });
  }
}

function requirePositiveInteger(setting: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new SettingError(setting, value, 'must be a positive integer');
}

/** Parses `host:port` or `[ipv6]:port`. Port 0 lets the system pick a free port. */
export function parseListenAddress(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address.trim());
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (match === null || host === undefined || port > 65_535) {
    throw new SettingError('wake listen address', address, 'expected host:port, for example 127.0.0.1:0');
  }
  if (match[1] !== undefined && !isIPv6(host)) {
    throw new SettingError('wake listen address', address, 'the bracketed host must be an IPv6 address');
  }
  if (match[2] !== undefined && !isIPv4(host) && host !== 'localhost') {
    throw new SettingError('wake listen address', address, 'the host must be an IPv4 address, [IPv6] or localhost');
  }
  return { host, port };
}
