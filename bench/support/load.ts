/**
 * Closed-loop HTTP load generator on an undici Pool: `concurrency` workers, each with its own
 * keep-alive connection, send one request after another. Every run is bounded by a request
 * count and a duration, whichever ends first.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';

export interface LoadOptions {
  /** `http://host:port` of the server. */
  origin: string;
  /** Request path with query, the same for every request. */
  path: string;
  concurrency: number;
  /** Upper bound of the run time; workers stop sending after it. */
  durationMs: number;
  /** Upper bound of requests over all workers. */
  maxRequests: number;
  /** Pause of each worker after each response, for a paced load; 0 sends back to back. */
  pauseMs?: number;
  /** Time limit of one request, headers and body each. Default 30 s. */
  timeoutMs?: number;
  /** Called with every response, after its body was read. */
  onResponse?: (response: LoadResponse) => void;
}

export interface LoadResponse {
  status: number;
  body: Buffer;
  /** Wall-clock time the request was sent, in epoch milliseconds. */
  sentAt: number;
  /** Wall-clock time the response body was complete, in epoch milliseconds. */
  receivedAt: number;
  latencyMs: number;
}

export interface LoadResult {
  /** Requests sent, failed ones included. */
  requests: number;
  elapsedMs: number;
  /** Latency of each request that got a response, in milliseconds. */
  latenciesMs: number[];
  /** Responses by status code. */
  statuses: Map<number, number>;
  /** Requests without a response, by error code (such as `UND_ERR_SOCKET` or `ECONNRESET`). */
  errors: Map<string, number>;
}

export interface RunningLoad {
  /** Lets the workers finish their current request and resolves with the result. */
  stop(): Promise<LoadResult>;
  /** Resolves when the run ended by itself (duration or request count). */
  done: Promise<LoadResult>;
}

export function startLoad(options: LoadOptions): RunningLoad {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const pool = new Pool(options.origin, { connections: options.concurrency, pipelining: 1 });
  const result: LoadResult = { requests: 0, elapsedMs: 0, latenciesMs: [], statuses: new Map(), errors: new Map() };
  const startedAt = performance.now();
  const deadline = startedAt + options.durationMs;
  let stopped = false;

  const worker = async (): Promise<void> => {
    while (!stopped && result.requests < options.maxRequests && performance.now() < deadline) {
      result.requests += 1;
      const sentAt = Date.now();
      const sent = performance.now();
      try {
        const response = await pool.request({
          path: options.path,
          method: 'GET',
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
        const body = Buffer.from(await response.body.arrayBuffer());
        const latencyMs = performance.now() - sent;
        result.latenciesMs.push(latencyMs);
        increment(result.statuses, response.statusCode);
        options.onResponse?.({ status: response.statusCode, body, sentAt, receivedAt: Date.now(), latencyMs });
      } catch (error) {
        increment(result.errors, errorCode(error));
      }
      if (options.pauseMs !== undefined && options.pauseMs > 0) await sleep(options.pauseMs);
    }
  };

  const done = (async () => {
    await Promise.all(Array.from({ length: options.concurrency }, worker));
    result.elapsedMs = performance.now() - startedAt;
    await pool.destroy();
    return result;
  })();

  return {
    done,
    stop: () => {
      stopped = true;
      return done;
    },
  };
}

export function runLoad(options: LoadOptions): Promise<LoadResult> {
  return startLoad(options).done;
}

/** Requests that failed: no response, or a 5xx status. */
export function failedRequests(result: LoadResult): number {
  let failed = 0;
  for (const count of result.errors.values()) failed += count;
  for (const [status, count] of result.statuses) if (status >= 500) failed += count;
  return failed;
}

/** Describes the failures of a run, such as `3 (UND_ERR_SOCKET 2, 503 1)`, or `0`. */
export function describeFailures(result: LoadResult): string {
  const parts: string[] = [];
  for (const [code, count] of result.errors) parts.push(`${code} ${count}`);
  for (const [status, count] of result.statuses) if (status >= 500) parts.push(`${status} ${count}`);
  const total = failedRequests(result);
  return parts.length === 0 ? String(total) : `${total} (${parts.join(', ')})`;
}

/** Reads `containerId` from a response of the test app's echo route; undefined for other bodies. */
export function containerIdOf(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { containerId?: unknown };
    return typeof parsed.containerId === 'string' ? parsed.containerId : undefined;
  } catch {
    return undefined;
  }
}

function increment<K>(map: Map<K, number>, key: K): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  return error instanceof Error ? error.name : 'unknown';
}
