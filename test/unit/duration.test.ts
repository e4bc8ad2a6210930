import { describe, expect, it } from 'vitest';

import { formatDuration, parseDuration } from '../../src/config/duration.js';

describe('parseDuration', () => {
  it.each([
    ['0', 0],
    ['0s', 0],
    ['300ms', 300],
    ['90s', 90_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['1h1.5s', 3_601_500],
    ['1.1s', 1100],
    ['.5s', 500],
    ['2.s', 2000],
    ['1500us', 1.5],
    ['1500µs', 1.5],
    ['1ns', 0.000001],
    ['1m30s500ms', 90_500],
  ])('parses %s', (text, expected) => {
    expect(parseDuration(text)).toBe(expected);
  });

  it.each([
    ['', /empty duration/],
    ['-5s', /must not be negative/],
    ['90', /missing unit; add one of ns, us, ms, s, m, h \(for example 90s\)/],
    ['1.5', /missing unit/],
    ['5x', /unknown unit "x"/],
    ['5 m', /unknown unit " m"/],
    ['5M', /unknown unit "M"/],
    ['1h30', /missing unit in duration "1h30"/],
    ['abc', /invalid duration "abc"/],
    ['+5s', /invalid duration/],
    ['.s', /invalid duration/],
    ['.', /invalid duration/],
    ['s', /invalid duration/],
    ['1e3s', /unknown unit "e"/],
    ['3000000h', /too large/],
  ])('rejects %j', (text, message) => {
    expect(() => parseDuration(text)).toThrow(message);
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [0.000001, '1ns'],
    [1.5, '1.5ms'],
    [0.25, '250us'],
    [500, '500ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [90_000, '1m30s'],
    [90_500, '1m30.5s'],
    [600_000, '10m'],
    [3_600_000, '1h'],
    [5_400_000, '1h30m'],
    [3_601_500, '1h1.5s'],
    [2 ** 31 - 1, '596h31m23.647s'],
  ])('formats %d ms as %s', (ms, expected) => {
    expect(formatDuration(ms)).toBe(expected);
  });

  it.each([[-1], [Number.NaN], [Number.POSITIVE_INFINITY]])('rejects %d', (ms) => {
    expect(() => formatDuration(ms)).toThrow(RangeError);
  });

  it.each([[0], [1], [999], [1001], [59_999], [61_001], [3_599_999], [86_400_000], [1.234]])(
    'round-trips %d ms through parseDuration',
    (ms) => {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    },
  );
});
