import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

import type { Context, MiddlewareHandler } from 'hono';

import { isLoopbackIp } from '../config/addresses.js';
import { LumaError } from '../errors.js';

/** Hono bindings of @hono/node-server, which exposes the Node.js request as `incoming`. */
export interface ApiBindings {
  incoming?: Pick<IncomingMessage, 'socket'>;
}

/**
 * Origin of a request: an IP address, `unix` for a unix socket connection (which has no
 * address), or `unknown` when neither the header nor the socket gives an address.
 */
export type ClientAddress = { kind: 'ip'; address: string } | { kind: 'unix' } | { kind: 'unknown'; reason: string };

/**
 * Returns the client of a request. Caddy sets `header` to the client IP on every request it
 * forwards, so the header wins when present. Without it, the request came straight to the
 * listener and the socket's peer is the client. The header can be trusted because the API
 * listens only on loopback or a unix socket, so any sender is a local process.
 */
export function clientAddress(c: Context<{ Bindings: ApiBindings }>, header: string): ClientAddress {
  const forwarded = c.req.header(header);
  if (forwarded !== undefined) {
    const address = forwarded.trim().replace(/^\[(.*)\]$/, '$1');
    if (isIP(address) === 0) return { kind: 'unknown', reason: `invalid ${header} header` };
    return { kind: 'ip', address };
  }

  const socket = c.env?.incoming?.socket;
  if (socket === undefined) return { kind: 'unknown', reason: 'no socket' };
  // Node.js reports no remote address for unix socket connections.
  if (socket.remoteAddress === undefined) return { kind: 'unix' };
  return { kind: 'ip', address: socket.remoteAddress };
}

/** Returns whether a client may skip the token: loopback IPs and unix socket peers. */
export function isLocalClient(client: ClientAddress): boolean {
  if (client.kind === 'unix') return true;
  return client.kind === 'ip' && isLoopbackIp(client.address);
}

/**
 * Middleware that lets local clients through and requires `Authorization: Bearer <token>` from
 * everyone else. Rejects with LumaError `unauthorized`, which the API maps to 401 with
 * `WWW-Authenticate: Bearer`. The token is compared in constant time and never logged.
 */
export function requireTokenUnlessLocal(options: { token: string; clientHeader: string }): MiddlewareHandler<{
  Bindings: ApiBindings;
}> {
  const expected = digest(options.token);
  return async (c, next) => {
    const client = clientAddress(c, options.clientHeader);
    if (isLocalClient(client)) return next();

    const authorization = c.req.header('authorization');
    if (authorization === undefined) {
      throw new LumaError('unauthorized', 'missing bearer token; send Authorization: Bearer <token> from the api-token file');
    }
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization);
    if (match === null) {
      throw new LumaError('unauthorized', 'the Authorization header must use the Bearer scheme: Authorization: Bearer <token>');
    }
    if (!timingSafeEqual(digest(match[1] ?? ''), expected)) {
      throw new LumaError('unauthorized', 'invalid bearer token');
    }
    return next();
  };
}

/** Hashing first gives both sides the same length, which timingSafeEqual requires. */
function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
