/**
 * Overload of the wake-up path, against the real Caddy and Docker engine: 2,000 concurrent cold
 * requests for slow-booting services, with small wake queue bounds. Requests past a bound must
 * get 503 with Retry-After at once, the held ones must be served, the controller's memory must
 * stay flat and its API must keep responding.
 */
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { residentBytes, TEST_IMAGE } from '../support/faults.js';
import { probe, reportFault, summarize, type Outcome } from '../support/fault-traffic.js';
import { createService, startLuma, type LumaInstance } from '../support/luma.js';
import { sleep } from '../support/ports.js';

const PER_SERVICE = 100;
/** Boot time of the flooded services; a rejection that took less never waited for the replica. */
const BOOT_DELAY_MS = 5_000;
const TOTAL = 150;
const MIB = 1024 * 1024;

let caddy: CaddyProcess;
let luma: LumaInstance;
let agent: Agent;

beforeAll(async () => {
  caddy = await startCaddy();
  luma = await startLuma({
    caddyAdminUrl: caddy.adminUrl,
    args: [`-wake-queue-per-service=${PER_SERVICE}`, `-wake-queue-total=${TOTAL}`, '-log-level=info'],
  });
  agent = new Agent({ connections: 2_500, headersTimeout: 60_000, bodyTimeout: 60_000 });
});

afterAll(async () => {
  await agent?.close();
  await luma?.destroy();
  await caddy?.stop();
});

function percentiles(values: number[]): { p50: number; p95: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { p50: at(0.5), p95: at(0.95), max: sorted.at(-1) ?? 0 };
}

/** Samples the controller's RSS every 100 ms until stopped; returns the largest sample. */
function sampleMemory(pid: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await residentBytes(pid).catch(() => 0));
      await sleep(100);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** Polls the API every 100 ms until stopped; returns every outcome. */
function pollApi(url: string): { stop(): Promise<Outcome[]> } {
  const outcomes: Outcome[] = [];
  let running = true;
  const loop = (async () => {
    for (let i = 0; running && i < 600; i++) {
      outcomes.push(await probe(url, { timeoutMs: 10_000, fresh: true }));
      await sleep(100);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return outcomes;
    },
  };
}

describe('wake queue overload', () => {
  it('rejects past the bounds at once and serves the rest', async () => {
    const pid = luma.process.pid!;
    const rounds: Array<Record<string, unknown>> = [];
    const baseline = await residentBytes(pid);

    for (let round = 1; round <= 2; round++) {
      const flood = `flood-${round}`;
      const side = `side-${round}`;
      await createService(luma, { name: flood, image: TEST_IMAGE, env: { BOOT_DELAY_MS: String(BOOT_DELAY_MS) } });
      await createService(luma, { name: side, image: TEST_IMAGE, env: { BOOT_DELAY_MS: String(BOOT_DELAY_MS) } });

      const memory = sampleMemory(pid);
      const api = pollApi(`${luma.url}/api/services/${flood}`);
      const started = Date.now();
      const requests = [
        ...Array.from({ length: 1_600 }, (_, i) => probe(`${luma.url}/${flood}/r${i}`, { dispatcher: agent, timeoutMs: 60_000 })),
        ...Array.from({ length: 400 }, (_, i) => probe(`${luma.url}/${side}/r${i}`, { dispatcher: agent, timeoutMs: 60_000 })),
      ];
      const outcomes = await Promise.all(requests);
      const floodMs = Date.now() - started;
      const apiOutcomes = await api.stop();
      const peak = await memory.stop();
      await sleep(2_000);
      const after = await residentBytes(pid);

      const floodOutcomes = outcomes.slice(0, 1_600);
      const sideOutcomes = outcomes.slice(1_600);
      const rejected = outcomes.filter((o) => o.status === 503);
      const summary = {
        round,
        floodMs,
        flood: summarize(floodOutcomes),
        side: summarize(sideOutcomes),
        served: outcomes.filter((o) => o.status === 200).length,
        rejectedMs: percentiles(rejected.map((o) => o.durationMs)),
        rejectedWithRetryAfter: rejected.filter((o) => o.retryAfter !== undefined).length,
        servedMinMs: Math.min(...outcomes.filter((o) => o.status === 200).map((o) => o.durationMs)),
        api: { ...summarize(apiOutcomes), maxMs: Math.max(...apiOutcomes.map((o) => o.durationMs)) },
        rssMiB: { before: Math.round(baseline / MIB), peak: Math.round(peak / MIB), after: Math.round(after / MIB) },
      };
      rounds.push(summary);

      expect(summary.served).toBeGreaterThanOrEqual(TOTAL);
      expect(summary.served).toBeLessThanOrEqual(TOTAL + 20);
      expect(floodOutcomes.filter((o) => o.status === 200).length).toBeLessThanOrEqual(PER_SERVICE + 20);
      expect(rejected.length + summary.served).toBe(2_000);
      expect(summary.rejectedWithRetryAfter).toBe(rejected.length);
      // The wake-up handler rejects without waiting for the replica. On a 2-core machine that also
      // runs Caddy and the 2,000 client sockets, accepting the connections takes up to seconds.
      expect(summary.rejectedMs.max).toBeLessThan(BOOT_DELAY_MS);
      expect(summary.servedMinMs).toBeGreaterThanOrEqual(BOOT_DELAY_MS);
      expect(summary.api.failed).toBe(0);
      expect(summary.api.sent).toBeGreaterThan(10);
    }

    await reportFault('overload-wake-queue', { bounds: { perService: PER_SERVICE, total: TOTAL }, requestsPerRound: 2_000, rounds });
    const [first, second] = rounds as Array<{ rssMiB: { after: number } }>;
    expect(second!.rssMiB.after - first!.rssMiB.after).toBeLessThan(30);
  });
});
