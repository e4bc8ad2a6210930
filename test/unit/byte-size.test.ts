import { describe, expect, it } from 'vitest';

import { formatByteSize, parseByteSize } from '../../src/config/byte-size.js';

describe('parseByteSize', () => {
  it.each([
    ['0', 0],
    ['1048576', 1_048_576],
    ['512B', 512],
    ['1kB', 1000],
    ['1K', 1000],
    ['1KiB', 1024],
    ['512Mi', 536_870_912],
    ['100MiB', 104_857_600],
    ['1G', 1_000_000_000],
    ['1GB', 1_000_000_000],
    ['1.5Gi', 1_610_612_736],
    ['0.1MB', 100_000],
    ['2 MiB', 2_097_152],
    ['1Ti', 2 ** 40],
  ])('parses %s', (text, expected) => {
    expect(parseByteSize(text)).toBe(expected);
  });

  it.each([
    ['', /invalid size/],
    ['-1MiB', /must not be negative/],
    ['512m', /ambiguous unit "m"/],
    ['1gb', /ambiguous unit "gb"/],
    ['1mib', /unknown unit "mib"/],
    ['1XB', /unknown unit "XB"/],
    ['1.5B', /not a whole number of bytes/],
    ['1e6', /invalid size/],
    ['99999999TiB', /too large/],
  ])('rejects %j', (text, message) => {
    expect(() => parseByteSize(text)).toThrow(message);
  });
});

describe('formatByteSize', () => {
  it.each([
    [0, '0B'],
    [1023, '1023B'],
    [1024, '1KiB'],
    [1000, '1kB'],
    [104_857_600, '100MiB'],
    [536_870_912, '512MiB'],
    [1_000_000_000, '1GB'],
    [6_291_457, '6291457B'],
  ])('formats %d bytes as %s', (bytes, expected) => {
    expect(formatByteSize(bytes)).toBe(expected);
    expect(parseByteSize(expected)).toBe(bytes);
  });
});
