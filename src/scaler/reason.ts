import type { Millis } from '../model.js';

/** Formats a duration for reasons: `6s`, `0.25s`, `60s`. */
export function formatSeconds(ms: Millis): string {
  return `${Number((ms / 1000).toFixed(2))}s`;
}

/** Formats a replica count with its noun: `1 replica`, `3 replicas`. */
export function formatReplicas(count: number, adjective?: string): string {
  const noun = count === 1 ? 'replica' : 'replicas';
  return adjective === undefined ? `${count} ${noun}` : `${count} ${adjective} ${noun}`;
}

/** The load figure a decision rests on: a window average, or the level sustained over a short window. */
export interface Signal {
  kind: 'average' | 'sustained';
  concurrency: number;
  windowMs: Millis;
}

export function describeSignal(signal: Signal): string {
  const value = signal.concurrency.toFixed(1);
  const window = formatSeconds(signal.windowMs);
  if (signal.kind === 'sustained') return `concurrency of at least ${value} for ${window}`;
  return `average concurrency ${value} over ${window}`;
}

/** Describes the replicas a signal needs: `average concurrency 120.0 over 60s needs 2 replicas at 80 per replica`. */
export function describeNeed(signal: Signal, replicas: number, target: number): string {
  const perReplica = Number(target.toFixed(2));
  return `${describeSignal(signal)} needs ${formatReplicas(replicas)} at ${perReplica} per replica`;
}
