import PQueue from 'p-queue';
import { dockerFailure } from './errors.js';

/**
 * Runs Docker API calls with a global cap on calls in flight, a time limit per call, and FIFO
 * order per container, so that a stop never overtakes the start before it.
 */
export class OperationQueue {
  private readonly queue: PQueue;
  private readonly timeoutMs: number;
  /** Tail of the last operation queued per key; removed when it settles and nothing follows. */
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(options: { concurrency: number; timeoutMs: number }) {
    this.queue = new PQueue({ concurrency: options.concurrency });
    this.timeoutMs = options.timeoutMs;
  }

  /**
   * Runs `call` when a slot is free. `call` gets a signal that aborts after the time limit and
   * should pass it to dockerode so the request is cancelled. The returned promise rejects with
   * `docker_unavailable` at the time limit even when `call` ignores the signal (some dockerode
   * 4.0 methods, such as image and network inspect, do not forward it). Other errors pass
   * through unchanged.
   */
  run<T>(operation: string, call: (signal: AbortSignal) => Promise<T>, timeoutMs = this.timeoutMs): Promise<T> {
    return this.queue.add(
      () =>
        new Promise<T>((resolve, reject) => {
          const controller = new AbortController();
          const timer = setTimeout(() => {
            const timeout = new Error(`no reply within ${timeoutMs} ms`);
            controller.abort(timeout);
            reject(dockerFailure(operation, timeout, { timeoutMs }));
          }, timeoutMs);

          call(controller.signal)
            .then(resolve, reject)
            .finally(() => clearTimeout(timer));
        }),
    );
  }

  /** Like `run`, but starts only after every earlier operation on `key` has settled. */
  runFor<T>(key: string, operation: string, call: (signal: AbortSignal) => Promise<T>, timeoutMs?: number): Promise<T> {
    const previous = this.chains.get(key) ?? Promise.resolve();
    const current = previous.then(() => this.run(operation, call, timeoutMs));
    const tail = current.then(
      () => undefined,
      () => undefined,
    );
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return current;
  }

  /** Number of calls running or waiting for a slot. */
  get pending(): number {
    return this.queue.size + this.queue.pending;
  }
}
