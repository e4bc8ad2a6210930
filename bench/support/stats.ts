/** Order statistics and number formatting for benchmark figures. */

export interface Summary {
  count: number;
  min: number;
  median: number;
  p90: number;
  p99: number;
  max: number;
}

/**
 * Returns the `p`-th percentile (0-100) of `values` by the nearest-rank method, so the result is
 * always one of the measured values. NaN for an empty list.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1] ?? Number.NaN;
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function summarize(values: readonly number[]): Summary {
  return {
    count: values.length,
    min: values.length === 0 ? Number.NaN : Math.min(...values),
    median: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length === 0 ? Number.NaN : Math.max(...values),
  };
}

/** Formats milliseconds: one decimal below 10 ms, whole numbers above; `-` for NaN. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  return ms < 10 && ms > -10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** Formats a difference of milliseconds with its sign, such as `+120 ms`. */
export function formatDelta(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  return `${ms >= 0 ? '+' : ''}${formatMs(ms)}`;
}

/** Formats a ratio as a percentage of `base`, such as `-12%`. */
export function formatPercentChange(value: number, base: number): string {
  if (!Number.isFinite(value) || !Number.isFinite(base) || base === 0) return '-';
  const change = ((value - base) / base) * 100;
  return `${change >= 0 ? '+' : ''}${change.toFixed(0)}%`;
}

export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return '-';
  return `${Math.round(perSecond)}/s`;
}
