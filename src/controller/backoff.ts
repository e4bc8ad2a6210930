import type { Millis } from '../model.js';

/**
 * Exponential backoff after failures of one service: `baseMs` after the first failure that is
 * not free, doubling up to `maxMs`. The first `freeFailures` failures in a row cost no delay.
 * The owner decides when a run of failures ends and calls `reset()`.
 */
export class StartBackoff {
  private failures = 0;
  private retryAt = 0;

  constructor(
    private readonly baseMs: Millis = 1_000,
    private readonly maxMs: Millis = 60_000,
    private readonly freeFailures = 0,
  ) {}

  /** Counts a failure and returns the delay before the next try. */
  recordFailure(now: number): Millis {
    this.failures += 1;
    const paid = this.failures - this.freeFailures;
    const delay = paid <= 0 ? 0 : Math.min(this.maxMs, this.baseMs * 2 ** (paid - 1));
    this.retryAt = now + delay;
    return delay;
  }

  reset(): void {
    this.failures = 0;
    this.retryAt = 0;
  }

  /** Milliseconds until the next start may be tried; 0 when not backing off. */
  remaining(now: number): Millis {
    return Math.max(0, this.retryAt - now);
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  get retryAtTime(): number | null {
    return this.retryAt > 0 ? this.retryAt : null;
  }
}
