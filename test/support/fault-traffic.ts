/**
 * Client-side measurements for the fault-injection tests: bounded request loops that record every
 * outcome, summaries of what clients saw, and the one-line JSON summary each fault prints.
 */
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { request, type Dispatcher } from 'undici';

/** One request as the client saw it. */
export interface Outcome {
  /** Milliseconds since the loop started, when the request was sent. */
  at: number;
  durationMs: number;
  /** HTTP status, or 0 when the request failed without a response. */
  status: number;
  /** Error code or name when `status` is 0. */
  error?: string;
  retryAfter?: string;
  /** The test app's `containerId` when the body is one of its JSON echoes. */
  containerId?: string;
}

export interface TrafficOptions {
  /** Concurrent request loops. */
  concurrency: number;
  /** Pause between two requests of one loop, in ms. */
  intervalMs: number;
  /** Hard stop, in ms after start. */
  maxMs: number;
  /** Hard cap on requests per loop. Default 10,000. */
  maxRequestsPerLoop?: number;
  /** Per-request time limit, in ms. Default 30,000. */
  timeoutMs?: number;
  dispatcher?: Dispatcher;
}

export interface TrafficRun {
  /** Outcomes recorded so far. */
  readonly outcomes: Outcome[];
  /** Milliseconds since the loop started. */
  elapsed(): number;
  stop(): Promise<Outcome[]>;
}

/**
 * Sends one request and records its outcome; never rejects. `origin` is the time `at` counts
 * from. `fresh` (the default) closes the connection after the response, so a check never reuses
 * an idle keep-alive connection, which Caddy 2.6.2 closes on every config write. The loops of
 * `startTraffic` keep their connections, as most clients do.
 */
export async function probe(
  url: string,
  options: { dispatcher?: Dispatcher; timeoutMs?: number; origin?: number; method?: 'GET' | 'POST'; fresh?: boolean } = {},
): Promise<Outcome> {
  const origin = options.origin ?? Date.now();
  const timeoutMs = options.timeoutMs ?? 30_000;
  const sentAt = Date.now();
  try {
    const response = await request(url, {
      method: options.method ?? 'GET',
      dispatcher: options.dispatcher,
      reset: options.fresh !== false,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.body.text();
    const outcome: Outcome = { at: sentAt - origin, durationMs: Date.now() - sentAt, status: response.statusCode };
    const retryAfter = response.headers['retry-after'];
    if (typeof retryAfter === 'string') outcome.retryAfter = retryAfter;
    if (text.startsWith('{')) {
      try {
        const id = (JSON.parse(text) as { containerId?: unknown }).containerId;
        if (typeof id === 'string') outcome.containerId = id;
      } catch {
        // Not an echo of the test app.
      }
    }
    return outcome;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    let name = String(error);
    if (typeof code === 'string') name = code;
    else if (error instanceof Error) name = error.name;
    return { at: sentAt - origin, durationMs: Date.now() - sentAt, status: 0, error: name };
  }
}

/** Starts `concurrency` loops that GET `url` until `stop()` or `maxMs`, recording every outcome. */
export function startTraffic(url: string, options: TrafficOptions): TrafficRun {
  const origin = Date.now();
  const outcomes: Outcome[] = [];
  const limit = options.maxRequestsPerLoop ?? 10_000;
  let stopped = false;

  const loops = Array.from({ length: options.concurrency }, async () => {
    for (let i = 0; i < limit && !stopped && Date.now() - origin < options.maxMs; i++) {
      outcomes.push(await probe(url, { dispatcher: options.dispatcher, timeoutMs: options.timeoutMs, origin, fresh: false }));
      if (options.intervalMs > 0) await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    }
  });

  return {
    outcomes,
    elapsed: () => Date.now() - origin,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      return outcomes;
    },
  };
}

/** Counts of what clients saw. */
export interface OutcomeSummary {
  sent: number;
  succeeded: number;
  failed: number;
  /** Failure count per status; `0` is a request without a response. */
  failureStatuses: Record<string, number>;
  /** Error codes of requests without a response. */
  errors: Record<string, number>;
  /** Failed responses that carried `Retry-After`. */
  withRetryAfter: number;
  maxFailureMs: number;
  maxDurationMs: number;
  /** Time from the first to the last failure, 0 when there were none. */
  failureWindowMs: number;
}

export function summarize(outcomes: Outcome[], isSuccess: (o: Outcome) => boolean = (o) => o.status >= 200 && o.status < 400): OutcomeSummary {
  const failures = outcomes.filter((o) => !isSuccess(o));
  const failureStatuses: Record<string, number> = {};
  const errors: Record<string, number> = {};
  for (const failure of failures) {
    failureStatuses[failure.status] = (failureStatuses[failure.status] ?? 0) + 1;
    if (failure.error !== undefined) errors[failure.error] = (errors[failure.error] ?? 0) + 1;
  }
  const failureTimes = failures.map((o) => o.at);
  return {
    sent: outcomes.length,
    succeeded: outcomes.length - failures.length,
    failed: failures.length,
    failureStatuses,
    errors,
    withRetryAfter: failures.filter((o) => o.retryAfter !== undefined).length,
    maxFailureMs: Math.max(0, ...failures.map((o) => o.durationMs)),
    maxDurationMs: Math.max(0, ...outcomes.map((o) => o.durationMs)),
    failureWindowMs: failureTimes.length === 0 ? 0 : Math.max(...failureTimes) - Math.min(...failureTimes),
  };
}

/** Outcomes of requests sent in `[fromMs, toMs)` since the loop started. */
export function between(outcomes: Outcome[], fromMs: number, toMs: number): Outcome[] {
  return outcomes.filter((o) => o.at >= fromMs && o.at < toMs);
}

/** Milliseconds after `fromMs` at which the last failed request of `outcomes` ended; 0 without failures. */
export function lastFailureEnd(outcomes: Outcome[], fromMs: number): number {
  const ends = outcomes.filter((o) => o.status < 200 || o.status >= 400).map((o) => o.at + o.durationMs);
  return ends.length === 0 ? 0 : Math.max(0, Math.max(...ends) - fromMs);
}

const SUMMARY_FILE = path.resolve(import.meta.dirname, '../.tmp/fault-summaries.jsonl');

/**
 * Prints the one-line JSON summary of a fault (prefixed `FAULT_SUMMARY`) and appends it to
 * test/.tmp/fault-summaries.jsonl, from which docs/reliability.md is filled in.
 */
export async function reportFault(fault: string, fields: Record<string, unknown>): Promise<void> {
  const line = JSON.stringify({ fault, at: new Date().toISOString(), ...fields });
  console.log(`FAULT_SUMMARY ${line}`);
  await mkdir(path.dirname(SUMMARY_FILE), { recursive: true });
  await appendFile(SUMMARY_FILE, `${line}\n`);
}
