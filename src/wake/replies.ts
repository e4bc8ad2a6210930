import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { isLumaError, type ErrorCode } from '../errors.js';

/** A short plain-text reply that the wake-up handler sends instead of a replica's response. */
export interface PlainReply {
  status: number;
  /** One line, without the trailing newline. */
  message: string;
  /** Sent as `Retry-After` and appended to the message when set. */
  retryAfterSeconds?: number;
}

/** HTTP status per acquire error code; codes not listed map to 502. */
const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  wake_queue_full: 503,
  wake_backoff: 503,
  shutting_down: 503,
  docker_unavailable: 503,
  image_not_found: 502,
  image_pull_failed: 502,
  replica_exited: 502,
  startup_timeout: 504,
  service_not_found: 404,
  service_deleted: 404,
};

/** Returns the status that `replyForWakeError` sends for an error, for logs and tests. */
export function statusForWakeError(error: unknown): number {
  if (!isLumaError(error)) return 502;
  return STATUS_BY_CODE[error.code] ?? 502;
}

/**
 * Returns the reply for a failed wake of `service`. LumaError messages are shown because they are
 * written for users. Other errors are internal, so the reply does not include their text.
 * `details.retryAfterMs` of the error, when positive, replaces the default `Retry-After`.
 */
export function replyForWakeError(service: string, error: unknown, defaultRetryAfterSeconds: number): PlainReply {
  const status = statusForWakeError(error);
  if (status === 404) return { status, message: `service "${service}" not found` };

  const retryAfterSeconds = retryAfterFor(error, defaultRetryAfterSeconds);
  if (!isLumaError(error)) {
    return { status, message: `service "${service}" failed to start: internal error`, retryAfterSeconds };
  }

  const reason = error.message;
  switch (error.code) {
    case 'wake_queue_full':
    case 'shutting_down':
      return { status, message: withService(service, 'is unavailable', reason), retryAfterSeconds };
    default:
      return { status, message: withService(service, 'failed to start', reason), retryAfterSeconds };
  }
}

/** Prefixes `reason` with the service unless the reason already names it. */
function withService(service: string, verb: string, reason: string): string {
  const named = `service "${service}"`;
  return reason.includes(named) ? reason : `${named} ${verb}: ${reason}`;
}

function retryAfterFor(error: unknown, defaultSeconds: number): number {
  if (isLumaError(error)) {
    const ms = error.details.retryAfterMs;
    if (typeof ms === 'number' && Number.isFinite(ms) && ms > 0) return Math.max(1, Math.ceil(ms / 1000));
  }
  return defaultSeconds;
}

/** Returns the reply body: the message, the retry hint and a newline. */
function replyBody(reply: PlainReply): string {
  const hint = reply.retryAfterSeconds === undefined ? '' : ` (retry after ${reply.retryAfterSeconds}s)`;
  return `${reply.message}${hint}\n`;
}

/**
 * Sends `reply` unless the client is gone or a response already started. `closeConnection` adds
 * `Connection: close`, for replies sent before the request body was read, so node does not read
 * and discard a body of any size to keep the connection.
 */
export function sendReply(res: ServerResponse, reply: PlainReply, closeConnection: boolean): void {
  if (res.headersSent || res.destroyed) return;

  const body = replyBody(reply);
  const headers: Record<string, string | number> = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (reply.retryAfterSeconds !== undefined) headers['retry-after'] = reply.retryAfterSeconds;
  if (closeConnection) headers.connection = 'close';

  res.writeHead(reply.status, headers);
  res.end(body);
}

/** Writes `reply` as a raw HTTP/1.1 response on a socket held for an upgrade, then ends the socket. */
export function sendRawReply(socket: Duplex, reply: PlainReply): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }

  const body = replyBody(reply);
  const lines = [
    `HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? 'Error'}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    'Connection: close',
  ];
  if (reply.retryAfterSeconds !== undefined) lines.push(`Retry-After: ${reply.retryAfterSeconds}`);

  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}
