/**
 * Warm path: throughput and latency of requests to a service with a ready replica, through
 * Luma's route in Caddy, against a hand-written static route (one `reverse_proxy` to the same
 * container) in a second Caddy on another port. Same client, concurrency and duration for both;
 * the two targets alternate in rounds, so that load from other processes affects both alike.
 */
import { startCaddy } from '../test/support/caddy.js';
import { freePort } from '../test/support/ports.js';
import type { BenchContext, Scenario } from './support/context.js';
import { TEST_IMAGE } from './support/environment.js';
import { describeFailures, failedRequests, runLoad, type LoadResult } from './support/load.js';
import { progress, Table } from './support/report.js';
import { createService, getOnNewConnection, UPSTREAM_MODES, waitForService, type Stack } from './support/stack.js';
import { formatMs, formatPercentChange, formatRate, median, percentile } from './support/stats.js';

const CONCURRENCY = 16;
/** Measured time per target: ROUNDS rounds of ROUND_MS, each after WARMUP_MS not counted. */
const ROUNDS = 6;
const ROUND_MS = 2_000;
const WARMUP_MS = 500;
const MAX_REQUESTS_PER_ROUND = 200_000;
const SERVICE = 'warm';

interface Totals {
  requests: number;
  /** Requests per second of each round. */
  roundRates: number[];
  latenciesMs: number[];
  results: LoadResult[];
}

export const warmPath: Scenario = {
  name: 'warm-path',
  description: "requests/s and latency through Luma's route vs. a static Caddy route to the same container",
  async run(context: BenchContext): Promise<Table[]> {
    const table = new Table(
      `Warm path (${CONCURRENCY} keep-alive connections, ${ROUNDS} rounds of ${ROUND_MS / 1000} s per target, GET of the test app's JSON echo)`,
      ['route', 'requests/s (median round)', 'p50', 'p99', 'failed', 'floor requests/s', 'floor p50', 'floor p99', 'requests/s vs floor', 'p50 vs floor'],
    );

    for (const mode of UPSTREAM_MODES) {
      // Luma's default log level, as in production; the test helper's debug level is for failing tests.
      await context.withStack({ mode, args: ['--log-level=info'] }, async (stack) => {
        const { luma, floor, bodyBytes } = await measureMode(context, stack);
        const lumaRate = median(luma.roundRates);
        const floorRate = median(floor.roundRates);
        const lumaP50 = percentile(luma.latenciesMs, 50);
        const floorP50 = percentile(floor.latenciesMs, 50);
        table.add(
          `luma ${mode} mode: /${SERVICE}/ through Luma's route`,
          formatRate(lumaRate),
          formatMs(lumaP50),
          formatMs(percentile(luma.latenciesMs, 99)),
          String(luma.results.reduce((sum, result) => sum + failedRequests(result), 0)),
          formatRate(floorRate),
          formatMs(floorP50),
          formatMs(percentile(floor.latenciesMs, 99)),
          formatPercentChange(lumaRate, floorRate),
          formatPercentChange(lumaP50, floorP50),
        );
        const rates = (totals: Totals) => totals.roundRates.map((rate) => Math.round(rate)).join(', ');
        table.note(
          `${mode} mode: requests/s per round, luma ${rates(luma)}; floor ${rates(floor)}. ` +
            `Failed on the floor: ${floor.results.map(describeFailures).join(' + ')}. ` +
            `Requests counted: luma ${luma.requests}, floor ${floor.requests}. Response body: luma ${bodyBytes.luma} bytes, floor ${bodyBytes.floor} bytes`,
        );
      });
    }
    table.note('requests/s is the median over the rounds, because load from other processes on the machine varies between rounds; p50 and p99 are over all requests');
    table.note('the load generator (undici Pool in the bench process), Caddy, the controller and the container share the same cores');
    return [table];
  },
};

async function measureMode(
  context: BenchContext,
  stack: Stack,
): Promise<{ luma: Totals; floor: Totals; bodyBytes: { luma: number; floor: number } }> {
  await createService(stack, { name: SERVICE, image: TEST_IMAGE, minReplicas: 1 });
  const address = await waitForService(stack, SERVICE, 'one ready replica', (view) =>
    view.status.readyReplicas === 1 ? (view.status.replicas[0]?.address ?? undefined) : undefined,
  );

  const staticCaddy = await startCaddy();
  const closeStatic = context.cleanups.add(() => staticCaddy.stop());
  try {
    const staticPort = await freePort();
    await loadStaticRoute(staticCaddy.adminUrl, staticPort, address);

    const targets = {
      luma: { origin: stack.luma.url, path: `/${SERVICE}/` },
      floor: { origin: `http://127.0.0.1:${staticPort}`, path: '/' },
    };
    const bodyBytes = {
      luma: (await getOnNewConnection(targets.luma.origin + targets.luma.path)).body.length,
      floor: (await getOnNewConnection(targets.floor.origin + targets.floor.path)).body.length,
    };
    const totals = { luma: emptyTotals(), floor: emptyTotals() };
    for (let round = 1; round <= ROUNDS; round += 1) {
      for (const name of ['luma', 'floor'] as const) {
        const target = targets[name];
        await runLoad({ ...target, concurrency: CONCURRENCY, durationMs: WARMUP_MS, maxRequests: MAX_REQUESTS_PER_ROUND });
        const result = await runLoad({ ...target, concurrency: CONCURRENCY, durationMs: ROUND_MS, maxRequests: MAX_REQUESTS_PER_ROUND });
        add(totals[name], result);
        progress(`warm-path ${stack.mode}: round ${round} ${name}: ${Math.round((result.requests / result.elapsedMs) * 1000)} requests/s`);
      }
    }
    return { ...totals, bodyBytes };
  } finally {
    await closeStatic();
  }
}

/** Loads a config with one server on `port` whose only route proxies to `address`. */
async function loadStaticRoute(adminUrl: string, port: number, address: string): Promise<void> {
  const config = {
    admin: { listen: adminUrl.replace(/^http:\/\//, ''), config: { persist: false } },
    apps: {
      http: {
        servers: {
          static: {
            listen: [`127.0.0.1:${port}`],
            automatic_https: { disable: true },
            routes: [{ handle: [{ handler: 'reverse_proxy', upstreams: [{ dial: address }] }] }],
          },
        },
      },
    },
  };
  const response = await fetch(`${adminUrl}/load`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(config),
  });
  if (!response.ok) throw new Error(`load static route into caddy failed: ${response.status} ${await response.text()}`);
}

function emptyTotals(): Totals {
  return { requests: 0, roundRates: [], latenciesMs: [], results: [] };
}

function add(totals: Totals, result: LoadResult): void {
  totals.requests += result.requests;
  totals.roundRates.push((result.requests / result.elapsedMs) * 1000);
  for (const latency of result.latenciesMs) totals.latenciesMs.push(latency);
  totals.results.push(result);
}
