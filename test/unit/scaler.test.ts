import { describe, expect, it } from 'vitest';
import { isLumaError } from '../../src/errors.js';
import { Autoscaler, targetConcurrency, type ScalingOutcome } from '../../src/scaler/autoscaler.js';
import type { AutoscalerOptions } from '../../src/scaler/options.js';

const SERVICE = 'api';
/** Bounds and target of most direct decide() calls. */
const BOUNDS = { minReplicas: 0, maxReplicas: 10, target: 80 };

interface SimulationSettings {
  tickMs?: number;
  ready?: number;
  min?: number;
  max?: number;
  target?: number;
  options?: AutoscalerOptions;
}

interface Step extends ScalingOutcome {
  at: number;
  ready: number;
}

/**
 * Drives one service through simulated time: every tick records the load, then decides. Ready
 * replicas follow the previous decision at once, as if containers started instantly.
 */
class Simulation {
  readonly scaler: Autoscaler;
  at = 0;
  ready: number;
  readonly steps: Step[] = [];

  constructor(readonly settings: SimulationSettings = {}) {
    this.scaler = new Autoscaler(settings.options);
    this.ready = settings.ready ?? 1;
  }

  /** Runs ticks for `durationMs` with `load(at)` as the concurrency; returns the steps of this run. */
  run(durationMs: number, load: (at: number) => number): Step[] {
    const tickMs = this.settings.tickMs ?? 250;
    const first = this.steps.length;
    const end = this.at + durationMs;
    while (this.at < end) {
      this.at += tickMs;
      this.scaler.record(SERVICE, { at: this.at, concurrency: load(this.at) });
      const outcome = this.scaler.decide(SERVICE, {
        at: this.at,
        readyReplicas: this.ready,
        minReplicas: this.settings.min ?? 0,
        maxReplicas: this.settings.max ?? 100,
        target: this.settings.target ?? 80,
      });
      this.steps.push({ ...outcome, at: this.at, ready: this.ready });
      this.ready = outcome.desired;
    }
    return this.steps.slice(first);
  }

  last(): Step {
    return this.steps[this.steps.length - 1];
  }
}

function firstStepWith(steps: Step[], desired: number): Step | undefined {
  return steps.find((step) => step.desired === desired);
}

function changes(steps: Step[]): Step[] {
  return steps.filter((step) => step.changed);
}

/** Deterministic pseudo-random numbers in [0, 1), so noisy-load tests repeat exactly. */
function randomSequence(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state / 2_147_483_648;
  };
}

describe('Autoscaler idle service', () => {
  it.each([
    { min: 0, ready: 1, expected: 1, note: 'raised to 1 while replicas are ready' },
    { min: 1, ready: 1, expected: 1, note: 'raised to the minimum of 1' },
    { min: 2, ready: 4, expected: 2, note: 'raised to the minimum of 2' },
    { min: 3, ready: 1, expected: 3, note: 'raised to the minimum of 3' },
  ])('idle with min $min and $ready ready decides $expected', ({ min, ready, expected, note }) => {
    const simulation = new Simulation({ min, ready });
    simulation.run(120_000, () => 0);
    expect(simulation.last().desired).toBe(expected);
    expect(simulation.last().window).toBe('stable');
    expect(simulation.last().reason).toContain(note);
  });

  it.each([
    { queued: 0, min: 0, expected: 0, reason: 'no ready replica and no held request' },
    { queued: 0, min: 2, expected: 2, reason: 'no ready replica and no held request; raised to the minimum of 2' },
    { queued: 1, min: 0, expected: 1, reason: 'no ready replica; 1 request held for a cold start need 1 replica' },
    { queued: 200, min: 0, expected: 1, reason: 'no ready replica; 200 requests held for a cold start need 1 replica' },
  ])('no ready replicas with $queued queued decides $expected', ({ queued, min, expected, reason }) => {
    const scaler = new Autoscaler();
    const input = { ...BOUNDS, at: 0, readyReplicas: 0, minReplicas: min, queuedRequests: queued };
    const outcome = scaler.decide(SERVICE, input);
    expect(outcome.desired).toBe(expected);
    expect(outcome.reason).toBe(reason);
  });
});

describe('Autoscaler load steps', () => {
  it.each([
    { tickMs: 250, load: 200, ready: 1, expected: 3 },
    { tickMs: 1000, load: 200, ready: 1, expected: 3 },
    { tickMs: 250, load: 120, ready: 1, expected: 2 },
    { tickMs: 250, load: 1000, ready: 1, expected: 13 },
    { tickMs: 500, load: 500, ready: 2, expected: 7 },
  ])('step to $load on $ready ready at $tickMs ms ticks', ({ tickMs, load, ready, expected }) => {
    // minReplicas keeps the ready count through the idle minute before the step.
    const simulation = new Simulation({ tickMs, ready, min: ready });
    simulation.run(70_000, () => 0);
    expect(simulation.ready).toBe(ready);
    const stepAt = simulation.at;

    const steps = simulation.run(10_000, () => load);
    const first = firstStepWith(steps, expected);
    expect(first).toBeDefined();
    // The step window is 1 s: the first tick whose last second contains only the new load acts.
    expect(first!.at - stepAt).toBeLessThanOrEqual(1000 + tickMs);
    expect(first!.window).toBe('panic');
    expect(simulation.last().desired).toBe(expected);
  });

  it('step reason names sustained concurrency', () => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(70_000, () => 0);
    const steps = simulation.run(2_000, () => 200);
    expect(changes(steps)[0].reason).toBe(
      'concurrency of at least 200.0 for 1s needs 3 replicas at 80 per replica, ' +
        'at least 2x the 1 ready replica; panic mode',
    );
    expect(changes(steps)[0].previous).toBe(1);
  });

  it('single spike does not scale', () => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(70_000, () => 0);
    const spikeAt = simulation.at + 250;
    const steps = simulation.run(20_000, (at) => (at === spikeAt ? 400 : 0));
    expect(changes(steps)).toEqual([]);
  });

  it('cold burst starts one replica first', () => {
    const scaler = new Autoscaler();
    const cold = scaler.decide(SERVICE, { ...BOUNDS, at: 0, readyReplicas: 0, queuedRequests: 200 });
    expect(cold.desired).toBe(1);
    expect(cold.window).toBe('stable');

    // The replica is ready and the 200 held requests are replayed to it.
    scaler.record(SERVICE, { at: 3000, concurrency: 200 });
    const replayed = scaler.decide(SERVICE, { ...BOUNDS, at: 3000, readyReplicas: 1 });
    expect(replayed.desired).toBe(3);
    expect(replayed.window).toBe('panic');
    expect(replayed.changed).toBe(true);
    expect(replayed.reason).toBe(
      'average concurrency 200.0 over 6s needs 3 replicas at 80 per replica, ' +
        'at least 2x the 1 ready replica; panic mode',
    );
  });

  it('step below panic threshold follows stable window', () => {
    // 2 ready replicas take 200 with 3 needed: 3 < 2 x 2, so only the 60 s average can scale up.
    const simulation = new Simulation({ ready: 2 });
    simulation.run(70_000, () => 100);
    expect(simulation.last().desired).toBe(2);

    const steps = simulation.run(60_000, () => 200);
    const first = firstStepWith(steps, 3)!;
    expect(first.window).toBe('stable');
    // Stable average of 100 then 200 passes 160 after 60 s x 60/100 = 36 s.
    expect(first.at - steps[0].at).toBeGreaterThan(35_000);
    expect(first.at - steps[0].at).toBeLessThan(38_000);
  });
});

describe('Autoscaler scale-down', () => {
  it('load drop scales down after windows', () => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(120_000, () => 200);
    expect(simulation.last().desired).toBe(3);
    const dropAt = simulation.at;

    const samples: Array<{ at: number; load: number }> = [];
    const steps = simulation.run(120_000, (at) => {
      samples.push({ at, load: 50 });
      return 50;
    });

    // The panic window shows only 50 after 6 s; the count must still hold well past that.
    for (const step of steps.filter((early) => early.at - dropAt <= 40_000)) {
      expect(step.desired).toBe(3);
    }

    // Never below what the 60 s average justifies; a mean over a slightly shorter window is lower.
    for (const step of steps) {
      const inWindow = samples
        .filter((sample) => sample.at > step.at - 60_000 + 250 && sample.at <= step.at)
        .map((sample) => sample.load);
      const before = Math.max(0, Math.ceil((60_000 - 250 - (step.at - dropAt)) / 250));
      const mean = (inWindow.reduce((a, b) => a + b, 0) + before * 200) / (inWindow.length + before);
      expect(step.desired).toBeGreaterThanOrEqual(Math.ceil(mean / 80));
    }

    // The 60 s average falls below 160 about 16 s after the drop, so 2 is recommended from then.
    // 1 waits until the panic counts of 2 (6 s average above 80, until about 5 s after the drop)
    // leave the stable window, since 1 replica would panic at such a burst. The 30 s scale-down
    // delay adds to both.
    const down = changes(steps);
    expect(down.map((step) => step.desired)).toEqual([2, 1]);
    expect(Math.abs(down[0].at - dropAt - 46_000)).toBeLessThanOrEqual(1000);
    expect(Math.abs(down[1].at - dropAt - 95_000)).toBeLessThanOrEqual(1000);
    expect(down[0].window).toBe('stable');
    expect(down[1].reason).toContain('over 60s needs 1 replica at 80 per replica');
  });

  it('panic mode blocks scale-down', () => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(70_000, () => 0);
    simulation.run(10_000, () => 200);
    const endAt = simulation.at;

    const steps = simulation.run(120_000, () => 0);
    const panicSteps = steps.filter((step) => step.window === 'panic');
    expect(panicSteps.length).toBeGreaterThan(0);
    for (const step of panicSteps) {
      expect(step.desired).toBe(3);
    }

    // Panic ends a stable window after the last overload, then the delay keeps 3 for 30 s more.
    const firstDown = changes(steps)[0];
    expect(firstDown.window).toBe('stable');
    expect(firstDown.at - endAt).toBeGreaterThanOrEqual(60_000);
    expect(simulation.last().desired).toBe(1);
  });

  const noise = randomSequence(7);
  it.each([
    { name: 'alternating bursts', load: (at: number) => (Math.floor(at / 3000) % 2 === 0 ? 200 : 0) },
    { name: 'short bursts', load: (at: number) => (at % 10_000 < 1500 ? 400 : 20) },
    { name: 'noise near target', load: () => 60 + noise() * 45 },
  ])('bursty load with $name does not flap', ({ load }) => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(600_000, load);

    // Flapping is a rise after a fall. A rise, then falls, is the settling of a first burst.
    const counts = changes(simulation.steps).map((step) => step.desired);
    const firstFall = counts.findIndex((count, index) => index > 0 && count < counts[index - 1]);
    const risesAfterFall = counts.filter(
      (count, index) => firstFall >= 0 && index > firstFall && count > counts[index - 1],
    );
    expect(risesAfterFall).toEqual([]);
    expect(counts.length).toBeLessThanOrEqual(3);
  });
});

describe('Autoscaler bounds and target', () => {
  it.each([
    { load: 1000, min: 0, max: 5, expected: 5, note: 'capped at the maximum of 5' },
    { load: 1000, min: 0, max: 100, expected: 13, note: 'needs 13 replicas' },
    { load: 10, min: 4, max: 10, expected: 4, note: 'raised to the minimum of 4' },
    { load: 10, min: 6, max: 6, expected: 6, note: 'raised to the minimum of 6' },
  ])('load $load within [$min, $max] decides $expected', ({ load, min, max, expected, note }) => {
    const simulation = new Simulation({ min, max, ready: min === 0 ? 1 : min });
    simulation.run(70_000, () => load);
    expect(simulation.last().desired).toBe(expected);
    expect(simulation.last().reason).toContain(note);
  });

  it('lowered maximum applies at once', () => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(20_000, () => 600);
    expect(simulation.last().desired).toBe(8);

    const lowered = { ...BOUNDS, at: simulation.at, readyReplicas: 8, maxReplicas: 2 };
    const outcome = simulation.scaler.decide(SERVICE, lowered);
    expect(outcome.desired).toBe(2);
    expect(outcome.changed).toBe(true);
  });

  it.each([
    { spec: {}, threshold: 80, expected: 80 },
    { spec: { concurrency: 10 }, threshold: 80, expected: 10 },
    { spec: { maxConcurrency: 10 }, threshold: 80, expected: 7 },
    { spec: { concurrency: 5, maxConcurrency: 10 }, threshold: 80, expected: 5 },
    { spec: { maxConcurrency: 1 }, threshold: 80, expected: 0.7 },
  ])('targetConcurrency of $spec is $expected', ({ spec, threshold, expected }) => {
    expect(targetConcurrency(spec, threshold)).toBeCloseTo(expected, 10);
  });

  it.each([
    { target: 80, expected: 3 },
    { target: 10, expected: 20 },
    { target: 250, expected: 1 },
  ])('target $target for load 200 decides $expected', ({ target, expected }) => {
    const simulation = new Simulation({ target, ready: 1 });
    simulation.run(70_000, () => 200);
    expect(simulation.last().desired).toBe(expected);
  });
});

describe('Autoscaler missing data and clock', () => {
  it('no samples keeps ready count', () => {
    const scaler = new Autoscaler();
    const outcome = scaler.decide(SERVICE, { ...BOUNDS, at: 1000, readyReplicas: 2 });
    expect(outcome.desired).toBe(2);
    expect(outcome.changed).toBe(false);
    expect(outcome.reason).toBe('no concurrency samples in the last 6s; keeping 2 replicas');
  });

  it('stopped samples keep last decision', () => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(30_000, () => 200);
    expect(simulation.last().desired).toBe(3);

    const outcome = simulation.scaler.decide(SERVICE, { ...BOUNDS, at: simulation.at + 7000, readyReplicas: 3 });
    expect(outcome.desired).toBe(3);
    expect(outcome.reason).toContain('no concurrency samples');
  });

  it('unchanged decisions report no change', () => {
    const simulation = new Simulation({ ready: 2 });
    const steps = simulation.run(70_000, () => 150);
    expect(changes(steps)).toEqual([]);
    expect(steps.every((step) => step.previous === 2)).toBe(true);
  });

  it('forward jump acts on fresh samples', () => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(30_000, () => 200);
    expect(simulation.last().desired).toBe(3);

    simulation.at += 600_000;
    const kept = simulation.scaler.decide(SERVICE, { ...BOUNDS, at: simulation.at, readyReplicas: 3 });
    expect(kept.desired).toBe(3);
    expect(kept.window).toBe('stable');

    // Old samples, panic mode and the delay all expired during the jump.
    const steps = simulation.run(1000, () => 40);
    expect(steps[0].desired).toBe(1);
  });

  it('backward jump discards history', () => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(30_000, () => 200);
    expect(simulation.last().desired).toBe(3);
    expect(simulation.last().window).toBe('panic');

    simulation.at -= 3_600_000;
    const steps = simulation.run(40_000, () => 40);

    // Panic mode is gone, and the kept count drops only after the 30 s scale-down delay.
    expect(steps[0].window).toBe('stable');
    expect(steps[0].desired).toBe(3);
    const down = changes(steps);
    expect(down.map((step) => step.desired)).toEqual([1]);
    expect(down[0].at - steps[0].at).toBeGreaterThanOrEqual(29_000);
    expect(down[0].at - steps[0].at).toBeLessThanOrEqual(31_000);
  });

  it('jitter within a bucket keeps history', () => {
    const scaler = new Autoscaler();
    scaler.record(SERVICE, { at: 10_000, concurrency: 200 });
    scaler.record(SERVICE, { at: 9_900, concurrency: 200 });
    const outcome = scaler.decide(SERVICE, { ...BOUNDS, at: 9_950, readyReplicas: 1 });
    expect(outcome.desired).toBe(3);
  });

  it('forget drops service state', () => {
    const simulation = new Simulation({ ready: 1 });
    simulation.run(30_000, () => 200);
    simulation.scaler.forget(SERVICE);

    const outcome = simulation.scaler.decide(SERVICE, { ...BOUNDS, at: simulation.at, readyReplicas: 1 });
    expect(outcome.previous).toBe(1);
    expect(outcome.desired).toBe(1);
    expect(outcome.reason).toContain('no concurrency samples');
  });

  it('services keep separate state', () => {
    const scaler = new Autoscaler();
    scaler.record('busy', { at: 1000, concurrency: 400 });
    scaler.record('quiet', { at: 1000, concurrency: 5 });
    const input = { ...BOUNDS, at: 1000, readyReplicas: 1 };
    expect(scaler.decide('busy', input).desired).toBe(5);
    expect(scaler.decide('quiet', input).desired).toBe(1);
  });
});

describe('Autoscaler validation', () => {
  it.each([
    { options: { bucketMs: 0 }, option: 'bucketMs' },
    { options: { stepWindowMs: 100 }, option: 'stepWindowMs' },
    { options: { panicWindowMs: 500 }, option: 'panicWindowMs' },
    { options: { stableWindowMs: 5000 }, option: 'stableWindowMs' },
    { options: { stableWindowMs: 3_600_000, bucketMs: 100 }, option: 'stableWindowMs' },
    { options: { panicThreshold: 1 }, option: 'panicThreshold' },
    { options: { scaleDownDelayMs: -1 }, option: 'scaleDownDelayMs' },
    { options: { scaleDownDelayMs: Number.NaN }, option: 'scaleDownDelayMs' },
  ])('option $option rejects bad value', ({ options, option }) => {
    let caught: unknown;
    try {
      new Autoscaler(options);
    } catch (error) {
      caught = error;
    }
    expect(isLumaError(caught, 'invalid_setting')).toBe(true);
    expect((caught as { details: Record<string, unknown> }).details.option).toBe(option);
  });

  const valid = { at: 0, readyReplicas: 1, minReplicas: 0, maxReplicas: 10, target: 80, queuedRequests: 0 };
  it.each([
    { field: 'at', input: { ...valid, at: Number.NaN } },
    { field: 'readyReplicas', input: { ...valid, readyReplicas: -1 } },
    { field: 'readyReplicas', input: { ...valid, readyReplicas: 1.5 } },
    { field: 'minReplicas', input: { ...valid, minReplicas: -1 } },
    { field: 'maxReplicas', input: { ...valid, minReplicas: 3, maxReplicas: 2 } },
    { field: 'target', input: { ...valid, target: 0 } },
    { field: 'queuedRequests', input: { ...valid, queuedRequests: -2 } },
  ])('decide rejects bad $field', ({ field, input }) => {
    let caught: unknown;
    try {
      new Autoscaler().decide(SERVICE, input);
    } catch (error) {
      caught = error;
    }
    expect(isLumaError(caught, 'invalid_input')).toBe(true);
    expect((caught as { details: Record<string, unknown> }).details.field).toBe(field);
  });

  it.each([
    { field: 'concurrency', sample: { at: 0, concurrency: -1 } },
    { field: 'concurrency', sample: { at: 0, concurrency: Number.POSITIVE_INFINITY } },
    { field: 'at', sample: { at: Number.NaN, concurrency: 1 } },
  ])('record rejects bad $field', ({ field, sample }) => {
    expect(() => new Autoscaler().record(SERVICE, sample)).toThrow(`invalid autoscaler input ${field} `);
  });
});
