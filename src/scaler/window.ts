import type { Millis } from '../model.js';

/** Aggregate of the samples that fall in one query window. */
export interface WindowStats {
  /** Number of samples in the window; 0 means there is no data, not zero load. */
  samples: number;
  /** Mean of the samples, or 0 without samples. */
  average: number;
  /** Lowest sample, or 0 without samples. */
  minimum: number;
}

/**
 * Concurrency samples of one service over the last `spanMs`, kept in buckets of `bucketMs`.
 *
 * Memory is fixed at `ceil(spanMs / bucketMs) + 1` buckets whatever the sampling rate. Each
 * bucket stores its bucket number (`floor(at / bucketMs)`), so a bucket left over from an
 * earlier lap of the ring is recognised as stale and skipped, without a sweep.
 *
 * Averages are per sample, not per unit of time. A gap without samples counts as missing data
 * rather than as zero load, because a caller that could not read the in-flight counts has no
 * information about the load.
 */
export class ConcurrencyWindow {
  readonly spanMs: Millis;
  readonly bucketMs: Millis;
  private readonly bucketNumbers: Float64Array;
  private readonly sums: Float64Array;
  private readonly counts: Float64Array;
  private readonly minimums: Float64Array;
  private newestBucket = Number.NEGATIVE_INFINITY;

  constructor(spanMs: Millis, bucketMs: Millis) {
    this.spanMs = spanMs;
    this.bucketMs = bucketMs;
    const size = Math.ceil(spanMs / bucketMs) + 1;
    this.bucketNumbers = new Float64Array(size).fill(Number.NaN);
    this.sums = new Float64Array(size);
    this.counts = new Float64Array(size);
    this.minimums = new Float64Array(size);
  }

  /**
   * Adds a sample taken at `at`. Returns false, and drops the sample, when it is older than
   * the span behind the newest sample.
   */
  record(at: Millis, value: number): boolean {
    const bucket = Math.floor(at / this.bucketMs);
    if (bucket <= this.newestBucket - this.bucketNumbers.length) return false;

    const slot = this.slotOf(bucket);
    if (this.bucketNumbers[slot] === bucket) {
      this.sums[slot] += value;
      this.counts[slot] += 1;
      this.minimums[slot] = Math.min(this.minimums[slot], value);
    } else {
      this.bucketNumbers[slot] = bucket;
      this.sums[slot] = value;
      this.counts[slot] = 1;
      this.minimums[slot] = value;
    }
    this.newestBucket = Math.max(this.newestBucket, bucket);
    return true;
  }

  /**
   * Aggregates the samples in the buckets that overlap `[at - windowMs, at]`. Bucket
   * granularity can widen the window by up to one bucket at its old end.
   */
  stats(at: Millis, windowMs: Millis): WindowStats {
    if (windowMs > this.spanMs) {
      throw new RangeError(`window of ${windowMs} ms exceeds the ${this.spanMs} ms span`);
    }

    const last = Math.floor(at / this.bucketMs);
    const first = Math.floor((at - windowMs) / this.bucketMs);
    let sum = 0;
    let samples = 0;
    let minimum = Number.POSITIVE_INFINITY;
    for (let bucket = first; bucket <= last; bucket++) {
      const slot = this.slotOf(bucket);
      if (this.bucketNumbers[slot] !== bucket) continue;
      sum += this.sums[slot];
      samples += this.counts[slot];
      minimum = Math.min(minimum, this.minimums[slot]);
    }

    if (samples === 0) return { samples: 0, average: 0, minimum: 0 };
    return { samples, average: sum / samples, minimum };
  }

  clear(): void {
    this.bucketNumbers.fill(Number.NaN);
    this.newestBucket = Number.NEGATIVE_INFINITY;
  }

  private slotOf(bucket: number): number {
    const size = this.bucketNumbers.length;
    return ((bucket % size) + size) % size;
  }
}

/**
 * Maximum of the values recorded in the last `windowMs`, as a deque of entries whose values
 * strictly decrease from oldest to newest. An entry is dropped once a newer value is at least
 * as large, so the deque contains at most one entry per distinct value.
 */
export class SlidingMaximum {
  private readonly windowMs: Millis;
  private entries: Array<{ at: Millis; value: number }> = [];

  constructor(windowMs: Millis) {
    this.windowMs = windowMs;
  }

  record(at: Millis, value: number): void {
    while (this.entries.length > 0 && this.entries[this.entries.length - 1].value <= value) {
      this.entries.pop();
    }
    this.entries.push({ at, value });
  }

  /** Returns the maximum recorded in `[at - windowMs, at]`, or undefined when there is none. */
  current(at: Millis): number | undefined {
    while (this.entries.length > 0 && this.entries[0].at < at - this.windowMs) {
      this.entries.shift();
    }
    return this.entries[0]?.value;
  }

  clear(): void {
    this.entries = [];
  }
}
