import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { LumaError } from '../errors.js';
import type { HealthCheck } from '../model.js';

/** Time between the starts of two probes; probes that take longer are followed at once. */
const DEFAULT_INTERVAL_MS = 25;
/** Slowest allowed interval: a replica is seen ready at most this long after it can serve HTTP. */
const MAX_INTERVAL_MS = 50;
/** Time limit of one probe without a health check. */
const DEFAULT_PROBE_TIMEOUT_MS = 1_000;
/** Minimum time between two `hasExited` calls, which usually inspect the container. */
const DEFAULT_EXIT_CHECK_INTERVAL_MS = 100;

export interface ReadinessOptions {
  /** `ip:port` of the replica; IPv6 addresses in brackets. */
  address: string;
  /** When set, ready means 2xx on `healthCheck.path`; each probe times out after `healthCheck.timeoutMs`. */
  healthCheck?: HealthCheck;
  /** Total time to wait for readiness. */
  timeoutMs: number;
  /** Aborts the wait; the promise then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Returns the exit of the replica's container, or undefined while it runs. */
  hasExited: () => Promise<{ exitCode: number | null } | undefined> | { exitCode: number | null } | undefined;
  /** Time between probe starts, 1-50 ms. Default 25 ms. */
  intervalMs?: number;
  /** Minimum time between `hasExited` calls. Default 100 ms. */
  exitCheckIntervalMs?: number;
}

export interface ReadinessResult {
  /** Probes sent, the successful one included. */
  attempts: number;
  /** Time from the call until the successful probe returned its status. */
  elapsedMs: number;
  /** Duration of the successful probe. */
  probeMs: number;
  /** Status of the successful probe. */
  status: number;
}

type ProbeOutcome = { status: number } | { failure: string; timedOut: boolean };

/**
 * Polls a replica over HTTP until it is ready: the first probe goes out at once, then one every
 * `intervalMs`. Without a health check, any status below 500 on `/` counts (404 included);
 * with one, only 2xx on its path. A 5xx, a refused connection, and a connection that never
 * responds (each probe has a time limit) all mean "not ready yet". Every probe uses a fresh
 * connection that is closed afterwards, so probes leave no idle connections in the app.
 *
 * `hasExited` is polled next to the probes, every `exitCheckIntervalMs`, so an exit is seen even
 * while a probe waits on an address that vanished with the container.
 *
 * Resolves with the number of probes and the measured times. Rejects with `replica_exited`
 * (with `exitCode`) when `hasExited` reports an exit, with the error of `hasExited` when it
 * throws, with `startup_timeout` after `timeoutMs`, and with `signal.reason` when `signal` aborts.
 */
export async function probeUntilReady(options: ReadinessOptions): Promise<ReadinessResult> {
  const startedAt = Date.now();
  const deadline = startedAt + options.timeoutMs;
  const intervalMs = Math.min(Math.max(options.intervalMs ?? DEFAULT_INTERVAL_MS, 1), MAX_INTERVAL_MS);
  const path = options.healthCheck?.path ?? '/';
  const probeTimeoutMs = options.healthCheck?.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;

  options.signal?.throwIfAborted();
  // Aborted by the caller's signal (with its reason), by an exit (with replica_exited), or when done.
  const stop = new AbortController();
  const forwardAbort = () => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', forwardAbort, { once: true });
  watchExit(options, stop).catch((error: unknown) => stop.abort(error));

  const clients = new Set<Client>();
  let attempts = 0;
  let lastFailure = 'no probe sent';

  try {
    for (;;) {
      attempts += 1;
      const attemptStartedAt = Date.now();
      const timeoutMs = Math.max(1, Math.min(probeTimeoutMs, deadline - attemptStartedAt));
      const outcome = await probe(clients, options.address, path, timeoutMs, stop.signal);
      const now = Date.now();

      if ('status' in outcome && isReady(outcome.status, options.healthCheck !== undefined)) {
        return { attempts, elapsedMs: now - startedAt, probeMs: now - attemptStartedAt, status: outcome.status };
      }
      // A probe cut short by the deadline is less informative than the failure before it.
      if ('status' in outcome) lastFailure = `status ${outcome.status}`;
      else if (timeoutMs === probeTimeoutMs || attempts === 1 || !outcome.timedOut) lastFailure = outcome.failure;

      const waitMs = Math.min(attemptStartedAt + intervalMs, deadline) - now;
      if (waitMs > 0) await sleepOrAbort(waitMs, stop.signal);

      if (Date.now() >= deadline) {
        // An exit explains more than a timeout, so check once more before reporting one.
        const exit = await options.hasExited();
        if (exit !== undefined) throw exitedError(options.address, exit.exitCode);
        throw new LumaError(
          'startup_timeout',
          `replica at ${options.address} did not become ready within ${options.timeoutMs} ms (${attempts} probes of GET ${path}, last: ${lastFailure})`,
          { details: { address: options.address, path, timeoutMs: options.timeoutMs, attempts, lastFailure } },
        );
      }
    }
  } finally {
    options.signal?.removeEventListener('abort', forwardAbort);
    if (!stop.signal.aborted) stop.abort(new Error('readiness wait ended'));
    // Cuts the bodies of successful probes that are still being drained.
    await Promise.all([...clients].map((client) => client.destroy().catch(() => undefined)));
  }
}

/** Calls `hasExited` every `exitCheckIntervalMs` until `stop` aborts; aborts `stop` on an exit. */
async function watchExit(options: ReadinessOptions, stop: AbortController): Promise<void> {
  const intervalMs = options.exitCheckIntervalMs ?? DEFAULT_EXIT_CHECK_INTERVAL_MS;
  while (!stop.signal.aborted) {
    const exit = await options.hasExited();
    if (stop.signal.aborted) return;
    if (exit !== undefined) {
      stop.abort(exitedError(options.address, exit.exitCode));
      return;
    }
    await sleep(intervalMs, undefined, { signal: stop.signal }).catch(() => undefined);
  }
}

function exitedError(address: string, exitCode: number | null): LumaError {
  const code = exitCode === null ? 'an unknown code' : `code ${exitCode}`;
  return new LumaError('replica_exited', `replica at ${address} exited with ${code} before it responded to HTTP`, {
    details: { address, exitCode },
  });
}

/** `probeUntilReady` without the result, matching the controller's `ReadinessProbe` type. */
export async function waitUntilReady(options: ReadinessOptions): Promise<void> {
  await probeUntilReady(options);
}

function isReady(status: number, hasHealthCheck: boolean): boolean {
  return hasHealthCheck ? status >= 200 && status < 300 : status < 500;
}

/**
 * Sends one GET with `Connection: close` on a client of its own, so a probe stuck in connect
 * cannot delay the next one. Resolves with the status, or with why the probe failed.
 */
async function probe(clients: Set<Client>, address: string, path: string, timeoutMs: number, outer: AbortSignal): Promise<ProbeOutcome> {
  outer.throwIfAborted();
  const client = new Client(`http://${address}`, { connect: { timeout: timeoutMs } });
  clients.add(client);
  const release = () => {
    clients.delete(client);
    client.destroy().catch(() => undefined);
  };

  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new Error(`no response within ${timeoutMs} ms`));
  }, timeoutMs);
  const forwardAbort = () => controller.abort(outer.reason);
  outer.addEventListener('abort', forwardAbort, { once: true });

  const request = client.request({
    path,
    method: 'GET',
    headers: { 'user-agent': 'luma-readiness-probe' },
    reset: true,
    signal: controller.signal,
  });
  // Rejections after the race below was decided are expected and carry no news.
  request.catch(() => undefined);

  try {
    // undici 7 does not reject a request aborted during connect until the connect ends, so
    // the abort is raced here instead.
    const response = await untilAborted(request, controller.signal);
    // Only the status counts. The body is drained in the background (so the app gets a clean
    // close), and the end of the wait cuts bodies that are still running.
    response.body
      .dump({ limit: 64 * 1024 })
      .catch(() => undefined)
      .finally(release);
    return { status: response.statusCode };
  } catch (error) {
    release();
    if (outer.aborted) throw outer.reason;
    if (timedOut) return { failure: `no response within ${timeoutMs} ms`, timedOut: true };
    return { failure: describeProbeError(error), timedOut: false };
  } finally {
    clearTimeout(timer);
    outer.removeEventListener('abort', forwardAbort);
  }
}

/** Settles like `promise`, or rejects with `signal.reason` as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function describeProbeError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
}

async function sleepOrAbort(ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw error;
  }
}
