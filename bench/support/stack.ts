/**
 * One Caddy and one Luma controller (a child process through tsx), started for a scenario with
 * the helpers of the integration tests, plus the REST API calls and log queries the scenarios use.
 */
import { rm } from 'node:fs/promises';
import { request } from 'undici';
import { startCaddy, type CaddyProcess } from '../../test/support/caddy.js';
import { startLuma, type LumaInstance } from '../../test/support/luma.js';
import { waitFor } from '../../test/support/ports.js';
import type { UpstreamMode } from '../../src/config/definitions.js';
import type { ServiceView } from '../../src/api/service-document.js';

export type { ServiceView };

export const UPSTREAM_MODES: readonly UpstreamMode[] = ['dns', 'admin'];

export interface Stack {
  caddy: CaddyProcess;
  luma: LumaInstance;
  mode: UpstreamMode;
  log: LumaLog;
  /** Error codes of API requests that were sent again after Caddy reset their connection. */
  apiRetries: string[];
  /** Stops Luma and Caddy and removes Luma's containers, network and data directory. */
  close(): Promise<void>;
}

export interface StackOptions {
  mode: UpstreamMode;
  /** Extra Luma flags; a later flag wins over an earlier one, so `--log-level=info` lowers the default debug. */
  args?: string[];
  /** Data directory with a prepared services.json; removed by close(). */
  dataDir?: string;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const caddy = await startCaddy();
  let luma: LumaInstance;
  try {
    luma = await startLuma({
      caddyAdminUrl: caddy.adminUrl,
      args: [`-upstream-mode=${options.mode}`, ...(options.args ?? [])],
      dataDir: options.dataDir,
    });
  } catch (error) {
    await caddy.stop();
    if (options.dataDir !== undefined) await rm(options.dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    caddy,
    luma,
    mode: options.mode,
    log: new LumaLog(luma),
    apiRetries: [],
    async close() {
      await luma.destroy();
      if (options.dataDir !== undefined) await rm(options.dataDir, { recursive: true, force: true });
      await caddy.stop();
    },
  };
}

/**
 * Sends `GET url` on a new connection, closed after the response. Every config write makes Caddy
 * 2.6.2 close idle keep-alive connections, so a reused connection could fail for reasons that
 * have nothing to do with the request.
 */
export async function getOnNewConnection(url: string): Promise<{ status: number; body: Buffer }> {
  const response = await request(url, { method: 'GET', reset: true });
  return { status: response.statusCode, body: Buffer.from(await response.body.arrayBuffer()) };
}

/** Errors of a connection that Caddy closed or reset, after which the request is sent again. */
const RETRIED_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const API_ATTEMPTS = 3;

/**
 * Calls Luma's REST API through Caddy on a new connection (see getOnNewConnection). A request
 * whose connection is reset is sent again, up to API_ATTEMPTS times, and counted in
 * `stack.apiRetries`. Caddy 2.6.2 can reset a new connection while it reloads its config.
 */
async function callApi(stack: Stack, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const response = await request(`${stack.luma.url}/api/services${path}`, {
        method,
        reset: true,
        headers: body === undefined ? {} : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.statusCode, text: await response.body.text(), attempt };
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (attempt >= API_ATTEMPTS || typeof code !== 'string' || !RETRIED_ERRORS.has(code)) throw error;
      stack.apiRetries.push(code);
    }
  }
}

/** Registers a service and returns its view. */
export async function createService(stack: Stack, body: Record<string, unknown>): Promise<ServiceView> {
  const { status, text, attempt } = await callApi(stack, 'POST', '', body);
  // A repeated POST finds the service that the first attempt created before its connection was reset.
  if (status === 409 && attempt > 1) return readService(stack, String(body.name));
  if (status !== 201) throw new Error(`create service failed: ${status} ${text}`);
  return JSON.parse(text) as ServiceView;
}

export async function readService(stack: Stack, name: string): Promise<ServiceView> {
  const { status, text } = await callApi(stack, 'GET', `/${name}`);
  if (status !== 200) throw new Error(`read service ${name} failed: ${status} ${text}`);
  return JSON.parse(text) as ServiceView;
}

/** Sends a JSON merge patch to a service and returns the updated view. */
export async function patchService(stack: Stack, name: string, patch: Record<string, unknown>): Promise<ServiceView> {
  const { status, text } = await callApi(stack, 'PATCH', `/${name}`, patch);
  if (status !== 200) throw new Error(`patch service ${name} failed: ${status} ${text}`);
  return JSON.parse(text) as ServiceView;
}

/** Deletes a service; resolves after its replicas were drained and removed. */
export async function deleteService(stack: Stack, name: string): Promise<void> {
  const { status, text, attempt } = await callApi(stack, 'DELETE', `/${name}`);
  if (status === 404 && attempt > 1) return;
  if (status !== 204) throw new Error(`delete service ${name} failed: ${status} ${text}`);
}

/** Polls the service until `check` returns a value, every `intervalMs`, for at most `timeoutMs`. */
export function waitForService<T>(
  stack: Stack,
  name: string,
  description: string,
  check: (view: ServiceView) => T | undefined,
  timeoutMs = 30_000,
  intervalMs = 20,
): Promise<T> {
  return waitFor(`${name}: ${description}`, async () => check(await readService(stack, name)), timeoutMs, intervalMs);
}

/** One pino line of the controller's output. `time` is epoch milliseconds. */
export interface LogEntry {
  time: number;
  msg: string;
  service?: string;
  [field: string]: unknown;
}

/**
 * Reads the controller's pino output. A mark is a position in the output, so a query can look
 * only at lines written after some action.
 */
export class LumaLog {
  constructor(private readonly luma: LumaInstance) {}

  mark(): number {
    return this.luma.output().length;
  }

  /** Entries written after `mark` with message `msg`, optionally of one service. */
  since(mark: number, msg: string, service?: string): LogEntry[] {
    const entries: LogEntry[] = [];
    for (const line of this.luma.output().slice(mark).split('\n')) {
      if (!line.startsWith('{') || !line.includes(msg)) continue;
      let entry: LogEntry;
      try {
        entry = JSON.parse(line) as LogEntry;
      } catch {
        continue;
      }
      if (entry.msg !== msg || (service !== undefined && entry.service !== service)) continue;
      entries.push(entry);
    }
    return entries;
  }

  /** Returns the first entry after `mark` with message `msg` (of `service`) that matches `where`. */
  first(mark: number, msg: string, service?: string, where: (entry: LogEntry) => boolean = () => true): LogEntry | undefined {
    return this.since(mark, msg, service).find(where);
  }
}
