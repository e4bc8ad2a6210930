/**
 * Cost of a replica change with 10, 100 and 1000 services registered, in both upstream modes.
 *
 * A `changer` service alternates between one and two replicas, through PATCH of minReplicas and
 * maxReplicas. A paced probe load on it shows when Caddy starts and stops routing to the
 * replica that came or went. Meanwhile a steady load on another service counts the requests
 * that fail. The other services sleep (no containers). Each configuration runs on a fresh Caddy
 * and controller. The largest size is mostly loaded from a prepared services.json, because
 * registering it through the API one service at a time would take minutes. Each registration
 * makes Caddy reload its whole config, and the registration table shows the measured times.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { UpstreamMode } from '../src/config/definitions.js';
import type { ServiceSpec } from '../src/model.js';
import { SERVICES_FILE_VERSION } from '../src/store/schema.js';
import { waitFor } from '../test/support/ports.js';
import type { BenchContext, Scenario } from './support/context.js';
import { TEST_IMAGE } from './support/environment.js';
import { containerIdOf, describeFailures, startLoad, type LoadResult } from './support/load.js';
import { progress, Table } from './support/report.js';
import {
  createService,
  patchService,
  readService,
  UPSTREAM_MODES,
  waitForService,
  type LogEntry,
  type ServiceView,
  type Stack,
} from './support/stack.js';
import { formatMs, median } from './support/stats.js';

const SIZES = [10, 100, 1000];
/** Replica changes per configuration: scale-ups and scale-downs alternate. */
const CHANGES = 10;
/** Sizes up to this are registered entirely through the API. */
const API_REGISTRATION_MAX = 100;
/** Services registered through the API at larger sizes (steady, changer and fillers); the rest are preloaded. */
const API_REGISTRATIONS_WHEN_PRELOADED = 5;
const CHANGE_TIMEOUT_MS = 30_000;
const FORCED_RELOADS = 3;

interface ProbeRecord {
  firstSentAt: number;
  lastSentAt: number;
}

interface ChangeTimes {
  /** Scale-up: from `replica ready` to the route write or DNS answer that lists the new replica. */
  upPublishMs: number[];
  /** Scale-up: from `replica ready` to the send time of the first probe that the new replica responded to. */
  upRoutedMs: number[];
  /** Scale-down: from `scaling replicas` to the route write or DNS answer without the replica. */
  downPublishMs: number[];
  /** Scale-down: from `scaling replicas` to the send time of the last probe that the removed replica responded to. */
  downLastRoutedMs: number[];
}

interface SizeResult {
  mode: UpstreamMode;
  size: number;
  preloaded: number;
  registrationMs: number[];
  times: ChangeTimes;
  steady: LoadResult;
  probe: LoadResult;
  forcedReloadMs: number[];
  /** Error codes of the API requests of the whole configuration that were sent again after a connection reset. */
  apiRetries: string[];
}

export const replicaChange: Scenario = {
  name: 'replica-change',
  description: 'time until caddy routes to a changed replica set, and failed requests meanwhile, at 10/100/1000 services',
  async run(context: BenchContext): Promise<Table[]> {
    const results: SizeResult[] = [];
    for (const mode of UPSTREAM_MODES) {
      for (const size of SIZES) results.push(await measureSize(context, mode, size));
    }
    return [changeTable(results), registrationTable(results)];
  },
};

function changeTable(results: SizeResult[]): Table {
  const table = new Table(
    `Replica change (${CHANGES} changes per row: ${CHANGES / 2} scale-ups 1 to 2 and ${CHANGES / 2} scale-downs 2 to 1; median / max)`,
    [
      'mode',
      'services',
      'up: ready to published',
      'up: ready to 1st request routed',
      'down: decision to published',
      'down: decision to last request routed',
      'failed on steady service',
      'failed on changed service',
      'floor: forced caddy reload of this config',
    ],
  );
  const pair = (values: number[]) => `${formatMs(median(values))} / ${formatMs(Math.max(...values))}`;
  for (const result of results) {
    table.add(
      result.mode,
      String(result.size),
      pair(result.times.upPublishMs),
      pair(result.times.upRoutedMs),
      pair(result.times.downPublishMs),
      pair(result.times.downLastRoutedMs),
      `${describeFailures(result.steady)} of ${result.steady.requests}`,
      `${describeFailures(result.probe)} of ${result.probe.requests}`,
      formatMs(median(result.forcedReloadMs)),
    );
  }
  table.note(
    'published: admin mode, the controller logged "wrote route" (the admin API call, Caddy\'s reload included, has returned); ' +
      'dns mode, the controller logged "srv answer changed" (no Caddy config write)',
  );
  table.note('routed: send time of the first probe that the new replica responded to (the last one for a removed replica); probes are paced 10 ms apart on 2 connections');
  table.note('steady service: 4 keep-alive connections, one request every 20 ms each, for the whole series of changes');
  table.note(
    'floor: POST /load of Caddy\'s current config with "Cache-Control: must-revalidate", which makes Caddy reload an unchanged config; ' +
      `median of ${FORCED_RELOADS}, after the changes`,
  );
  return table;
}

function registrationTable(results: SizeResult[]): Table {
  const table = new Table('Service registration through the API (POST /api/services, one at a time)', [
    'mode',
    'services at the end',
    'preloaded from services.json',
    'registered through the API',
    'total',
    'median per service',
    'max per service',
    'API requests retried',
  ]);
  for (const result of results) {
    const total = result.registrationMs.reduce((sum, value) => sum + value, 0);
    table.add(
      result.mode,
      String(result.size),
      String(result.preloaded),
      String(result.registrationMs.length),
      formatMs(total),
      formatMs(median(result.registrationMs)),
      formatMs(Math.max(...result.registrationMs)),
      result.apiRetries.length === 0 ? '0' : `${result.apiRetries.length} (${result.apiRetries.join(', ')})`,
    );
  }
  table.note('API requests retried: requests of the whole row (registrations, patches, reads) sent again after Caddy reset their new connection');
  table.note('every registration writes the new route into Caddy, and Caddy 2.6.2 reloads its whole config on each write');
  return table;
}

async function measureSize(context: BenchContext, mode: UpstreamMode, size: number): Promise<SizeResult> {
  const preloaded = size > API_REGISTRATION_MAX ? size - API_REGISTRATIONS_WHEN_PRELOADED : 0;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'luma-bench-'));
  await writeServices(dataDir, preloaded);

  return context.withStack({ mode, dataDir }, async (stack) => {
    const registrationMs = await registerServices(stack, size - preloaded, preloaded);
    progress(`replica-change ${mode} ${size}: ${preloaded} preloaded, ${registrationMs.length} registered through the API`);
    await waitForService(stack, 'steady', 'one ready replica', (view) => (view.status.readyReplicas === 1 ? true : undefined));
    await waitForService(stack, 'changer', 'one ready replica', (view) => (view.status.readyReplicas === 1 ? true : undefined));

    const steady = startLoad({
      origin: stack.luma.url,
      path: '/steady/',
      concurrency: 4,
      pauseMs: 20,
      durationMs: 300_000,
      maxRequests: 200_000,
    });
    const seen = new Map<string, ProbeRecord>();
    const probe = startLoad({
      origin: stack.luma.url,
      path: '/changer/',
      concurrency: 2,
      pauseMs: 10,
      durationMs: 300_000,
      maxRequests: 200_000,
      onResponse: (response) => {
        const id = containerIdOf(response.body);
        if (id === undefined) return;
        const record = seen.get(id);
        if (record === undefined) seen.set(id, { firstSentAt: response.sentAt, lastSentAt: response.sentAt });
        else record.lastSentAt = Math.max(record.lastSentAt, response.sentAt);
      },
    });

    const times: ChangeTimes = { upPublishMs: [], upRoutedMs: [], downPublishMs: [], downLastRoutedMs: [] };
    let steadyResult: LoadResult;
    let probeResult: LoadResult;
    try {
      for (let change = 1; change <= CHANGES; change += 1) {
        if (change % 2 === 1) await scaleUp(stack, seen, times);
        else await scaleDown(stack, seen, times);
        progress(`replica-change ${mode} ${size}: change ${change}/${CHANGES} done`);
      }
    } finally {
      steadyResult = await steady.stop();
      probeResult = await probe.stop();
    }

    const forcedReloadMs = await forceReloads(stack.caddy.adminUrl);
    return {
      mode,
      size,
      preloaded,
      registrationMs,
      times,
      steady: steadyResult,
      probe: probeResult,
      forcedReloadMs,
      apiRetries: [...stack.apiRetries],
    };
  });
}

async function scaleUp(stack: Stack, seen: Map<string, ProbeRecord>, times: ChangeTimes): Promise<void> {
  const before = new Set((await readService(stack, 'changer')).status.replicas.map((replica) => replica.id));
  const mark = stack.log.mark();
  await patchService(stack, 'changer', { minReplicas: 2, maxReplicas: 2 });

  const added = await waitForService(
    stack,
    'changer',
    'a second ready replica',
    (view) => view.status.replicas.find((replica) => replica.state === 'ready' && !before.has(replica.id)),
    CHANGE_TIMEOUT_MS,
  );
  const ready = await logLine(stack, mark, 'replica ready');
  const routed = await waitFor('a probe response from the new replica', () => firstSentBy(seen, added.id), CHANGE_TIMEOUT_MS, 5);
  const published =
    stack.mode === 'admin'
      ? await logLine(stack, mark, 'wrote route', (entry) => listIncludes(entry.upstreams, added.address))
      : await logLine(stack, mark, 'srv answer changed', (entry) => listIncludes(entry.targets, added.id));

  times.upPublishMs.push(published.time - ready.time);
  times.upRoutedMs.push(routed - ready.time);
}

async function scaleDown(stack: Stack, seen: Map<string, ProbeRecord>, times: ChangeTimes): Promise<void> {
  const before = (await readService(stack, 'changer')).status.replicas;
  const mark = stack.log.mark();
  await patchService(stack, 'changer', { minReplicas: 1, maxReplicas: 1 });

  const remaining = await waitForService(
    stack,
    'changer',
    'one replica left',
    (view: ServiceView) => (view.status.replicas.length === 1 && view.status.readyReplicas === 1 ? view.status.replicas[0] : undefined),
    CHANGE_TIMEOUT_MS,
  );
  const removed = before.find((replica) => replica.id !== remaining?.id);
  if (removed === undefined) throw new Error('scale-down removed no known replica of changer');
  const decision = await logLine(stack, mark, 'scaling replicas');
  const published =
    stack.mode === 'admin'
      ? await logLine(stack, mark, 'wrote route', (entry) => !listIncludes(entry.upstreams, removed.address))
      : await logLine(stack, mark, 'srv answer changed', (entry) => !listIncludes(entry.targets, removed.id));
  const lastRouted = lastSentBy(seen, removed.id);
  if (lastRouted === undefined) throw new Error(`no probe response came from the removed replica ${removed.id}`);

  times.downPublishMs.push(published.time - decision.time);
  times.downLastRoutedMs.push(lastRouted - decision.time);
}

/** Waits for the first line of `changer` with message `msg` after `mark` that matches `where`. */
function logLine(stack: Stack, mark: number, msg: string, where?: (entry: LogEntry) => boolean): Promise<LogEntry> {
  return waitFor(`"${msg}" log line of changer`, () => stack.log.first(mark, msg, 'changer', where), 10_000, 20);
}

function listIncludes(list: unknown, value: string | null): boolean {
  return Array.isArray(list) && value !== null && list.includes(value);
}

/** Returns the probe record of a replica. The echo's containerId is the container's host name, the first 12 characters of its id. */
function recordOf(seen: Map<string, ProbeRecord>, replicaId: string): ProbeRecord | undefined {
  for (const [containerId, record] of seen) if (replicaId.startsWith(containerId)) return record;
  return undefined;
}

function firstSentBy(seen: Map<string, ProbeRecord>, replicaId: string): number | undefined {
  return recordOf(seen, replicaId)?.firstSentAt;
}

function lastSentBy(seen: Map<string, ProbeRecord>, replicaId: string): number | undefined {
  return recordOf(seen, replicaId)?.lastSentAt;
}

/** Registers `steady`, `changer` and fillers up to `count` services, one at a time; returns each POST's time. */
async function registerServices(stack: Stack, count: number, firstFiller: number): Promise<number[]> {
  const bodies: Array<Record<string, unknown>> = [
    { name: 'steady', image: TEST_IMAGE, minReplicas: 1 },
    { name: 'changer', image: TEST_IMAGE, minReplicas: 1, maxReplicas: 1 },
  ];
  for (let index = firstFiller; bodies.length < count; index += 1) bodies.push({ name: fillerName(index), image: TEST_IMAGE });

  const durations: number[] = [];
  for (const body of bodies) {
    const startedAt = performance.now();
    await createService(stack, body);
    durations.push(performance.now() - startedAt);
  }
  return durations;
}

function fillerName(index: number): string {
  return `filler-${String(index).padStart(4, '0')}`;
}

/** Writes `count` sleeping filler services into `<dataDir>/services.json`, in the store's format. */
async function writeServices(dataDir: string, count: number): Promise<void> {
  if (count === 0) return;
  const now = new Date().toISOString();
  const services: ServiceSpec[] = Array.from({ length: count }, (_, index) => ({
    name: fillerName(index),
    image: TEST_IMAGE,
    port: 8080,
    minReplicas: 0,
    maxReplicas: 10,
    env: {},
    hosts: [],
    createdAt: now,
    updatedAt: now,
    generation: 1,
  }));
  await writeFile(path.join(dataDir, 'services.json'), `${JSON.stringify({ version: SERVICES_FILE_VERSION, services })}\n`, { mode: 0o600 });
}

/** Times POST /load of Caddy's current config with `Cache-Control: must-revalidate`, which forces a reload. */
async function forceReloads(adminUrl: string): Promise<number[]> {
  const config = await (await fetch(`${adminUrl}/config/`)).text();
  const durations: number[] = [];
  for (let i = 0; i < FORCED_RELOADS; i += 1) {
    const startedAt = performance.now();
    const response = await fetch(`${adminUrl}/load`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'cache-control': 'must-revalidate' },
      body: config,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`forced reload failed: ${response.status} ${text}`);
    durations.push(performance.now() - startedAt);
  }
  return durations;
}
