/**
 * Scale-out on a load step: a service with one ready replica and a target of 2 concurrent
 * requests per replica gets a step from no load to 4 requests in flight, which needs 2 replicas.
 * Measured from the step until the first response from the second container, against the
 * floor of a container's own start until its first HTTP response.
 */
import type { BenchContext, Scenario } from './support/context.js';
import { TEST_IMAGE } from './support/environment.js';
import { containerIdOf, describeFailures, startLoad, type LoadResult } from './support/load.js';
import { progress, Table } from './support/report.js';
import { createService, deleteService, getOnNewConnection, UPSTREAM_MODES, waitForService, type Stack } from './support/stack.js';
import { formatDelta, formatMs, median, summarize } from './support/stats.js';
import { waitFor } from '../test/support/ports.js';

const RUNS = 3;
const TARGET_CONCURRENCY = 2;
const IN_FLIGHT = 4;
/** Time the app takes for each request, so that IN_FLIGHT requests stay in flight. */
const HOLD_MS = 200;
const STEP_TIMEOUT_MS = 25_000;

interface StepSample {
  /** All times from the step (first request sent), in milliseconds. */
  decisionMs: number;
  readyMs: number;
  /** Send time of the first request that the second replica responded to. */
  routedMs: number;
  /** Arrival of the first response from the second replica. */
  respondedMs: number;
  /** Controller's create-to-ready time of the second replica. */
  bootMs: number;
  load: LoadResult;
}

export const scaleStep: Scenario = {
  name: 'scale-step',
  description: 'time from a load step to a second replica serving vs. a container start-to-ready',
  async run(context: BenchContext): Promise<Table[]> {
    const floor = summarize((await context.startFloor(5)).map((sample) => sample.totalMs));
    const table = new Table(
      `Scale-out on a load step (${RUNS} runs per mode; 0 to ${IN_FLIGHT} requests in flight of ${HOLD_MS} ms each, target ${TARGET_CONCURRENCY} per replica)`,
      ['mode', 'step to decision', 'step to 2nd ready', 'step to 1st request routed to 2nd', 'step to 1st response from 2nd', 'floor: container start to ready', 'routed - floor', 'failed requests'],
    );

    for (const mode of UPSTREAM_MODES) {
      const samples = await context.withStack({ mode }, async (stack) => {
        const results: StepSample[] = [];
        for (let run = 1; run <= RUNS; run += 1) results.push(await measureStep(stack, `step-${run}`));
        return results;
      });
      const med = (pick: (sample: StepSample) => number) => median(samples.map(pick));
      table.add(
        mode,
        formatMs(med((s) => s.decisionMs)),
        formatMs(med((s) => s.readyMs)),
        formatMs(med((s) => s.routedMs)),
        formatMs(med((s) => s.respondedMs)),
        formatMs(floor.median),
        formatDelta(med((s) => s.routedMs) - floor.median),
        samples.map((sample) => describeFailures(sample.load)).join(' + '),
      );
      table.note(
        `${mode} mode: medians of ${RUNS} runs; per run step to 1st response from 2nd: ${samples.map((s) => formatMs(s.respondedMs)).join(', ')}; ` +
          `controller's create-to-ready of the 2nd replica (bootMs): ${samples.map((s) => formatMs(s.bootMs)).join(', ')}`,
      );
    }
    table.note(`floor: median of ${floor.count} direct docker create + start until the first HTTP response (see cold start)`);
    return [table];
  },
};

async function measureStep(stack: Stack, name: string): Promise<StepSample> {
  await createService(stack, { name, image: TEST_IMAGE, minReplicas: 1, maxReplicas: 2, concurrency: TARGET_CONCURRENCY });
  const firstId = await waitForService(stack, name, 'one ready replica', (view) =>
    view.status.readyReplicas === 1 ? view.status.replicas[0]?.id : undefined,
  );
  // A few requests first, so Caddy routes to the replica itself (in dns mode, after its first SRV lookup).
  for (let i = 0; i < 3; i += 1) await getOnNewConnection(`${stack.luma.url}/${name}/`);

  const mark = stack.log.mark();
  const stepAt = Date.now();
  let second: { sentAt: number; receivedAt: number } | undefined;
  const load = startLoad({
    origin: stack.luma.url,
    path: `/${name}/hold?ms=${HOLD_MS}`,
    concurrency: IN_FLIGHT,
    durationMs: STEP_TIMEOUT_MS + 5_000,
    maxRequests: 5_000,
    onResponse: (response) => {
      const id = containerIdOf(response.body);
      if (second === undefined && id !== undefined && !firstId.startsWith(id)) {
        second = { sentAt: response.sentAt, receivedAt: response.receivedAt };
      }
    },
  });

  let result: LoadResult;
  try {
    await waitFor(`a response from a second replica of ${name}`, () => second, STEP_TIMEOUT_MS, 10);
  } finally {
    result = await load.stop();
  }
  const first = second as { sentAt: number; receivedAt: number };

  const decision = await waitFor('"scaling replicas" log line', () => stack.log.first(mark, 'scaling replicas', name), 5_000, 20);
  const ready = await waitFor('"replica ready" log line', () => stack.log.first(mark, 'replica ready', name, (e) => e.reason === 'scale-up'), 5_000, 20);
  await deleteService(stack, name);

  const sample: StepSample = {
    decisionMs: decision.time - stepAt,
    readyMs: ready.time - stepAt,
    routedMs: first.sentAt - stepAt,
    respondedMs: first.receivedAt - stepAt,
    bootMs: typeof ready.bootMs === 'number' ? ready.bootMs : Number.NaN,
    load: result,
  };
  progress(
    `scale-step ${stack.mode} ${name}: decision ${Math.round(sample.decisionMs)} ms, ready ${Math.round(sample.readyMs)} ms, ` +
      `routed ${Math.round(sample.routedMs)} ms, responded ${Math.round(sample.respondedMs)} ms`,
  );
  return sample;
}
