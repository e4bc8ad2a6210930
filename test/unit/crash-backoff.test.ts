/** Delays before replacing crashed replicas, and the promise helpers of the controller. */
import { describe, expect, it } from 'vitest';
import { firstFulfilled, settlesWithin } from '../../src/controller/async.js';
import { StartBackoff } from '../../src/controller/backoff.js';
import { CrashTracker, crashMessage, STABLE_RUN_MS } from '../../src/controller/crashes.js';

describe('start backoff', () => {
  it.each([
    { free: 0, delays: [1_000, 2_000, 4_000, 8_000] },
    { free: 1, delays: [0, 1_000, 2_000, 4_000] },
    { free: 2, delays: [0, 0, 1_000, 2_000] },
  ])('doubles after $free free failures', ({ free, delays }) => {
    const backoff = new StartBackoff(1_000, 60_000, free);
    expect(delays.map(() => backoff.recordFailure(0))).toEqual(delays);
  });

  it('caps the delay at the maximum', () => {
    const backoff = new StartBackoff(1_000, 5_000);
    const delays = Array.from({ length: 6 }, () => backoff.recordFailure(0));
    expect(delays).toEqual([1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
  });
});

describe('crash tracker', () => {
  it('replaces the first crash at once', () => {
    const crashes = new CrashTracker();
    expect(crashes.record(10_000, 500)).toBe(0);
    expect(crashes.remaining(10_000)).toBe(0);
  });

  it('doubles delays of quick crashes', () => {
    const crashes = new CrashTracker();
    const delays = [0, 1, 2, 3, 4].map((i) => crashes.record(i * 100_000, 1_000));
    expect(delays).toEqual([0, 1_000, 2_000, 4_000, 8_000]);
    expect(crashes.remaining(400_000)).toBe(8_000);
    expect(crashes.retryAtTime).toBe(408_000);
  });

  it('forgives crashes after a stable run', () => {
    const crashes = new CrashTracker();
    crashes.record(0, 1_000);
    crashes.record(1, 1_000);
    expect(crashes.record(2, STABLE_RUN_MS)).toBe(0);
    expect(crashes.record(3, 1_000)).toBe(1_000);
  });

  it('forgives crashes after a stable stop', () => {
    const crashes = new CrashTracker();
    crashes.record(0, 1_000);
    crashes.record(1, 1_000);
    crashes.recordStop(STABLE_RUN_MS - 1);
    expect(crashes.record(2, 1_000)).toBe(2_000);
    crashes.recordStop(STABLE_RUN_MS);
    expect(crashes.record(3, 1_000)).toBe(0);
  });

  it.each([
    { exit: { exitCode: 9, oomKilled: false, containerGone: false }, text: 'exited unexpectedly with exit code 9' },
    { exit: { exitCode: 137, oomKilled: true, containerGone: false }, text: 'exceeding its memory limit (exit code 137)' },
    { exit: { exitCode: null, oomKilled: false, containerGone: true }, text: 'was removed outside Luma' },
  ])('describes crash: $text', ({ exit, text }) => {
    expect(crashMessage('luma-web-1', exit)).toContain(text);
    expect(crashMessage('luma-web-1', exit)).toContain('luma-web-1');
  });
});

describe('promise helpers', () => {
  it('returns the first fulfilled value', async () => {
    const slow = new Promise<string>((resolve) => setTimeout(() => resolve('slow'), 30));
    await expect(firstFulfilled([Promise.reject(new Error('first')), slow])).resolves.toBe('slow');
  });

  it('rejects with the last rejection', async () => {
    const late = new Promise<string>((_, reject) => setTimeout(() => reject(new Error('late')), 10));
    await expect(firstFulfilled([Promise.reject(new Error('early')), late])).rejects.toThrow('late');
  });

  it('rejects an empty list', async () => {
    await expect(firstFulfilled([])).rejects.toThrow('no promise');
  });

  it.each([
    { settleMs: 5, limitMs: 200, expected: true },
    { settleMs: 200, limitMs: 5, expected: false },
  ])('reports settling within $limitMs ms', async ({ settleMs, limitMs, expected }) => {
    const promise = new Promise((_, reject) => setTimeout(() => reject(new Error('x')), settleMs));
    promise.catch(() => undefined);
    await expect(settlesWithin(promise, limitMs)).resolves.toBe(expected);
  });
});
