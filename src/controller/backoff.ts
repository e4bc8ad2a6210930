import type { Millis } from '../model.js';

/**
 * Exponential backoff after failed starts of one service: 1 s after the first failure, doubling
 * up to `maxMs`. A success or a spec change resets it.
 */
export class StartBackoff {
  private failures = 0;
  private retryAt = 0;

  constructor(
    private readonly baseMs: Millis = 1_000,
    private readonly maxMs: Millis = 60_000,
  ) {}

  recordFailure(now: number): Millis {
    this.failures += 1;
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** (this.failures - 1));
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
