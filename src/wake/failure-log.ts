import type { Logger } from '../log.js';
import { isLumaError, type ErrorCode } from '../errors.js';
import { statusForWakeError } from './replies.js';

/**
 * Rate limit for repeated log lines. Many held requests of one service usually fail with the
 * same error at the same moment (the start they share failed), and one line per key and
 * interval is enough to report it.
 */
export class RepeatLimiter {
  private readonly entries = new Map<string, { loggedAt: number; suppressed: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Returns the number of occurrences suppressed since the last logged one when `key` may be
   * logged now, or undefined when this occurrence should be suppressed.
   */
  admit(key: string): number | undefined {
    const now = this.now();
    const entry = this.entries.get(key);
    if (entry !== undefined && now - entry.loggedAt < this.intervalMs) {
      entry.suppressed += 1;
      return undefined;
    }

    this.entries.set(key, { loggedAt: now, suppressed: 0 });
    this.prune(now);
    return entry?.suppressed ?? 0;
  }

  /** Drops keys that have no suppressed count to report and whose interval has passed. */
  private prune(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.suppressed === 0 && now - entry.loggedAt >= this.intervalMs) this.entries.delete(key);
    }
  }
}

/** Error codes of `ReplicaProvider.acquire` that the provider logs itself. */
const LOGGED_BY_PROVIDER: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'image_not_found',
  'image_pull_failed',
  'replica_exited',
  'startup_timeout',
  'wake_backoff',
  'service_not_found',
  'service_deleted',
  'shutting_down',
  'docker_unavailable',
]);

/** Warn-level failure logging with repeats per key and interval moved to debug and counted. */
export class FailureLog {
  private readonly repeats: RepeatLimiter;

  constructor(
    private readonly logger: Logger,
    intervalMs: number,
  ) {
    this.repeats = new RepeatLimiter(intervalMs);
  }

  /**
   * Logs a failed wait for a replica of `service`, keyed by service and error code. The
   * controller logs failed starts and their backoff where it handles them, so they go to debug
   * here. The wake-up handler's own failures (a full queue, an unexpected error) go to warn.
   */
  wakeFailed(service: string, error: unknown): void {
    const code = isLumaError(error) ? error.code : 'internal';
    const fields = { service, code, status: statusForWakeError(error), err: error };
    if (isLumaError(error) && LOGGED_BY_PROVIDER.has(error.code)) {
      this.logger.debug(fields, 'wake failed');
      return;
    }
    this.warn(`${service}:${code}`, fields, 'wake failed');
  }

  /** Logs at warn, or at debug when `key` was logged within the interval; `suppressed` counts those. */
  warn(key: string, fields: Record<string, unknown>, message: string): void {
    const suppressed = this.repeats.admit(key);
    if (suppressed === undefined) {
      this.logger.debug(fields, message);
      return;
    }
    this.logger.warn(suppressed > 0 ? { ...fields, suppressed } : fields, message);
  }
}
