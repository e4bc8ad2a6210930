import type { Logger } from '../log.js';
import { sleep } from './async.js';
import type { InFlightSource, ReplicaRuntime } from './ports.js';
import type { DrainReason, ReplicaRecord, ReplicaTable } from './replica-table.js';

/** Poll interval while waiting for a draining replica's requests to finish. */
const DRAIN_POLL_MS = 200;

/**
 * Waits until a replica that already left routing has no request in flight (Caddy's count plus
 * wake-up replays), at most `drainTimeoutMs`, then stops it (SIGTERM, SIGKILL after the grace
 * period) and removes the container. Returns early, leaving the replica alone, when a new
 * request revived it (its state is no longer `draining`). `onRemoved` runs once the replica is
 * gone from the table, also when stopping failed: the reconcile scan then removes the container.
 */
export async function drainReplica(options: {
  record: ReplicaRecord;
  reason: DrainReason;
  table: ReplicaTable;
  inFlight: InFlightSource;
  runtime: ReplicaRuntime;
  drainTimeoutMs: number;
  stopGracePeriodMs: number;
  logger: Logger;
  onRemoved: () => Promise<void>;
}): Promise<void> {
  const { record, table } = options;
  const deadline = Date.now() + options.drainTimeoutMs;
  const log = options.logger.child({ replica: record.replica.name });

  // The counts read before the replica left routing do not prove anything: wait for a fresh one.
  await options.inFlight.nextSample();
  while (Date.now() < deadline) {
    if (record.replica.state !== 'draining') return;
    if (table.load(record) === 0) break;
    await sleep(DRAIN_POLL_MS);
    await options.inFlight.nextSample();
  }
  if (record.replica.state !== 'draining') return;

  const cut = table.load(record);
  if (cut > 0) {
    log.warn({ requestsCut: cut, drainTimeoutMs: options.drainTimeoutMs }, 'drain timed out, stopping replica anyway');
  }
  record.replica.state = 'stopping';

  try {
    await options.runtime.stopReplica(record.replica.id, options.stopGracePeriodMs);
    await options.runtime.removeReplica(record.replica.id);
    log.info({ reason: options.reason }, 'replica stopped');
  } catch (error) {
    log.error({ err: error }, 'stop replica failed; the reconcile scan removes the container');
  } finally {
    table.delete(record.replica.id);
    await options.onRemoved().catch(() => undefined);
  }
}
