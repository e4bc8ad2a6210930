import type { IncomingMessage, ServerResponse } from 'node:http';
import { isLumaError } from '../errors.js';
import { clientClosedError, shuttingDownError, type WakeContext } from './context.js';
import { replayRequest, type ReplayOutcome } from './replay.js';
import { replyForWakeError, sendReply, type PlainReply } from './replies.js';
import { resolveService } from './target.js';
import type { ReplicaLease } from './types.js';

/**
 * Serves one HTTP request for a service without a ready replica: finds the service, waits for a
 * lease, sends `100 Continue` when the client asked for it, replays the request and streams the
 * response back. When connecting to the leased replica fails before anything was sent, it
 * acquires a lease once more and replays again; after that it never resends.
 */
export async function serveRequest(
  ctx: WakeContext,
  req: IncomingMessage,
  res: ServerResponse,
  expectsContinue: boolean,
): Promise<void> {
  const target = resolveService(req, ctx.provider);
  if (!target.found) {
    rejectRequest(ctx, req, res, undefined, { status: 404, message: target.message });
    return;
  }
  const service = target.service;

  if (!ctx.accepting()) {
    rejectRequest(ctx, req, res, service, replyForWakeError(service, shuttingDownError(), ctx.retryAfterSeconds));
    return;
  }

  // Checked before waiting, so a client that waits for `100 Continue` does not send the body.
  const declaredLength = Number(req.headers['content-length'] ?? 0);
  if (declaredLength > ctx.maxBodyBytes) {
    rejectRequest(ctx, req, res, service, bodyTooLargeReply(service, ctx.maxBodyBytes));
    return;
  }

  const abort = new AbortController();
  res.once('close', () => abort.abort(clientClosedError()));

  for (let attempt = 1; attempt <= 2; attempt += 1) {
    let lease: ReplicaLease;
    try {
      lease = await ctx.queue.acquire(service, abort);
    } catch (error) {
      answerWakeFailure(ctx, req, res, service, error, abort.signal);
      return;
    }

    if (expectsContinue && attempt === 1 && !abort.signal.aborted) res.writeContinue();

    ctx.running.add(abort);
    let outcome: ReplayOutcome;
    try {
      outcome = await replayRequest({
        dispatcher: ctx.dispatcher,
        req,
        res,
        lease,
        maxBodyBytes: ctx.maxBodyBytes,
        signal: abort.signal,
      });
    } finally {
      ctx.running.delete(abort);
    }

    if (outcome.kind === 'not_sent' && attempt === 1) {
      ctx.counters.retried += 1;
      ctx.logger.warn(
        { service, replica: lease.replicaId, address: lease.address, err: outcome.error },
        'connect to replica failed, acquiring a replica again',
      );
      continue;
    }
    finishReplay(ctx, req, res, service, lease, outcome, abort.signal);
    return;
  }
}

/** Sends the reply that fits how the replay ended; a response sent in full needs none. */
function finishReplay(
  ctx: WakeContext,
  req: IncomingMessage,
  res: ServerResponse,
  service: string,
  lease: ReplicaLease,
  outcome: ReplayOutcome,
  signal: AbortSignal,
): void {
  const replica = lease.replicaId;

  switch (outcome.kind) {
    case 'completed':
      ctx.counters.replayed += 1;
      ctx.logger.debug({ service, replica, method: req.method, status: res.statusCode }, 'request replayed');
      return;

    case 'aborted':
      if (!isLumaError(signal.reason, 'shutting_down')) {
        ctx.logger.debug({ service, replica }, 'client closed the connection during replay');
        return;
      }
      ctx.counters.failed += 1;
      if (res.headersSent) res.destroy();
      else sendReply(res, replyForWakeError(service, signal.reason, ctx.retryAfterSeconds), true);
      return;

    case 'body_too_large':
      ctx.counters.failed += 1;
      ctx.logger.debug({ service, replica, maxBodyBytes: ctx.maxBodyBytes }, 'request body too large');
      if (res.headersSent) res.destroy();
      else sendReply(res, bodyTooLargeReply(service, ctx.maxBodyBytes), true);
      return;

    case 'not_sent':
    case 'failed': {
      ctx.counters.failed += 1;
      const responseStarted = outcome.kind === 'failed' && outcome.responseStarted;
      ctx.failures.warn(
        `${service}:replay`,
        { service, replica, address: lease.address, err: outcome.error, responseStarted },
        'replay to replica failed',
      );

      // A response that already started cannot become a 502, so closing the connection is the only signal left.
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const reason =
        outcome.kind === 'not_sent'
          ? 'could not connect to a replica'
          : 'the replica did not send a valid response';
      const reply = {
        status: 502,
        message: `service "${service}" is unavailable: ${reason}`,
        retryAfterSeconds: ctx.retryAfterSeconds,
      };
      sendReply(res, reply, !req.complete);
      return;
    }
  }
}

/** Sends the error reply for a request whose wait for a lease failed, unless the client is gone. */
function answerWakeFailure(
  ctx: WakeContext,
  req: IncomingMessage,
  res: ServerResponse,
  service: string,
  error: unknown,
  signal: AbortSignal,
): void {
  if (signal.aborted && !isLumaError(signal.reason, 'shutting_down')) {
    ctx.logger.debug({ service }, 'client closed the connection while waiting for a replica');
    return;
  }
  ctx.failures.wakeFailed(service, error);
  rejectRequest(ctx, req, res, service, replyForWakeError(service, error, ctx.retryAfterSeconds));
}

/** Sends the handler's own reply; the connection closes when the request body was not read. */
function rejectRequest(
  ctx: WakeContext,
  req: IncomingMessage,
  res: ServerResponse,
  service: string | undefined,
  reply: PlainReply,
): void {
  ctx.counters.failed += 1;
  ctx.logger.debug({ service, method: req.method, status: reply.status }, 'request rejected');
  sendReply(res, reply, !req.complete || !ctx.accepting());
}

function bodyTooLargeReply(service: string, maxBodyBytes: number): PlainReply {
  return { status: 413, message: `request body for service "${service}" exceeds the limit of ${maxBodyBytes} bytes` };
}
