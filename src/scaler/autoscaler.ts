import { LumaError } from '../errors.js';
import type { Millis, ServiceSpec } from '../model.js';
import {
  resolveAutoscalerOptions,
  type AutoscalerOptions,
  type ResolvedAutoscalerOptions,
} from './options.js';
import { describeNeed, formatReplicas, formatSeconds, type Signal } from './reason.js';
import type {
  ConcurrencySample,
  ScalingDecision,
  ScalingInput,
  ScalingOutcome,
  ScalingWindow,
} from './types.js';
import { ConcurrencyWindow, SlidingMaximum } from './window.js';

export type * from './types.js';

/** Share of a hard per-replica limit used as the target, as Knative's default of 70%. */
const HARD_LIMIT_UTILIZATION = 0.7;

/**
 * Returns the target concurrent requests per replica: the service's `concurrency` override or
 * the global `-scale-threshold`. With a hard limit (`maxConcurrency`) the target is at most 70%
 * of it. Caddy marks an upstream unavailable once it has `max_requests` in flight, so a
 * replica's count stops at the limit, and a target at the limit could never show overload.
 */
export function targetConcurrency(
  spec: Pick<ServiceSpec, 'concurrency' | 'maxConcurrency'>,
  scaleThreshold: number,
): number {
  const target = spec.concurrency ?? scaleThreshold;
  if (spec.maxConcurrency === undefined) return target;
  return Math.min(target, spec.maxConcurrency * HARD_LIMIT_UTILIZATION);
}

interface ServiceScaling {
  window: ConcurrencyWindow;
  /** Recommendations of the scale-down delay period, capped at maxReplicas. */
  recommendations: SlidingMaximum;
  /** Panic counts of the last stable window, capped at maxReplicas x panicThreshold. */
  panicPeaks: SlidingMaximum;
  /** Newest timestamp passed to record() or decide(). */
  latestAt: Millis;
  /** Desired replicas of the last decision. */
  desired?: number;
  /** Last decision that met the panic condition. Panic mode lasts a stable window past it. */
  lastOverloadAt?: Millis;
}

/** The two signals of one decision and the replica counts they need. */
interface Signals {
  stable: Signal;
  stableCount: number;
  panic: Signal;
  panicCount: number;
}

/**
 * Decides replica counts from concurrency samples, with a stable and a panic window as in
 * Knative's autoscaler.
 *
 * - Signals: the stable signal is the stable-window average. The panic signal is the larger of
 *   the panic-window average and the lowest sample of the step window (when that contains at
 *   least two samples). A load step therefore counts in full about one step window after it
 *   starts, while a single spike counts only through the average. A signal needs
 *   ceil(signal / target) replicas: the stable count and the panic count.
 * - Panic mode starts when the panic count is at least panicThreshold times the ready replicas.
 *   With 1 ready replica and the default threshold of 2, any load over the target starts it. It
 *   sets desired to the largest of the panic count, the stable count and the previous decision,
 *   so it never scales down, and it ends once a stable window passes without the condition.
 * - Stable mode sets desired to the stable count, raised to floor(peak / panicThreshold) + 1
 *   where peak is the largest panic count of the last stable window. Fewer replicas would have
 *   met the panic condition, so bursts that recur within a stable window would scale the service
 *   down and at once up again.
 * - Scale-down delay: a count below the current one takes effect only once no decision in the
 *   delay asked for more. Scale-up is immediate.
 * - Bounds: the result is raised to minReplicas, and to 1 while the service has ready replicas,
 *   then capped at maxReplicas. Scaling to zero is the inactivity timeout's decision, because a
 *   minute without concurrency is not a minute without requests.
 * - Without ready replicas the decision is 1 while the wake-up handler holds requests for a cold
 *   start, else 0, each raised to minReplicas. Waking a service is the wake-up handler's job.
 * - Without a sample in the panic window the scaler keeps the previous count, because missing
 *   data is not zero load.
 *
 * Averages use only the samples present, so a service that has just woken is judged on its
 * first samples instead of on a window padded with zeros. Memory per service is fixed by the
 * stable window over the bucket size. Timestamps must come from a monotonic clock. A timestamp
 * more than one bucket before the newest one seen is taken as a clock jump backwards and
 * discards the service's history.
 */
export class Autoscaler {
  readonly options: ResolvedAutoscalerOptions;
  private readonly services = new Map<string, ServiceScaling>();

  constructor(options: AutoscalerOptions = {}) {
    this.options = resolveAutoscalerOptions(options);
  }

  /** Adds one concurrency sample of a service. Throws LumaError `invalid_input` on a bad value. */
  record(service: string, sample: ConcurrencySample): void {
    const { at, concurrency } = sample;
    requireNumber('at', at, Number.isFinite(at), 'must be a finite number of milliseconds');
    requireNumber('concurrency', concurrency, Number.isFinite(concurrency) && concurrency >= 0, 'must be 0 or more');

    const state = this.stateOf(service);
    this.advanceClock(state, at);
    state.window.record(at, concurrency);
  }

  /**
   * Decides the desired replicas of a service at `input.at`, from the samples recorded so far.
   * Throws LumaError `invalid_input` on a bad value.
   */
  decide(service: string, input: ScalingInput): ScalingOutcome {
    validateInput(input);
    const state = this.stateOf(service);
    this.advanceClock(state, input.at);

    const previous = state.desired ?? input.readyReplicas;
    const decision = this.evaluate(state, input, previous);
    state.desired = decision.desired;
    return { ...decision, previous, changed: decision.desired !== previous };
  }

  /** Drops a service's samples and state. Call it when the service sleeps or is deleted. */
  forget(service: string): void {
    this.services.delete(service);
  }

  private evaluate(state: ServiceScaling, input: ScalingInput, previous: number): ScalingDecision {
    const { at, maxReplicas } = input;
    const { panicWindowMs, panicThreshold, scaleDownDelayMs } = this.options;

    if (input.readyReplicas === 0) return decideWithoutReadyReplicas(input);

    if (state.window.stats(at, panicWindowMs).samples === 0) {
      const window = this.inPanicMode(state, at) ? 'panic' : 'stable';
      const missing = `no concurrency samples in the last ${formatSeconds(panicWindowMs)}`;
      return applyBounds(previous, `${missing}; keeping ${formatReplicas(previous)}`, window, input);
    }

    const signals = this.measure(state, at, input.target);
    const overloaded = signals.panicCount >= panicThreshold * Math.max(input.readyReplicas, 1);
    if (overloaded) state.lastOverloadAt = at;
    // Counts above maxReplicas x threshold change nothing once capped, and the cap bounds the deque.
    state.panicPeaks.record(at, Math.min(signals.panicCount, Math.ceil(panicThreshold * maxReplicas)));

    const panicking = this.inPanicMode(state, at);
    const recommendation = panicking
      ? this.recommendInPanic(state, input, signals, overloaded, previous)
      : this.recommendStable(state, input, signals);
    let { count, reason } = recommendation;

    // The delay compares capped counts, so a lowered maxReplicas takes effect at once.
    state.recommendations.record(at, Math.min(count, maxReplicas));
    const delayed = Math.max(count, state.recommendations.current(at) ?? count);
    if (delayed > count) {
      reason += `; scale-down delay of ${formatSeconds(scaleDownDelayMs)} keeps ${formatReplicas(delayed)}`;
      count = delayed;
    }

    return applyBounds(count, reason, panicking ? 'panic' : 'stable', input);
  }

  private measure(state: ServiceScaling, at: Millis, target: number): Signals {
    const { stableWindowMs, panicWindowMs, stepWindowMs } = this.options;
    const stableAverage = state.window.stats(at, stableWindowMs).average;
    const panicAverage = state.window.stats(at, panicWindowMs).average;
    const step = state.window.stats(at, stepWindowMs);
    const sustained = step.samples >= 2 ? step.minimum : 0;

    const stable: Signal = { kind: 'average', concurrency: stableAverage, windowMs: stableWindowMs };
    const panic: Signal =
      sustained > panicAverage
        ? { kind: 'sustained', concurrency: sustained, windowMs: stepWindowMs }
        : { kind: 'average', concurrency: panicAverage, windowMs: panicWindowMs };
    return {
      stable,
      stableCount: Math.ceil(stable.concurrency / target),
      panic,
      panicCount: Math.ceil(panic.concurrency / target),
    };
  }

  private recommendInPanic(
    state: ServiceScaling,
    input: ScalingInput,
    signals: Signals,
    overloaded: boolean,
    previous: number,
  ): { count: number; reason: string } {
    const { panic, panicCount, stableCount } = signals;
    const count = Math.max(panicCount, stableCount, previous);

    let reason = describeNeed(panic, panicCount, input.target);
    if (overloaded) {
      const ready = formatReplicas(input.readyReplicas, 'ready');
      reason += `, at least ${this.options.panicThreshold}x the ${ready}`;
    }
    reason += '; panic mode';
    if (count > panicCount) {
      const remainingMs = this.options.stableWindowMs - (input.at - (state.lastOverloadAt ?? input.at));
      reason += ` keeps ${formatReplicas(count)} for at least ${formatSeconds(remainingMs)} more`;
    }
    return { count, reason };
  }

  private recommendStable(
    state: ServiceScaling,
    input: ScalingInput,
    signals: Signals,
  ): { count: number; reason: string } {
    const { stableWindowMs, panicThreshold } = this.options;
    const reason = describeNeed(signals.stable, signals.stableCount, input.target);

    const peak = state.panicPeaks.current(input.at) ?? 0;
    const burstCount = peak > 0 ? Math.floor(peak / panicThreshold) + 1 : 0;
    if (burstCount <= signals.stableCount) return { count: signals.stableCount, reason };

    const bursts = `bursts that needed ${formatReplicas(peak)} in the last ${formatSeconds(stableWindowMs)}`;
    return { count: burstCount, reason: `${reason}; ${bursts} keep ${formatReplicas(burstCount)}` };
  }

  /** Returns whether panic mode lasts at `at`: less than a stable window since the last overload. */
  private inPanicMode(state: ServiceScaling, at: Millis): boolean {
    if (state.lastOverloadAt === undefined) return false;
    return at - state.lastOverloadAt < this.options.stableWindowMs;
  }

  private stateOf(service: string): ServiceScaling {
    let state = this.services.get(service);
    if (state === undefined) {
      state = {
        window: new ConcurrencyWindow(this.options.stableWindowMs, this.options.bucketMs),
        recommendations: new SlidingMaximum(this.options.scaleDownDelayMs),
        panicPeaks: new SlidingMaximum(this.options.stableWindowMs),
        latestAt: Number.NEGATIVE_INFINITY,
      };
      this.services.set(service, state);
    }
    return state;
  }

  /**
   * Tracks the newest timestamp. A jump backwards by more than one bucket discards the samples,
   * panic mode, the panic peaks and the scale-down delay, which all lie in the new clock's
   * future. The last decision is kept and restarts the scale-down delay, so the count cannot
   * drop at once.
   */
  private advanceClock(state: ServiceScaling, at: Millis): void {
    if (at >= state.latestAt - this.options.bucketMs) {
      state.latestAt = Math.max(state.latestAt, at);
      return;
    }

    state.window.clear();
    state.recommendations.clear();
    state.panicPeaks.clear();
    state.lastOverloadAt = undefined;
    if (state.desired !== undefined) state.recommendations.record(at, state.desired);
    state.latestAt = at;
  }
}

/**
 * Decides for a service without ready replicas: it sleeps, or a cold start is under way. The
 * held requests need the 1 replica that the wake-up handler starts, and the load they bring is
 * judged once they are replayed. Without held requests only minReplicas can wake the service.
 */
function decideWithoutReadyReplicas(input: ScalingInput): ScalingDecision {
  const queued = input.queuedRequests ?? 0;
  if (queued === 0) return applyBounds(0, 'no ready replica and no held request', 'stable', input);

  const requests = queued === 1 ? 'request' : 'requests';
  const reason = `no ready replica; ${queued} ${requests} held for a cold start need 1 replica`;
  return applyBounds(1, reason, 'stable', input);
}

/**
 * Raises a count to minReplicas, and to 1 while the service has ready replicas, then caps it at
 * maxReplicas. Each bound that changed the count is added to the reason.
 */
function applyBounds(
  count: number,
  reason: string,
  window: ScalingWindow,
  input: ScalingInput,
): ScalingDecision {
  const { readyReplicas, minReplicas, maxReplicas } = input;
  let desired = count;

  if (desired < minReplicas) {
    desired = minReplicas;
    reason += `; raised to the minimum of ${minReplicas}`;
  }
  if (desired < 1 && readyReplicas > 0) {
    desired = 1;
    reason += '; raised to 1 while replicas are ready, because the inactivity timeout decides on zero';
  }
  if (desired > maxReplicas) {
    desired = maxReplicas;
    reason += `; capped at the maximum of ${maxReplicas}`;
  }

  return { desired, reason, window };
}

function validateInput(input: ScalingInput): void {
  const { at, readyReplicas, minReplicas, maxReplicas, target } = input;
  const queued = input.queuedRequests ?? 0;
  const count = 'must be a whole number, 0 or more';
  requireNumber('at', at, Number.isFinite(at), 'must be a finite number of milliseconds');
  requireNumber('readyReplicas', readyReplicas, Number.isInteger(readyReplicas) && readyReplicas >= 0, count);
  requireNumber('minReplicas', minReplicas, Number.isInteger(minReplicas) && minReplicas >= 0, count);
  requireNumber(
    'maxReplicas',
    maxReplicas,
    Number.isInteger(maxReplicas) && maxReplicas >= minReplicas,
    `must be a whole number, at least minReplicas (${minReplicas})`,
  );
  requireNumber('target', target, Number.isFinite(target) && target > 0, 'must be greater than 0');
  requireNumber('queuedRequests', queued, Number.isInteger(queued) && queued >= 0, count);
}

function requireNumber(field: string, value: number, valid: boolean, rule: string): void {
  if (valid) return;
  throw new LumaError('invalid_input', `invalid autoscaler input ${field} ${value}: ${rule}`, {
    details: { field, value },
  });
}
