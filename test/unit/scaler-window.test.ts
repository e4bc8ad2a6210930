import { describe, expect, it } from 'vitest';
import { ConcurrencyWindow, SlidingMaximum } from '../../src/scaler/window.js';

describe('ConcurrencyWindow', () => {
  // expected: [samples, average, minimum]
  it.each([
    { name: 'one sample', samples: [[100, 7]], at: 100, windowMs: 1000, expected: [1, 7, 7] },
    { name: 'same bucket', samples: [[0, 10], [100, 20]], at: 200, windowMs: 1000, expected: [2, 15, 10] },
    { name: 'across buckets', samples: [[0, 4], [300, 8], [900, 0]], at: 900, windowMs: 1000, expected: [3, 4, 0] },
    // The window [1500, 2500] overlaps the bucket [1500, 1750) but not [1250, 1500).
    {
      name: 'old end excluded',
      samples: [[1400, 100], [1600, 10], [2500, 20]],
      at: 2500,
      windowMs: 1000,
      expected: [2, 15, 10],
    },
    // The bucket [1500, 1750) overlaps [1600, 2600], so 1500 counts although it is 100 ms older.
    {
      name: 'partial bucket included',
      samples: [[1500, 100], [2600, 20]],
      at: 2600,
      windowMs: 1000,
      expected: [2, 60, 20],
    },
    { name: 'no samples', samples: [], at: 1000, windowMs: 1000, expected: [0, 0, 0] },
    { name: 'gap is no data', samples: [[0, 50], [5000, 50]], at: 5000, windowMs: 6000, expected: [2, 50, 50] },
  ])('stats with $name', ({ samples, at, windowMs, expected }) => {
    const window = new ConcurrencyWindow(10_000, 250);
    for (const [sampleAt, value] of samples) window.record(sampleAt, value);
    const [count, average, minimum] = expected;
    expect(window.stats(at, windowMs)).toEqual({ samples: count, average, minimum });
  });

  it('stale buckets after lap skipped', () => {
    // 5 slots of 250 ms: bucket 0 and bucket 5 share a slot.
    const window = new ConcurrencyWindow(1000, 250);
    window.record(0, 100);
    window.record(1300, 10);
    expect(window.stats(1300, 1000)).toEqual({ samples: 1, average: 10, minimum: 10 });
    // A query at an earlier time must not read the newer bucket 5 as bucket 0.
    expect(window.stats(100, 100).samples).toBe(0);
  });

  it('samples older than span dropped', () => {
    const window = new ConcurrencyWindow(1000, 250);
    expect(window.record(5000, 10)).toBe(true);
    expect(window.record(3000, 99)).toBe(false);
    expect(window.record(4900, 20)).toBe(true);
    expect(window.stats(5000, 1000)).toEqual({ samples: 2, average: 15, minimum: 10 });
  });

  it('window beyond span throws', () => {
    const window = new ConcurrencyWindow(1000, 250);
    expect(() => window.stats(0, 1001)).toThrow(RangeError);
  });

  it('clear removes all samples', () => {
    const window = new ConcurrencyWindow(1000, 250);
    window.record(100, 10);
    window.clear();
    expect(window.stats(100, 1000).samples).toBe(0);
    expect(window.record(0, 5)).toBe(true);
    expect(window.stats(100, 1000).samples).toBe(1);
  });
});

describe('SlidingMaximum', () => {
  it.each([
    { name: 'newest largest', values: [[0, 1], [100, 2], [200, 3]], at: 200, expected: 3 },
    { name: 'oldest largest', values: [[0, 3], [100, 2], [200, 1]], at: 200, expected: 3 },
    { name: 'maximum expired', values: [[0, 3], [100, 2], [200, 1]], at: 1050, expected: 2 },
    { name: 'boundary inclusive', values: [[0, 3], [500, 1]], at: 1000, expected: 3 },
    { name: 'all expired', values: [[0, 3]], at: 2000, expected: undefined },
    { name: 'empty', values: [], at: 0, expected: undefined },
  ])('current with $name', ({ values, at, expected }) => {
    const maximum = new SlidingMaximum(1000);
    for (const [valueAt, value] of values) maximum.record(valueAt, value);
    expect(maximum.current(at)).toBe(expected);
  });

  it('zero window keeps latest', () => {
    const maximum = new SlidingMaximum(0);
    maximum.record(0, 5);
    maximum.record(250, 2);
    expect(maximum.current(250)).toBe(2);
  });
});
