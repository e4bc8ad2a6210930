import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { upgradeRequestHead } from './headers.js';
import type { ReplicaLease } from './types.js';

/** Time allowed for the TCP connection to a replica, in milliseconds. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Default time a tunnel stays half-closed after one side sent FIN before both sockets are destroyed, in milliseconds. */
const HALF_CLOSE_GRACE_MS = 5_000;

/**
 * Result of opening a tunnel. `opened` carries a promise that resolves when both sockets have
 * closed, which is when the lease is released.
 */
export type TunnelOutcome =
  | { kind: 'opened'; closed: Promise<void> }
  | { kind: 'not_sent'; error: Error }
  | { kind: 'aborted' };

export interface TunnelOptions {
  req: IncomingMessage;
  /** The client socket node:http handed over with the `upgrade` event. */
  socket: Duplex;
  /** Bytes the client sent after the request head. */
  head: Buffer;
  lease: ReplicaLease;
  /** Aborts opening the tunnel: the client went away or the handler is closing. */
  signal: AbortSignal;
  /** Time the tunnel stays half-closed before it is destroyed, in milliseconds. Default 5000. */
  halfCloseGraceMs?: number;
}

/** Returns host and port of an `ip:port` or `[ipv6]:port` address. */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(address.slice(colon + 1)) };
}

/**
 * Connects to the leased replica, writes the client's upgrade request there and pipes bytes both
 * ways, so the replica's response (101 Switching Protocols or an error) reaches the client unchanged.
 * Releases the lease exactly once: when connecting fails or is aborted, or when either side of an
 * open tunnel closes. Never rejects.
 */
export function openTunnel(options: TunnelOptions): Promise<TunnelOutcome> {
  const { req, socket, head, lease, signal } = options;

  return new Promise<TunnelOutcome>((resolve) => {
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      lease.release();
    };

    if (signal.aborted) {
      release();
      resolve({ kind: 'aborted' });
      return;
    }

    const { host, port } = splitAddress(lease.address);
    const upstream: Socket = connect({ host, port });
    upstream.setTimeout(CONNECT_TIMEOUT_MS);

    const onAbort = (): void => {
      upstream.destroy();
      release();
      resolve({ kind: 'aborted' });
    };

    const onConnectTimeout = (): void => {
      const error = new Error(`connect to replica ${lease.address} timed out after ${CONNECT_TIMEOUT_MS} ms`);
      upstream.destroy(Object.assign(error, { code: 'ETIMEDOUT' }));
    };

    const onConnectError = (error: Error): void => {
      signal.removeEventListener('abort', onAbort);
      release();
      resolve({ kind: 'not_sent', error });
    };

    signal.addEventListener('abort', onAbort, { once: true });
    upstream.once('timeout', onConnectTimeout);
    upstream.once('error', onConnectError);

    upstream.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      upstream.off('timeout', onConnectTimeout);
      upstream.off('error', onConnectError);
      upstream.setTimeout(0);

      // The request head goes first, before any client bytes that the pipe forwards.
      upstream.write(upgradeRequestHead(req.method ?? 'GET', req.url ?? '/', req.rawHeaders));
      if (head.length > 0) upstream.write(head);
      const closed = pipeBothWays(socket, upstream, options.halfCloseGraceMs ?? HALF_CLOSE_GRACE_MS, release);
      resolve({ kind: 'opened', closed });
    });
  });
}

/**
 * Pipes `client` and `upstream` into each other until either closes, then destroys the other and
 * calls `onClosed` once. A half-close (FIN) is passed on, because some protocols end one direction
 * first, but the tunnel is destroyed `graceMs` after the first FIN. Without that bound
 * a replica that ignores the FIN of a departed client would hold its lease, and stay busy, forever.
 */
function pipeBothWays(client: Duplex, upstream: Socket, graceMs: number, onClosed: () => void): Promise<void> {
  return new Promise<void>((resolve) => {
    upstream.setNoDelay(true);
    upstream.setKeepAlive(true, 30_000);

    let graceTimer: NodeJS.Timeout | undefined;
    const onEnd = (): void => {
      graceTimer ??= setTimeout(() => {
        client.destroy();
        upstream.destroy();
      }, graceMs);
    };

    let open = 2;
    const onClose = (): void => {
      client.destroy();
      upstream.destroy();
      open -= 1;
      if (open > 0) return;
      clearTimeout(graceTimer);
      onClosed();
      resolve();
    };

    // Errors (ECONNRESET, EPIPE) end the tunnel through 'close'; the listeners keep them from
    // becoming uncaught exceptions.
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.once('end', onEnd);
    upstream.once('end', onEnd);
    client.once('close', onClose);
    upstream.once('close', onClose);

    client.pipe(upstream);
    upstream.pipe(client);
  });
}
