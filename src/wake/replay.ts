import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { hasRequestBody, RequestBodyRelay } from './body.js';
import { forwardedRequestHeaders, forwardedResponseHeaders } from './headers.js';
import type { ReplicaLease } from './types.js';

/**
 * Result of one replay attempt.
 *
 * | kind           | replica saw the request | client response                       |
 * |----------------|-------------------------|---------------------------------------|
 * | completed      | yes                     | sent in full                          |
 * | not_sent       | no (connect failed)     | untouched; the caller may retry       |
 * | body_too_large | partly                  | untouched unless `responseStarted`    |
 * | aborted        | maybe                   | client gone, or the handler closed    |
 * | failed         | maybe                   | untouched unless `responseStarted`    |
 */
export type ReplayOutcome =
  | { kind: 'completed' }
  | { kind: 'not_sent'; error: Error }
  | { kind: 'body_too_large'; responseStarted: boolean }
  | { kind: 'aborted' }
  | { kind: 'failed'; error: Error; responseStarted: boolean };

export interface ReplayOptions {
  dispatcher: Dispatcher;
  req: IncomingMessage;
  res: ServerResponse;
  lease: ReplicaLease;
  maxBodyBytes: number;
  /** Aborts the replay: the client went away or the handler is closing. */
  signal: AbortSignal;
}

/**
 * Sends the client's request once to the leased replica and streams the response back, chunk by
 * chunk, with backpressure both ways. Releases the lease exactly once, when the exchange with the
 * replica ends, fails or is aborted. Never rejects: every ending is an outcome. On `not_sent` the
 * request body was not read, so the caller may replay with another lease.
 */
export function replayRequest(options: ReplayOptions): Promise<ReplayOutcome> {
  const { dispatcher, req, res, lease, maxBodyBytes, signal } = options;

  return new Promise<ReplayOutcome>((resolve) => {
    const body = hasRequestBody(req) ? new RequestBodyRelay(req, maxBodyBytes) : null;
    let controller: Dispatcher.DispatchController | undefined;
    let responseStarted = false;
    let settled = false;

    const settle = (outcome: ReplayOutcome): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      res.off('drain', onDrain);
      if (body !== null && !body.destroyed) body.destroy();
      lease.release();
      resolve(outcome);
    };

    const onAbort = (): void => {
      // Before undici starts the request there is no controller; onRequestStart aborts it then.
      if (controller === undefined) settle({ kind: 'aborted' });
      else controller.abort(abortReason(signal));
    };

    const onDrain = (): void => controller?.resume();

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(ctrl) {
        controller = ctrl;
        if (signal.aborted || settled) ctrl.abort(abortReason(signal));
      },

      onResponseStart(ctrl, statusCode, headers, statusMessage) {
        // Informational responses (103 Early Hints) are not forwarded; the final response follows.
        if (statusCode < 200) return;

        const outgoing = forwardedResponseHeaders(headers);
        // A replica may respond before the client sent the whole body (a 401 to an upload). node:http
        // does not discard the unread rest, so the connection is closed after this response instead
        // of waiting for a next request that would never be parsed.
        if (body !== null && !req.complete) outgoing.connection = 'close';
        if (statusMessage === undefined || statusMessage === '') res.writeHead(statusCode, outgoing);
        else res.writeHead(statusCode, statusMessage, outgoing);
        responseStarted = true;
        // Sends the headers now, so a client of a slow stream (SSE) receives them before the first event.
        res.flushHeaders();
      },

      onResponseData(ctrl, chunk) {
        if (!res.write(chunk)) ctrl.pause();
      },

      onResponseEnd() {
        res.end();
        settle({ kind: 'completed' });
      },

      onResponseError(_ctrl, error) {
        if (signal.aborted) settle({ kind: 'aborted' });
        else if (body?.exceeded === true) settle({ kind: 'body_too_large', responseStarted });
        else if (controller === undefined && isConnectError(error)) settle({ kind: 'not_sent', error });
        else settle({ kind: 'failed', error, responseStarted });
      },
    };

    if (signal.aborted) {
      settle({ kind: 'aborted' });
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    res.on('drain', onDrain);

    dispatcher.dispatch(
      {
        origin: `http://${lease.address}`,
        // The raw request target, so percent-encoding and query reach the replica byte for byte.
        path: req.url ?? '/',
        method: req.method ?? 'GET',
        headers: forwardedRequestHeaders(req.rawHeaders),
        body,
        blocking: true,
        // Waiting for headers and for body chunks is unbounded: long polls and streams are normal.
        headersTimeout: 0,
        bodyTimeout: 0,
      },
      handler,
    );
  });
}

/** Error codes of a failed connection attempt (node:net and undici 7), before any byte was sent. */
const CONNECT_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ETIMEDOUT',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/** Returns whether `error` is a failure to connect to the replica. */
export function isConnectError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && CONNECT_ERROR_CODES.has(code);
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('replay aborted');
}
