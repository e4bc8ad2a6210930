import { LumaError } from '../errors.js';
import type { Millis } from '../model.js';

/** Tuning of the autoscaler. Every field is optional and falls back to DEFAULT_AUTOSCALER_OPTIONS. */
export interface AutoscalerOptions {
  /** Window of the average that drives steady state and scale-down. Default 60 s, as in Knative. */
  stableWindowMs?: Millis;
  /** Window of the average that can start panic mode. Default 6 s, 10% of the stable window as in Knative. */
  panicWindowMs?: Millis;
  /**
   * Window of the sustained level: the lowest of its samples (when it contains at least two)
   * enters the panic signal at once. A load step is then acted on about this long after it
   * starts, instead of when the panic-window average catches up. Default 1 s.
   */
  stepWindowMs?: Millis;
  /**
   * Panic mode starts when the panic signal needs at least this many times the ready replicas.
   * Default 2, Knative's 200%. Must be greater than 1.
   */
  panicThreshold?: number;
  /**
   * A lower replica count takes effect only after no decision in this period asked for more.
   * Default 30 s; 0 disables the delay.
   */
  scaleDownDelayMs?: Millis;
  /** Granularity of the sample buckets. Default 250 ms, the fastest expected sampling tick. */
  bucketMs?: Millis;
}

export type ResolvedAutoscalerOptions = Required<AutoscalerOptions>;

export const DEFAULT_AUTOSCALER_OPTIONS: ResolvedAutoscalerOptions = {
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  stepWindowMs: 1_000,
  panicThreshold: 2,
  scaleDownDelayMs: 30_000,
  bucketMs: 250,
};

/** Upper bound on buckets per service (stable window / bucket size), which bounds memory at ~320 KB. */
const MAX_BUCKETS = 10_000;

/** Fills in defaults and checks the options. Throws LumaError `invalid_setting` on a bad value. */
export function resolveAutoscalerOptions(options: AutoscalerOptions): ResolvedAutoscalerOptions {
  const resolved: ResolvedAutoscalerOptions = { ...DEFAULT_AUTOSCALER_OPTIONS };
  const entries = Object.entries(options) as Array<[keyof AutoscalerOptions, number | undefined]>;
  for (const [key, value] of entries) {
    if (value !== undefined) resolved[key] = value;
  }

  const { stableWindowMs, panicWindowMs, stepWindowMs, bucketMs } = resolved;
  check('bucketMs', bucketMs, bucketMs > 0, 'must be greater than 0');
  check('stepWindowMs', stepWindowMs, stepWindowMs >= bucketMs, `must be at least bucketMs (${bucketMs})`);
  check(
    'panicWindowMs',
    panicWindowMs,
    panicWindowMs >= stepWindowMs,
    `must be at least stepWindowMs (${stepWindowMs})`,
  );
  check(
    'stableWindowMs',
    stableWindowMs,
    stableWindowMs >= panicWindowMs,
    `must be at least panicWindowMs (${panicWindowMs})`,
  );
  check(
    'stableWindowMs',
    stableWindowMs,
    stableWindowMs / bucketMs <= MAX_BUCKETS,
    `must be at most ${MAX_BUCKETS} times bucketMs (${bucketMs}); raise bucketMs for a longer window`,
  );
  check('panicThreshold', resolved.panicThreshold, resolved.panicThreshold > 1, 'must be greater than 1');
  check('scaleDownDelayMs', resolved.scaleDownDelayMs, resolved.scaleDownDelayMs >= 0, 'must be 0 or more');
  return resolved;
}

function check(option: keyof AutoscalerOptions, value: number, valid: boolean, rule: string): void {
  if (Number.isFinite(value) && valid) return;
  throw new LumaError('invalid_setting', `invalid autoscaler option ${option} ${value}: ${rule}`, {
    details: { option, value },
  });
}
