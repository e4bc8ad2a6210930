/**
 * Clients for traffic tests: a streaming reader that timestamps every chunk, and a few requests
 * that fetch cannot send (a custom Host, raw forwarding headers).
 */
import { connect } from 'node:net';
import { request, type Dispatcher } from 'undici';

export interface TimedChunk {
  /** Milliseconds since the epoch when the chunk was read. */
  at: number;
  bytes: number;
  text: string;
}

export interface TimedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Milliseconds since the epoch when the response headers arrived. */
  headersAt: number;
  chunks: TimedChunk[];
  body: Buffer;
}

/**
 * Sends a GET on a new connection and reads the whole response, recording when each chunk
 * arrived. A new connection, because Caddy 2.6.2 closes idle keep-alive connections on every
 * config write.
 */
export async function readTimed(
  url: string,
  options: { headers?: Record<string, string>; dispatcher?: Dispatcher } = {},
): Promise<TimedResponse> {
  const response = await request(url, { headers: options.headers, dispatcher: options.dispatcher, reset: true });
  const headersAt = Date.now();
  const chunks: TimedChunk[] = [];
  const buffers: Buffer[] = [];
  for await (const chunk of response.body) {
    const buffer = chunk as Buffer;
    chunks.push({ at: Date.now(), bytes: buffer.length, text: buffer.toString('utf8') });
    buffers.push(buffer);
  }
  return { status: response.statusCode, headers: response.headers, headersAt, chunks, body: Buffer.concat(buffers) };
}

/** One server-sent event as the test app sends it, with the time the client read it. */
export interface ReceivedEvent {
  n: number;
  /** When the app sent the event (its clock; containers share the host's clock). */
  sentAt: number;
  receivedAt: number;
}

/** Parses the test app's SSE events out of timed chunks. */
export function parseEvents(chunks: readonly TimedChunk[]): ReceivedEvent[] {
  const events: ReceivedEvent[] = [];
  for (const chunk of chunks) {
    for (const match of chunk.text.matchAll(/^data: (.*)$/gm)) {
      const data = JSON.parse(match[1]!) as { n: number; at: number };
      events.push({ n: data.n, sentAt: data.at, receivedAt: chunk.at });
    }
  }
  return events;
}

/** Returns the addresses of Caddy's upstreams that have requests in flight. */
export async function busyUpstreams(adminUrl: string): Promise<string[]> {
  const response = await fetch(`${adminUrl}/reverse_proxy/upstreams`);
  const upstreams = (await response.json()) as Array<{ address: string; num_requests: number }>;
  return upstreams.filter((upstream) => upstream.num_requests > 0).map((upstream) => upstream.address);
}

/** A response read from a raw socket, with the informational (1xx) responses before it. */
export interface RawResponse {
  /** Status lines of 1xx responses, in order, such as `HTTP/1.1 100 Continue`. */
  informational: string[];
  status: number;
  /** Lower-case header names; repeated headers joined with `, `. */
  headers: Record<string, string>;
  body: Buffer;
  /** Milliseconds from sending the request head to reading the final response head. */
  elapsedMs: number;
}

export interface RawRequest {
  port: number;
  /** Request line and headers without the final empty line, joined by CRLF when given as lines. */
  head: string[];
  /** Body to send: at once, or after the first `100 Continue` when `waitForContinue` is set. */
  body?: Buffer;
  waitForContinue?: boolean;
  timeoutMs?: number;
  /** Source address of the connection, such as `127.0.0.2`; the system picks one when unset. */
  localAddress?: string;
}

/**
 * Sends a request over a plain TCP socket, for what fetch and undici do not send: `Expect:
 * 100-continue` with the body held until `100 Continue`, or a Content-Length without the body.
 * Reads one final response (Content-Length bodies only, or up to the close) and closes the socket.
 */
export function sendRaw(request: RawRequest): Promise<RawResponse> {
  const { port, body, waitForContinue = false, timeoutMs = 30_000 } = request;

  return new Promise<RawResponse>((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress: request.localAddress });
    const started = Date.now();
    const informational: string[] = [];
    let buffer = Buffer.alloc(0);
    let final: Omit<RawResponse, 'body'> | undefined;
    let bodySent = false;

    const timer = setTimeout(() => finish(new Error(`no response within ${timeoutMs} ms`)), timeoutMs);
    const finish = (error?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error !== undefined) reject(error);
      else if (final === undefined) reject(new Error('connection closed before a final response'));
      else resolve({ ...final, body: buffer });
    };
    const sendBody = (): void => {
      if (bodySent || body === undefined) return;
      bodySent = true;
      socket.write(body);
    };

    const parse = (): void => {
      while (final === undefined) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = buffer.subarray(0, end).toString('latin1').split('\r\n');
        buffer = buffer.subarray(end + 4);
        const status = Number(lines[0]!.split(' ')[1]);
        if (status < 200) {
          informational.push(lines[0]!);
          if (status === 100) sendBody();
          continue;
        }
        const headers: Record<string, string> = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          const name = line.slice(0, colon).trim().toLowerCase();
          const value = line.slice(colon + 1).trim();
          headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
        }
        final = { informational, status, headers, elapsedMs: Date.now() - started };
      }
      const length = Number(final.headers['content-length'] ?? Number.NaN);
      if (Number.isInteger(length) && buffer.length >= length) finish();
    };

    socket.on('connect', () => {
      socket.write(`${request.head.join('\r\n')}\r\n\r\n`);
      if (!waitForContinue) sendBody();
    });
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      parse();
    });
    socket.on('error', (error) => {
      // A server that responds early and closes may reset the connection while the body is sent.
      if (final !== undefined) finish();
      else finish(error);
    });
    socket.on('close', () => finish());
  });
}
