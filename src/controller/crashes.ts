import type { ServiceStatus } from '../api/backend.js';
import type { Logger } from '../log.js';
import type { Millis } from '../model.js';
import { StartBackoff } from './backoff.js';
import type { ReplicaRuntime } from './ports.js';
import { LOG_TAIL_LINES } from './replica-starter.js';
import type { ReplicaRecord } from './replica-table.js';

export type CrashReport = NonNullable<ServiceStatus['lastError']>;

/**
 * A replica that served at least this long before it exited ends a run of crashes: its exit
 * starts a new run instead of doubling the delay.
 */
export const STABLE_RUN_MS: Millis = 60_000;

/**
 * Counts replicas of one service that exited on their own after they became ready, and returns
 * how long a replacement must wait. The first crash of a run is replaced at once. Each further
 * crash of a replica that served less than `STABLE_RUN_MS` doubles the delay, from 1 s up to
 * 60 s, so a container that keeps crashing does not restart in a loop.
 */
export class CrashTracker {
  private readonly backoff = new StartBackoff(1_000, 60_000, 1);

  /** Counts a crash of a replica that served for `servedMs`; returns the delay before a replacement. */
  record(now: number, servedMs: Millis): Millis {
    if (servedMs >= STABLE_RUN_MS) this.backoff.reset();
    return this.backoff.recordFailure(now);
  }

  /** Ends the run of crashes when a replica that Luma stopped had served for `STABLE_RUN_MS`. */
  recordStop(servedMs: Millis): void {
    if (servedMs >= STABLE_RUN_MS) this.backoff.reset();
  }

  reset(): void {
    this.backoff.reset();
  }

  remaining(now: number): Millis {
    return this.backoff.remaining(now);
  }

  get retryAtTime(): number | null {
    return this.backoff.retryAtTime;
  }
}

/** Returns the API message for a replica that exited on its own. */
export function crashMessage(replica: string, exit: { exitCode: number | null; oomKilled: boolean; containerGone: boolean }): string {
  if (exit.containerGone) return `container of replica ${replica} was removed outside Luma`;
  if (exit.oomKilled) return `replica ${replica} was killed for exceeding its memory limit (exit code ${exit.exitCode ?? 'unknown'})`;
  return `replica ${replica} exited unexpectedly with exit code ${exit.exitCode ?? 'unknown'}`;
}

/** Time a replica has been ready, 0 when it never was. */
export function servedMs(record: ReplicaRecord, now: number): number {
  const readyAt = record.replica.readyAt === undefined ? Number.NaN : Date.parse(record.replica.readyAt);
  return Number.isNaN(readyAt) ? 0 : Math.max(0, now - readyAt);
}

/**
 * Returns the `lastError` for a replica that exited on its own. In the background, it then reads
 * the container's last output into the returned object's `logTail`, removes the container (unless
 * it is already gone) and logs the exit once.
 */
export function reportCrash(options: {
  record: ReplicaRecord;
  exit: { exitCode: number | null; containerGone: boolean };
  now: number;
  servedMs: Millis;
  replaceInMs: Millis;
  runtime: ReplicaRuntime;
  logger: Logger;
}): CrashReport {
  const { record, exit } = options;
  const oomKilled = record.oomKilled === true;
  const report: CrashReport = {
    at: new Date(options.now).toISOString(),
    code: 'replica_exited',
    message: crashMessage(record.replica.name, { ...exit, oomKilled }),
    exitCode: exit.exitCode ?? undefined,
  };

  const log = options.logger.child({ replica: record.replica.name });
  const collected = exit.containerGone ? Promise.resolve([]) : collectExitedReplica(options.runtime, record.replica.id, log);
  collected
    .then((logTail) => {
      if (logTail.length > 0) report.logTail = logTail;
      log.warn(
        { exitCode: exit.exitCode, oomKilled, servedMs: options.servedMs, replaceInMs: options.replaceInMs, logTail },
        'replica exited unexpectedly',
      );
    })
    .catch((error: unknown) => log.error({ err: error }, 'record exited replica failed'));
  return report;
}

/** Reads the last lines of an exited replica's output, then removes its container. */
async function collectExitedReplica(runtime: ReplicaRuntime, id: string, logger: Logger): Promise<string[]> {
  const logTail = await runtime.tailLogs(id, LOG_TAIL_LINES).catch((error: unknown) => {
    logger.debug({ err: error }, 'read output of exited replica failed');
    return [];
  });
  await runtime.removeReplica(id).catch((error: unknown) => {
    logger.warn({ err: error }, 'remove exited replica failed; the reconcile scan retries');
  });
  return logTail;
}
