import type { Millis } from '../model.js';

export type ScalingWindow = 'stable' | 'panic';

export interface ScalingDecision {
  /** Replicas the service should have, within [minReplicas, maxReplicas]. */
  desired: number;
  /**
   * One line for logs and the API, such as
   * `average concurrency 120.0 over 60s needs 2 replicas at 80 per replica`.
   */
  reason: string;
  /** `panic` while panic mode lasts, otherwise `stable`. */
  window: ScalingWindow;
}

export interface ScalingOutcome extends ScalingDecision {
  /** Desired replicas of the service's previous decision, or its ready replicas on the first one. */
  previous: number;
  /** Whether `desired` differs from `previous`. Callers log and apply only changed decisions. */
  changed: boolean;
}

export interface ConcurrencySample {
  /** Milliseconds on a monotonic clock, such as `performance.now()`. */
  at: Millis;
  /**
   * In-flight requests on the service's ready replicas: Caddy's upstream counts plus the
   * requests the wake-up handler is replaying. Requests still held for a cold start are excluded.
   */
  concurrency: number;
}

export interface ScalingInput {
  /** Milliseconds on the same clock as the samples. */
  at: Millis;
  readyReplicas: number;
  minReplicas: number;
  maxReplicas: number;
  /** Target concurrent requests per replica, as returned by targetConcurrency(). */
  target: number;
  /**
   * Requests held by the wake-up handler while a cold start is in progress. They are not part of
   * the signal, because they reach replicas only once one is ready: a cold burst of 200 held
   * requests starts 1 replica, and the scaler acts on the load once it is replayed. They only
   * keep the decision at 1 or more while the service has no ready replica.
   */
  queuedRequests?: number;
}
