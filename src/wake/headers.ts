import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Hop-by-hop headers (RFC 9110 section 7.6.1 plus the legacy `keep-alive` and `proxy-connection`).
 * They describe one connection, so a proxy never forwards them; headers named in `Connection`
 * are hop-by-hop too.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

/** Returns the lower-case header names listed in `Connection` values. */
function connectionTokens(values: Iterable<string>): Set<string> {
  const tokens = new Set<string>();
  for (const value of values) {
    for (const token of value.split(',')) {
      const name = token.trim().toLowerCase();
      if (name !== '') tokens.add(name);
    }
  }
  return tokens;
}

/**
 * Returns the request headers to send to a replica, as a flat `[name, value, ...]` list in the
 * order and spelling the client used. Removes hop-by-hop headers and `Expect`, because the
 * wake-up handler sends `100 Continue` itself and undici 7 rejects an `Expect` header.
 * `Host` and the `X-Forwarded-*` headers set by Caddy pass unchanged.
 */
export function forwardedRequestHeaders(rawHeaders: readonly string[]): string[] {
  const connectionValues: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') connectionValues.push(rawHeaders[i + 1]!);
  }
  const listed = connectionTokens(connectionValues);

  const forwarded: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || listed.has(lower) || lower === 'expect') continue;
    forwarded.push(name, rawHeaders[i + 1]!);
  }
  return forwarded;
}

/**
 * Returns the request head of an upgrade (WebSocket and others) to write to a replica: the request
 * line and the client's headers. `Connection` and `Upgrade` stay because the replica needs them to
 * switch protocols; the other hop-by-hop headers are removed.
 */
export function upgradeRequestHead(method: string, url: string, rawHeaders: readonly string[]): Buffer {
  const connectionValues: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') connectionValues.push(rawHeaders[i + 1]!);
  }
  const listed = connectionTokens(connectionValues);
  listed.delete('upgrade');

  const lines = [`${method} ${url} HTTP/1.1`];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    const kept = lower === 'connection' || lower === 'upgrade';
    if (!kept && (HOP_BY_HOP.has(lower) || listed.has(lower))) continue;
    lines.push(`${name}: ${rawHeaders[i + 1]!}`);
  }

  // Node decodes header bytes as latin1, so encoding them as latin1 restores the original bytes.
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

/**
 * Returns the response headers of a replica to send to the client, without hop-by-hop headers.
 * Repeated headers such as `Set-Cookie` stay arrays, which node:http writes as separate lines.
 */
export function forwardedResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const connection = headers.connection;
  const connectionValues = connection === undefined ? [] : Array.isArray(connection) ? connection : [connection];
  const listed = connectionTokens(connectionValues);

  const forwarded: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || listed.has(lower)) continue;
    forwarded[name] = value;
  }
  return forwarded;
}
