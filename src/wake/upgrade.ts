import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { isLumaError } from '../errors.js';
import { clientClosedError, shuttingDownError, type WakeContext } from './context.js';
import { replyForWakeError, sendRawReply } from './replies.js';
import { resolveService } from './target.js';
import { openTunnel } from './tunnel.js';
import type { ReplicaLease } from './types.js';

/**
 * Serves one upgrade request (WebSocket and others) for a service without a ready replica: waits
 * for a lease, then tunnels the connection to the replica. When connecting to the replica fails,
 * it acquires a lease once more and tries again. Resolves when the tunnel has closed.
 */
export async function serveUpgrade(ctx: WakeContext, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const target = resolveService(req, ctx.provider);
  if (!target.found) {
    ctx.counters.failed += 1;
    sendRawReply(socket, { status: 404, message: target.message });
    return;
  }
  const service = target.service;

  if (!ctx.accepting()) {
    ctx.counters.failed += 1;
    sendRawReply(socket, replyForWakeError(service, shuttingDownError(), ctx.retryAfterSeconds));
    return;
  }

  const abort = new AbortController();
  socket.once('close', () => abort.abort(clientClosedError()));

  for (let attempt = 1; attempt <= 2; attempt += 1) {
    let lease: ReplicaLease;
    try {
      lease = await ctx.queue.acquire(service, abort);
    } catch (error) {
      if (abort.signal.aborted && !isLumaError(abort.signal.reason, 'shutting_down')) return;
      ctx.failures.wakeFailed(service, error);
      ctx.counters.failed += 1;
      sendRawReply(socket, replyForWakeError(service, error, ctx.retryAfterSeconds));
      return;
    }

    ctx.running.add(abort);
    const outcome = await openTunnel({ req, socket, head, lease, signal: abort.signal });
    ctx.running.delete(abort);

    if (outcome.kind === 'opened') {
      ctx.counters.replayed += 1;
      ctx.tunnels.add(socket);
      ctx.logger.debug({ service, replica: lease.replicaId }, 'upgrade tunnel opened');
      await outcome.closed;
      ctx.tunnels.delete(socket);
      ctx.logger.debug({ service, replica: lease.replicaId }, 'upgrade tunnel closed');
      return;
    }

    if (outcome.kind === 'aborted') {
      if (isLumaError(abort.signal.reason, 'shutting_down')) {
        ctx.counters.failed += 1;
        sendRawReply(socket, replyForWakeError(service, abort.signal.reason, ctx.retryAfterSeconds));
      }
      return;
    }

    ctx.failures.warn(
      `${service}:replay`,
      { service, replica: lease.replicaId, address: lease.address, err: outcome.error, attempt },
      'connect to replica for upgrade failed',
    );
    if (attempt === 1) ctx.counters.retried += 1;
  }

  ctx.counters.failed += 1;
  sendRawReply(socket, {
    status: 502,
    message: `service "${service}" is unavailable: could not connect to a replica`,
    retryAfterSeconds: ctx.retryAfterSeconds,
  });
}
