import { Agent, type Dispatcher } from 'undici';
import { AddressSyntaxError, type CaddyAdminEndpoint, parseCaddyAdmin } from '../config/addresses.js';
import { LumaError, SettingError } from '../errors.js';
import type { Logger } from '../log.js';
import type { UpstreamStatus } from './types.js';

/**
 * HTTP client of Caddy's admin API, over TCP or a unix socket.
 *
 * Facts about the admin API this client relies on (checked on Caddy 2.6.2, same in 2.10):
 * - Over TCP, Caddy rejects (403) a `Host` other than the listen address, or `localhost`,
 *   `127.0.0.1` or `[::1]` with its port. With `enforce_origin` it also needs a matching `Origin`.
 * - Over a unix socket, the only accepted `Host` is the empty one.
 * - Every write reloads the whole config. The admin listener itself is replaced on each reload,
 *   so a request arriving at that moment can be reset (ECONNRESET for 5 of 217 reads during 800
 *   back-to-back reloads on Caddy 2.6.2, measured on a 2-core machine). Requests therefore use a
 *   fresh connection each, and GET and PATCH, which are safe to repeat, are retried once.
 * - Errors come back as `{"error": "..."}`, also with status 500 for bad paths and rejected
 *   configs, so any status of 400 or more is a rejection.
 * - GET returns an ETag (as an HTTP trailer on 2.6.2) that writes accept in `If-Match`; a
 *   mismatch answers 412.
 */

export interface CaddyAdminOptions {
  /** `http://127.0.0.1:2019`, a unix socket path, `unix:/path` or Caddy's `unix//path`. */
  address: string;
  logger: Logger;
  /** Timeout of one admin call, including a config reload, in milliseconds. */
  timeoutMs?: number;
}

export interface WriteOptions {
  /** ETag from `read()`. Caddy rejects the write with 412 when the config changed since. */
  ifMatch?: string;
}

export interface ReadResult {
  value: unknown;
  etag: string | undefined;
}

/** Results of the probes of `detectFeatures()`. */
export interface CaddyFeatures {
  /**
   * `2.8-or-later` when the Caddyfile adapter accepts status codes after `handle_errors`
   * (added in Caddy 2.8; rejected by 2.6.2 and 2.7.6), `before-2.8` when it rejects them.
   */
  release: 'before-2.8' | '2.8-or-later' | 'unknown';
  /** Go version of the Caddy binary, from `go_info` on `/metrics`, for example `go1.19.8`. */
  goVersion: string | undefined;
  /** Whether GET responses carry an ETag that writes can send back in `If-Match`. */
  etag: boolean;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const RETRY_DELAY_MS = 100;

/** Errors raised before anything reached Caddy; every method may be sent again. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'UND_ERR_CONNECT_TIMEOUT']);
/** Connection closed mid-request; only idempotent methods may be sent again. */
const CLOSED_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** Probe for the Caddyfile adapter: status codes after `handle_errors` parse only on 2.8+. */
const STATUS_CODE_PROBE = ':1 {\n\thandle_errors 502 {\n\t\trespond "probe"\n\t}\n}\n';

interface RawResponse {
  status: number;
  text: string;
  etag: string | undefined;
}

export class CaddyAdmin {
  /** The admin endpoint as given, for logs and error messages. */
  readonly address: string;
  private readonly endpoint: CaddyAdminEndpoint;
  private readonly agent: Agent;
  private readonly log: Logger;
  private readonly timeoutMs: number;

  constructor(options: CaddyAdminOptions) {
    try {
      this.endpoint = parseCaddyAdmin(options.address);
    } catch (error) {
      if (error instanceof AddressSyntaxError) throw new SettingError('caddy admin address', options.address, error.message);
      throw error;
    }
    this.address = options.address;
    this.log = options.logger.child({ component: 'caddy-admin' });
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.agent = new Agent(this.endpoint.kind === 'unix' ? { connect: { socketPath: this.endpoint.path } } : {});
  }

  async get(path: string): Promise<unknown> {
    return (await this.read(path)).value;
  }

  /** Returns the value at `path` with its ETag. */
  async read(path: string): Promise<ReadResult> {
    const response = await this.send('GET', path);
    return { value: parseJson(response, 'GET', path), etag: response.etag };
  }

  /** Creates the value at `path`, with any missing parent objects; rejected when it exists. */
  async put(path: string, value: unknown, options: WriteOptions = {}): Promise<void> {
    await this.send('PUT', path, { json: value, ifMatch: options.ifMatch });
  }

  /** Appends to the array at `path`, or sets the value when `path` is not an array. */
  async post(path: string, value: unknown, options: WriteOptions = {}): Promise<void> {
    await this.send('POST', path, { json: value, ifMatch: options.ifMatch });
  }

  /** Replaces the existing value at `path`; rejected when it does not exist. */
  async patch(path: string, value: unknown, options: WriteOptions = {}): Promise<void> {
    await this.send('PATCH', path, { json: value, ifMatch: options.ifMatch });
  }

  async delete(path: string, options: WriteOptions = {}): Promise<void> {
    await this.send('DELETE', path, { ifMatch: options.ifMatch });
  }

  /** Returns Caddy's in-flight and failure counts per upstream dial address, over all servers. */
  async readUpstreams(): Promise<UpstreamStatus[]> {
    const path = '/reverse_proxy/upstreams';
    const value = await this.get(path);
    if (!Array.isArray(value)) throw unexpected(path, value);

    return value.map((entry: unknown) => {
      const item = entry as { address?: unknown; num_requests?: unknown; fails?: unknown } | null;
      if (typeof item?.address !== 'string' || typeof item.num_requests !== 'number') throw unexpected(path, entry);
      return { address: item.address, numRequests: item.num_requests, fails: typeof item.fails === 'number' ? item.fails : 0 };
    });
  }

  /**
   * Probes what this Caddy supports without changing its config. The admin API does not report
   * Caddy's own version (2.6.2 and 2.10 alike), so `release` comes from a Caddyfile parse.
   */
  async detectFeatures(): Promise<CaddyFeatures> {
    const adapt = await this.send('POST', '/adapt', { raw: STATUS_CODE_PROBE, contentType: 'text/caddyfile' }, [200, 400, 404]);
    let release: CaddyFeatures['release'] = 'unknown';
    if (adapt.status === 200) release = '2.8-or-later';
    else if (adapt.status === 400 && /handle_errors/.test(adapt.text)) release = 'before-2.8';

    const metrics = await this.send('GET', '/metrics', {}, [200, 404]);
    const goVersion = /^go_info\{version="([^"]+)"\}/m.exec(metrics.text)?.[1];

    const { etag } = await this.read('/config/');
    return { release, goVersion, etag: etag !== undefined };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async send(
    method: Dispatcher.HttpMethod,
    path: string,
    body: { json?: unknown; raw?: string; contentType?: string; ifMatch?: string } = {},
    acceptedStatuses?: number[],
  ): Promise<RawResponse> {
    const idempotent = method === 'GET' || method === 'PATCH';
    for (let attempt = 1; ; attempt++) {
      try {
        const response = await this.sendOnce(method, path, body);
        const accepted = acceptedStatuses?.includes(response.status) ?? response.status < 400;
        if (!accepted) throw rejection(method, path, response);
        return response;
      } catch (error) {
        if (error instanceof LumaError) throw error;
        const code = errorCode(error);
        const notSent = NOT_SENT_CODES.has(code) || syscall(error) === 'connect';
        const retry = attempt === 1 && (notSent || (idempotent && CLOSED_CODES.has(code)));
        if (!retry) {
          throw new LumaError('caddy_unavailable', `caddy admin API at ${this.address} is unreachable: ${method} ${path} failed: ${describe(error)}; check that Caddy runs and listens there`, {
            cause: error,
            details: { address: this.address, method, path, code },
          });
        }
        this.log.debug({ method, path, code }, 'retry caddy admin request after connection error');
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
      }
    }
  }

  private async sendOnce(
    method: Dispatcher.HttpMethod,
    path: string,
    body: { json?: unknown; raw?: string; contentType?: string; ifMatch?: string },
  ): Promise<RawResponse> {
    const headers: Record<string, string> = {};
    let origin: string;
    if (this.endpoint.kind === 'unix') {
      origin = 'http://localhost';
      headers.host = '';
    } else {
      origin = this.endpoint.url;
      headers.origin = this.endpoint.url;
    }
    let payload: string | undefined;
    if (body.json !== undefined) {
      payload = JSON.stringify(body.json);
      headers['content-type'] = 'application/json';
    } else if (body.raw !== undefined) {
      payload = body.raw;
      headers['content-type'] = body.contentType ?? 'text/plain';
    }
    if (body.ifMatch !== undefined) headers['if-match'] = body.ifMatch;

    const started = Date.now();
    const response = await this.agent.request({
      origin,
      path,
      method,
      headers,
      body: payload,
      reset: true,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await response.body.text();
    const etagHeader = response.headers.etag;
    const etag = typeof etagHeader === 'string' ? etagHeader : response.trailers.etag;
    this.log.debug({ method, path, status: response.statusCode, durationMs: Date.now() - started }, 'caddy admin request');
    return { status: response.statusCode, text, etag };
  }
}

/** Returns the admin API path of a config value, for example `configPath('apps', 'http')`. */
export function configPath(...segments: Array<string | number>): string {
  return `/config/${segments.map((segment) => encodeURIComponent(String(segment))).join('/')}`;
}

/** Returns the admin API path of the object with `@id` `id`, or of a value below it. */
export function idPath(id: string, ...segments: Array<string | number>): string {
  return `/id/${[id, ...segments].map((segment) => encodeURIComponent(String(segment))).join('/')}`;
}

/** Returns the HTTP status of a `caddy_rejected` error, or undefined for any other error. */
export function rejectedStatus(error: unknown): number | undefined {
  if (!(error instanceof LumaError) || error.code !== 'caddy_rejected') return undefined;
  const status = error.details.status;
  return typeof status === 'number' ? status : undefined;
}

function parseJson(response: RawResponse, method: string, path: string): unknown {
  if (response.text.trim() === '') return undefined;
  try {
    return JSON.parse(response.text) as unknown;
  } catch (error) {
    throw new LumaError('caddy_rejected', `caddy admin API returned invalid JSON for ${method} ${path}`, {
      cause: error,
      details: { method, path, status: response.status, body: response.text.slice(0, 200) },
    });
  }
}

function rejection(method: string, path: string, response: RawResponse): LumaError {
  let message = response.text.trim();
  try {
    const parsed = JSON.parse(response.text) as { error?: unknown };
    if (typeof parsed.error === 'string') message = parsed.error;
  } catch {
    // Not JSON: keep the raw text, which is what Caddy's plain-text errors contain.
  }
  return new LumaError('caddy_rejected', `caddy rejected ${method} ${path} with status ${response.status}: ${message}`, {
    details: { method, path, status: response.status, caddyError: message },
  });
}

function unexpected(path: string, value: unknown): LumaError {
  return new LumaError('caddy_rejected', `caddy admin API returned an unexpected value for ${path}`, {
    details: { path, value: JSON.stringify(value)?.slice(0, 200) },
  });
}

function errorCode(error: unknown): string {
  if (typeof error !== 'object' || error === null) return 'unknown';
  const { code, name, cause } = error as { code?: unknown; name?: unknown; cause?: unknown };
  if (typeof code === 'string') return code;
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout';
  if (cause !== undefined) return errorCode(cause);
  return 'unknown';
}

function syscall(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { syscall: name, cause } = error as { syscall?: unknown; cause?: unknown };
  if (typeof name === 'string') return name;
  return cause === undefined ? undefined : syscall(cause);
}

function describe(error: unknown): string {
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  return code === 'unknown' || message.includes(code) ? message : `${message} (${code})`;
}
