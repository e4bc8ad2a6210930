/**
 * Cold start: the latency of the first request to a sleeping service, through Caddy and Luma's
 * wake-up handler, against the floor of starting the same image straight through the Docker
 * Engine API and polling it until it responds. Each Luma run is paired with a floor run made just
 * before it, so that load from other processes on the machine affects both alike.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import type { BenchContext, Scenario } from './support/context.js';
import type { DirectStarter, DirectStartSample } from './support/direct-start.js';
import { TEST_IMAGE } from './support/environment.js';
import { progress, Table } from './support/report.js';
import { createService, UPSTREAM_MODES, waitForService, type Stack } from './support/stack.js';
import { formatDelta, formatMs, median, summarize } from './support/stats.js';
import { waitFor } from '../test/support/ports.js';

/** Measured runs per mode; one more run before them is a warm-up. */
const RUNS = 10;
const SERVICE = 'cold';

interface PairedSample {
  floor: DirectStartSample;
  /** From sending the request on a new connection until the response body is complete. */
  latencyMs: number;
  /** Luma's own time from container create to ready, from its `replica ready` log line. */
  bootMs: number;
}

export const coldStart: Scenario = {
  name: 'cold-start',
  description: 'first request to a sleeping service vs. docker create+start until the first HTTP response',
  async run(context: BenchContext): Promise<Table[]> {
    const table = new Table(`Cold start (${RUNS} runs per mode after one warm-up run; each run paired with a floor run)`, [
      'measurement',
      'median',
      'p90',
      'min',
      'max',
      'floor median',
      'floor p90',
      'median - floor',
    ]);
    const notes: string[] = [];

    for (const mode of UPSTREAM_MODES) {
      const { starter, close } = context.directStarter();
      let samples: PairedSample[];
      try {
        samples = await context.withStack({ mode }, (stack) => measurePairs(stack, starter));
      } finally {
        await close();
      }
      context.recordFloor(samples.map((sample) => sample.floor));

      const floor = summarize(samples.map((sample) => sample.floor.totalMs));
      const luma = summarize(samples.map((sample) => sample.latencyMs));
      const row = (name: string, values: ReturnType<typeof summarize>, compare: boolean) =>
        table.add(
          name,
          formatMs(values.median),
          formatMs(values.p90),
          formatMs(values.min),
          formatMs(values.max),
          compare ? formatMs(floor.median) : '',
          compare ? formatMs(floor.p90) : '',
          compare ? formatDelta(values.median - floor.median) : '',
        );
      row(`floor (${mode} runs): docker create + start until the first HTTP response, direct`, floor, false);
      row(`luma ${mode} mode: GET through caddy on a new connection until the response`, luma, true);
      row(`luma ${mode} mode: controller's create-to-ready time (bootMs of "replica ready")`, summarize(samples.map((s) => s.bootMs)), true);

      const paired = median(samples.map((sample) => sample.latencyMs - sample.floor.totalMs));
      notes.push(`luma ${mode} mode: median of the per-run differences (luma GET minus its paired floor run): ${formatDelta(paired)}`);
      const phase = (pick: (sample: DirectStartSample) => number) => formatMs(median(samples.map((s) => pick(s.floor))));
      notes.push(
        `floor phases in the ${mode} runs (medians): create ${phase((s) => s.createMs)}, start ${phase((s) => s.startMs)}, ` +
          `inspect ${phase((s) => s.inspectMs)}, polling until the first response ${phase((s) => s.untilResponseMs)}`,
      );
    }
    for (const note of notes) table.note(note);
    table.note('the floor polls every 5 ms on a new connection; Luma probes a starting replica every 25 ms');
    return [table];
  },
};

/** Wakes the service RUNS + 1 times, each time after it went back to sleep and after one floor run. */
async function measurePairs(stack: Stack, starter: DirectStarter): Promise<PairedSample[]> {
  await createService(stack, { name: SERVICE, image: TEST_IMAGE, inactivityTimeout: '1s' });
  const samples: PairedSample[] = [];

  for (let run = 0; run <= RUNS; run += 1) {
    await waitForService(stack, SERVICE, 'asleep with no replica', (view) =>
      view.status.state === 'sleeping' && view.status.replicas.length === 0 ? true : undefined,
    );
    const floor = await starter.measure();
    // Leaves time for the engine to finish removing the floor's container.
    await sleep(300);

    const mark = stack.log.mark();
    const latencyMs = await timeRequest(stack.luma.url, `/${SERVICE}/`);
    // The log line may arrive through the pipe a moment after the response.
    const ready = await waitFor('"replica ready" log line', () => stack.log.first(mark, 'replica ready', SERVICE), 5_000, 20);
    const bootMs = typeof ready.bootMs === 'number' ? ready.bootMs : Number.NaN;
    if (run > 0) samples.push({ floor, latencyMs, bootMs });
    progress(
      `cold-start ${stack.mode}: run ${run === 0 ? 'warm-up' : `${run}/${RUNS}`}: luma ${Math.round(latencyMs)} ms ` +
        `(boot ${Math.round(bootMs)} ms), floor ${Math.round(floor.totalMs)} ms`,
    );
  }
  return samples;
}

/** Times one GET on a new connection until its body is complete. Throws unless the status is 200. */
async function timeRequest(origin: string, path: string): Promise<number> {
  const client = new Client(origin);
  try {
    const startedAt = performance.now();
    const response = await client.request({ path, method: 'GET', headersTimeout: 60_000, bodyTimeout: 60_000 });
    const body = await response.body.text();
    const elapsed = performance.now() - startedAt;
    if (response.statusCode !== 200) throw new Error(`GET ${path} returned ${response.statusCode}: ${body.slice(0, 200)}`);
    return elapsed;
  } finally {
    await client.close();
  }
}
