/**
 * Cold burst: 200 concurrent requests, each on its own connection, against a sleeping service.
 * Counts errors and the containers started, and compares the latencies with the floor of one
 * container's start until its first HTTP response.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../test/support/ports.js';
import type { BenchContext, Scenario } from './support/context.js';
import { TEST_IMAGE } from './support/environment.js';
import { containerIdOf, describeFailures, runLoad } from './support/load.js';
import { progress, Table } from './support/report.js';
import { createService, UPSTREAM_MODES, waitForService } from './support/stack.js';
import { formatDelta, formatMs, percentile, summarize } from './support/stats.js';

const REQUESTS = 200;
const SERVICE = 'burst';

export const burst: Scenario = {
  name: 'burst',
  description: `${REQUESTS} concurrent cold requests against a sleeping service: errors, latency, containers started`,
  async run(context: BenchContext): Promise<Table[]> {
    const floor = summarize((await context.startFloor(5)).map((sample) => sample.totalMs));
    const table = new Table(`Cold burst (${REQUESTS} concurrent GETs, one connection each, against a sleeping service)`, [
      'mode',
      'failed',
      'p50',
      'p99',
      'max',
      'containers that responded',
      'containers started',
      'controller create-to-ready',
      'floor: container start to ready',
      'p50 - floor',
    ]);

    const scaleNotes: string[] = [];
    for (const mode of UPSTREAM_MODES) {
      await context.withStack({ mode }, async (stack) => {
        await createService(stack, { name: SERVICE, image: TEST_IMAGE });
        await waitForService(stack, SERVICE, 'asleep', (view) => (view.status.state === 'sleeping' ? true : undefined));

        const mark = stack.log.mark();
        const responders = new Set<string>();
        const result = await runLoad({
          origin: stack.luma.url,
          path: `/${SERVICE}/`,
          concurrency: REQUESTS,
          maxRequests: REQUESTS,
          durationMs: 60_000,
          timeoutMs: 60_000,
          onResponse: (response) => {
            const id = containerIdOf(response.body);
            if (id !== undefined) responders.add(id);
          },
        });
        // Starts that the burst triggered but that were not ready before the last response.
        await sleep(1_000);
        const started = await waitFor('container list', () => stack.luma.containers({ service: SERVICE }), 5_000);
        progress(`burst ${mode}: ${result.latenciesMs.length} responses, ${responders.size} containers responded, ${started.length} started`);

        const ready = stack.log.first(mark, 'replica ready', SERVICE);
        const scalings = stack.log.since(mark, 'scaling replicas', SERVICE);
        scaleNotes.push(
          `${mode} mode: scaling decisions after the wake: ` +
            (scalings.length === 0 ? 'none' : scalings.map((entry) => `${String(entry.from)} to ${String(entry.to)} (${String(entry.reason)})`).join('; ')),
        );
        const p50 = percentile(result.latenciesMs, 50);
        table.add(
          mode,
          `${describeFailures(result)} of ${result.requests}`,
          formatMs(p50),
          formatMs(percentile(result.latenciesMs, 99)),
          formatMs(Math.max(...result.latenciesMs)),
          String(responders.size),
          String(started.length),
          formatMs(typeof ready?.bootMs === 'number' ? ready.bootMs : Number.NaN),
          formatMs(floor.median),
          formatDelta(p50 - floor.median),
        );
      });
    }
    for (const note of scaleNotes) table.note(note);
    table.note(`latency: from sending until the response body is complete, per request; the ${REQUESTS} connections open at once`);
    table.note('controller create-to-ready: bootMs of the first "replica ready" log line after the burst started');
    table.note(`floor: median of ${floor.count} direct docker create + start until the first HTTP response (see cold start)`);
    return [table];
  },
};
