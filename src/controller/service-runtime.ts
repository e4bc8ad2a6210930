import PQueue from 'p-queue';
import { LumaError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Replica, ServiceSpec, ServiceState } from '../model.js';
import type { ServiceStatus } from '../api/backend.js';
import type { ReplicaLease } from '../wake/types.js';
import { StartBackoff } from './backoff.js';
import type { InFlightSource, ReplicaRuntime, UpstreamPublisher } from './ports.js';
import type { ReplicaStarter } from './replica-starter.js';
import { replicaSpecHash } from './spec-hash.js';
import { abortable, firstFulfilled } from './async.js';
import { CrashTracker, reportCrash, servedMs } from './crashes.js';
import { buildStatus, deriveState } from './service-status.js';
import { drainReplica } from './drain.js';
import { ReplicaTable, type DrainReason, type ReplicaRecord } from './replica-table.js';

export interface ServiceRuntimeOptions {
  spec: ServiceSpec;
  runtime: ReplicaRuntime;
  starter: ReplicaStarter;
  publisher: UpstreamPublisher;
  inFlight: InFlightSource;
  logger: Logger;
  defaults: { startupTimeoutMs: number; inactivityTimeoutMs: number; concurrency: number };
  drainTimeoutMs: number;
  stopGracePeriodMs: number;
}

/**
 * Desired and observed state of one service, and the transitions between them.
 *
 * A wake (`acquire`) joins a start that is already in progress, whatever its reason, and starts
 * a replica only when none is (single-flight). Every other change of the replica set (minimum
 * floor, scaling, scale to zero, replacement, delete) runs through `operations`, one at a time.
 * Replicas leave routing before they are drained and stopped. Deleting the service cancels its
 * starts, which then remove their containers.
 */
export class ServiceRuntime {
  spec: ServiceSpec;
  private specHash: string;
  private readonly replicas: ReplicaTable;
  private readonly operations = new PQueue({ concurrency: 1 });
  private readonly backoff = new StartBackoff();
  private readonly crashes = new CrashTracker();
  /** Starts in progress, of any reason. */
  private readonly starts = new Set<Promise<ReplicaRecord>>();
  private starting = 0;
  /** Aborted when the service is deleted or the controller gives up on its starts at shutdown. */
  private readonly lifetime = new AbortController();
  private replacementTimer: NodeJS.Timeout | undefined;
  private lastRequestAt: number | null = null;
  private lastError: ServiceStatus['lastError'] = null;
  private lastScaling: ServiceStatus['lastScaling'] = null;
  /** Replica count of the last scaling decision; null before the first one. */
  private desired: number | null = null;
  private deleted = false;
  private publishing: Promise<void> | null = null;
  private publishAgain = false;
  /** Set when the last publish failed; the reconcile scan publishes again. */
  routeStale = false;
  private readonly log: Logger;

  constructor(private readonly options: ServiceRuntimeOptions) {
    this.spec = options.spec;
    this.specHash = replicaSpecHash(options.spec);
    this.replicas = new ReplicaTable(options.inFlight);
    this.log = options.logger;
  }

  get name(): string {
    return this.spec.name;
  }

  get isDeleted(): boolean {
    return this.deleted;
  }

  // ---- wake path -------------------------------------------------------------------------

  /** Returns a lease on a ready replica, starting one when none is ready. */
  async acquire(signal: AbortSignal): Promise<ReplicaLease> {
    this.touch();
    if (this.deleted) throw this.deletedError();

    const ready = this.replicas.leastLoadedReady();
    if (ready) return this.lease(ready);

    const revived = this.reviveIdleDrain();
    if (revived) return this.lease(revived);

    // A start in progress for any reason (wake, minimum, replacement, scale-up) is joined
    // instead of starting one more replica.
    if (this.starts.size === 0) {
      const waitMs = this.retryDelay(Date.now());
      if (waitMs > 0) {
        throw new LumaError('wake_backoff', `service "${this.name}" failed recently: ${this.lastError?.message ?? 'unknown error'}`, {
          details: { service: this.name, retryAfterMs: waitMs },
        });
      }
      // Every waiter may have gone away; the failure is already logged by startReplica.
      this.startReplica('wake').catch(() => undefined);
    }
    const record = await abortable(firstFulfilled([...this.starts]), signal);
    if (this.deleted) throw this.deletedError();

    // The replica that just started may already be taken by a drain; take any ready one.
    return this.lease(this.replicas.leastLoadedReady() ?? record);
  }

  private lease(record: ReplicaRecord): ReplicaLease {
    record.leases += 1;
    let released = false;
    return {
      replicaId: record.replica.id,
      address: record.replica.address ?? '',
      release: () => {
        if (released) return;
        released = true;
        record.leases -= 1;
        this.touch();
      },
    };
  }

  /** Puts a replica that drains because the service went idle back into service. */
  private reviveIdleDrain(): ReplicaRecord | undefined {
    for (const record of this.replicas.inState('draining')) {
      if (record.drainReason === 'idle') {
        record.replica.state = 'ready';
        record.drainReason = undefined;
        this.log.info({ replica: record.replica.name }, 'replica revived from idle drain');
        this.schedulePublish();
        return record;
      }
    }
    return undefined;
  }

  /** Records activity; called for every request seen by Caddy's access log or the wake-up handler. */
  touch(at: number = Date.now()): void {
    if (this.lastRequestAt === null || at > this.lastRequestAt) this.lastRequestAt = at;
  }

  // ---- starting replicas -------------------------------------------------------------------

  private startReplica(reason: StartReason): Promise<ReplicaRecord> {
    return this.track(this.bootReplica(reason));
  }

  /** Registers a start in progress, which wake-ups join, until it settles. */
  private track(start: Promise<ReplicaRecord>): Promise<ReplicaRecord> {
    this.starts.add(start);
    const forget = () => {
      this.starts.delete(start);
    };
    start.then(forget, forget);
    return start;
  }

  private async bootReplica(reason: StartReason): Promise<ReplicaRecord> {
    const spec = this.spec;
    const specHash = this.specHash;
    let record: ReplicaRecord | undefined;
    const startedAt = Date.now();
    this.starting += 1;

    try {
      await this.options.starter.start({
        spec,
        specHash,
        startupTimeoutMs: spec.startupTimeoutMs ?? this.options.defaults.startupTimeoutMs,
        stopGracePeriodMs: this.options.stopGracePeriodMs,
        onCreated: (replica) => {
          record = { replica, leases: 0 };
          this.replicas.add(record);
        },
        onAddress: (address) => {
          if (record) record.replica.address = address;
        },
        exitOf: () => record?.exit,
        signal: this.lifetime.signal,
      });
    } catch (error) {
      if (record) this.replicas.delete(record.replica.id);
      if (this.lifetime.signal.aborted) {
        this.log.info({ reason, replica: record?.replica.name }, 'replica start cancelled');
      } else {
        this.recordFailure(error);
      }
      throw error;
    } finally {
      this.starting -= 1;
    }

    if (!record) throw new LumaError('replica_exited', `replica of service "${spec.name}" was not created`);
    if (this.deleted) {
      // The service was deleted after the probe succeeded.
      this.replicas.delete(record.replica.id);
      await this.options.runtime.removeReplica(record.replica.id).catch((error: unknown) => {
        this.log.warn({ err: error, replica: record?.replica.name }, 'remove replica of deleted service failed; the reconcile scan retries');
      });
      throw this.deletedError();
    }
    record.replica.state = 'ready';
    record.replica.readyAt = new Date().toISOString();
    this.backoff.reset();
    this.lastError = null;
    this.log.info(
      { replica: record.replica.name, address: record.replica.address, bootMs: Date.now() - startedAt, reason },
      'replica ready',
    );
    this.schedulePublish().catch(() => undefined);
    // The spec changed while this replica started: it serves its waiters, then gets replaced.
    if (record.replica.specHash !== this.specHash) {
      this.refresh().catch((error: unknown) => this.log.error({ err: error }, 'replace outdated replicas failed'));
    }
    return record;
  }

  private recordFailure(error: unknown): void {
    const details = error instanceof LumaError ? error.details : {};
    const delay = this.backoff.recordFailure(Date.now());
    // Clients that waited for this start learn when the next try is allowed.
    if (error instanceof LumaError) error.details.retryAfterMs = delay;
    this.lastError = {
      at: new Date().toISOString(),
      code: error instanceof LumaError ? error.code : 'replica_exited',
      message: describeError(error),
      exitCode: typeof details.exitCode === 'number' ? details.exitCode : undefined,
      logTail: Array.isArray(details.logTail) ? (details.logTail as string[]) : undefined,
    };
    this.log.error(
      { err: error, exitCode: this.lastError.exitCode, logTail: this.lastError.logTail, retryInMs: delay },
      'replica start failed',
    );
  }

  // ---- routing -----------------------------------------------------------------------------

  /** Replicas that Caddy may pick. */
  routableReplicas(): Replica[] {
    return this.replicas.inState('ready').map((r) => r.replica);
  }

  /**
   * Publishes the current ready set. Calls made while a publish runs coalesce into one more
   * publish of the state at that time; the returned promise resolves after it.
   */
  schedulePublish(): Promise<void> {
    if (this.publishing) {
      this.publishAgain = true;
      return this.publishing;
    }
    this.publishing = (async () => {
      try {
        do {
          this.publishAgain = false;
          if (this.deleted) return;
          await this.options.publisher.publish(this.spec, this.routableReplicas());
        } while (this.publishAgain);
        this.routeStale = false;
      } finally {
        this.publishing = null;
      }
    })();
    this.publishing.catch((error: unknown) => {
      this.routeStale = true;
      this.log.error({ err: error }, 'publish route failed; reconcile retries');
    });
    return this.publishing;
  }

  // ---- replica set changes -------------------------------------------------------------------

  /** Starts replicas up to `minReplicas` unless starts are backing off. */
  ensureMinimum(): Promise<void> {
    return this.operations.add(async () => {
      if (this.deleted || this.retryDelay(Date.now()) > 0) return;
      const active = this.activeReplicas();
      const missing = this.spec.minReplicas - active;
      if (missing <= 0) return;
      this.log.info({ missing, minReplicas: this.spec.minReplicas }, 'starting replicas for minimum');
      await Promise.allSettled(Array.from({ length: missing }, () => this.startReplica('minimum')));
    });
  }

  /** In-flight requests over the ready replicas: Caddy's counts plus wake-up replays. */
  concurrency(): number {
    return this.replicas.concurrency();
  }

  /** Ready replicas plus starts in progress. */
  activeReplicas(): number {
    return this.readyReplicas() + this.starting;
  }

  readyReplicas(): number {
    return this.replicas.inState('ready').length;
  }

  /** True while a replica-set change is queued or running. */
  get busy(): boolean {
    return this.operations.size + this.operations.pending > 0 || this.starting > 0;
  }

  /**
   * Starts or drains replicas so that `desired` are ready or starting. Scale-down removes the
   * least busy replicas first, after they left routing and finished their requests.
   */
  scaleTo(desired: number, reason: string): Promise<void> {
    return this.operations.add(async () => {
      if (this.deleted) return;
      const target = Math.min(Math.max(desired, this.spec.minReplicas), this.spec.maxReplicas);
      const active = this.activeReplicas();
      if (target === active) return;

      this.desired = target;
      this.lastScaling = { at: new Date().toISOString(), from: active, to: target, reason };
      this.log.info({ from: active, to: target, reason }, 'scaling replicas');

      if (target > active) {
        if (this.retryDelay(Date.now()) > 0) return;
        await Promise.allSettled(Array.from({ length: target - active }, () => this.startReplica('scale-up')));
        return;
      }

      const ready = this.replicas
        .inState('ready')
        .sort((a, b) => this.replicas.load(a) - this.replicas.load(b));
      await this.drainAndStop(ready.slice(0, active - target), 'scale-down');
    });
  }

  /** Scales to zero when idle for the inactivity timeout and nothing is in flight. */
  maybeSleep(now: number): Promise<void> | undefined {
    if (this.deleted || this.spec.minReplicas > 0) return undefined;
    if (this.starting > 0 || this.operations.size + this.operations.pending > 0) return undefined;
    const ready = this.replicas.inState('ready');
    if (ready.length === 0) return undefined;
    if (ready.some((r) => this.replicas.load(r) > 0)) {
      this.touch(now);
      return undefined;
    }
    const timeout = this.spec.inactivityTimeoutMs ?? this.options.defaults.inactivityTimeoutMs;
    const idleSince = this.lastRequestAt ?? 0;
    if (now - idleSince < timeout) return undefined;

    return this.operations.add(async () => {
      const idle = this.replicas.inState('ready');
      if (idle.length === 0 || (this.lastRequestAt ?? 0) > idleSince) return;
      this.log.info({ replicas: idle.length, idleMs: now - idleSince }, 'service idle, scaling to zero');
      this.lastScaling = { at: new Date().toISOString(), from: idle.length, to: 0, reason: `no request for ${Math.round((now - idleSince) / 1000)}s` };
      this.desired = null;
      await this.drainAndStop(idle, 'idle');
    });
  }

  /**
   * Applies a changed spec. The spec takes effect at once, for views and for starts that begin
   * from now on. Replicas are replaced when fields that need a new container changed.
   */
  update(spec: ServiceSpec): Promise<void> {
    this.spec = spec;
    this.specHash = replicaSpecHash(spec);
    this.backoff.reset();
    this.crashes.reset();
    this.lastError = null;
    return this.operations.add(async () => {
      await this.schedulePublish();
      await this.replaceOutdated();
    });
  }

  /** Replaces adopted replicas created from an older spec. */
  refresh(): Promise<void> {
    return this.operations.add(() => this.replaceOutdated());
  }

  /**
   * Starts replicas of the current spec, then drains those of older specs (no gap in service).
   * Replicas still starting from an older spec are left to finish and replaced afterwards.
   */
  private async replaceOutdated(): Promise<void> {
    const spec = this.spec;
    const ready = this.replicas.inState('ready');
    const outdated = ready.filter((r) => r.replica.specHash !== this.specHash);
    if (outdated.length === 0) return;
    const missing = Math.max(outdated.length, spec.minReplicas) - (ready.length - outdated.length);
    if (missing > 0) {
      this.log.info({ replicas: missing }, 'replacing replicas after spec change');
      const results = await Promise.allSettled(Array.from({ length: missing }, () => this.startReplica('replace')));
      if (results.every((r) => r.status === 'rejected')) {
        this.log.warn('no new replica started; outdated replicas keep serving');
        return;
      }
    }
    await this.drainAndStop(outdated, 'replace');
  }

  /**
   * Cancels starts in progress (their waiters get `service_deleted`), removes the route, then
   * drains and removes every replica.
   */
  delete(): Promise<void> {
    this.deleted = true;
    this.lifetime.abort(this.deletedError());
    clearTimeout(this.replacementTimer);
    return this.operations.add(async () => {
      await Promise.allSettled([...this.starts]);
      const records = this.replicas.all();
      await this.drainAndStop(records, 'delete', () => this.options.publisher.unpublish(this.name));
    });
  }

  /**
   * Takes replicas out of routing, waits for their in-flight requests (up to the drain timeout),
   * then stops and removes their containers.
   */
  private async drainAndStop(
    records: ReplicaRecord[],
    reason: DrainReason,
    reroute: () => Promise<void> = () => this.schedulePublish(),
  ): Promise<void> {
    for (const record of records) {
      record.replica.state = 'draining';
      record.drainReason = reason;
    }
    // Draining addresses stay known to Caddy first, so their in-flight counts survive the
    // route change that takes them out of rotation.
    try {
      await this.options.publisher.setDraining(this.name, this.replicas.drainingAddresses());
      await reroute();
    } catch (error) {
      this.log.warn({ err: error }, 'route update before drain failed; draining anyway');
    }

    await Promise.all(
      records.map((record) =>
        drainReplica({
          record,
          reason,
          table: this.replicas,
          inFlight: this.options.inFlight,
          runtime: this.options.runtime,
          drainTimeoutMs: this.options.drainTimeoutMs,
          stopGracePeriodMs: this.options.stopGracePeriodMs,
          logger: this.log,
          onRemoved: () => {
            this.crashes.recordStop(servedMs(record, Date.now()));
            return this.options.publisher.setDraining(this.name, this.replicas.drainingAddresses());
          },
        }),
      ),
    );
  }

  /** Addresses of this service's replicas that are draining. */
  draining(): string[] {
    return this.replicas.drainingAddresses();
  }

  // ---- observed state from Docker ------------------------------------------------------------

  /** Time a new replica gets to respond over HTTP. */
  get startupTimeoutMs(): number {
    return this.spec.startupTimeoutMs ?? this.options.defaults.startupTimeoutMs;
  }

  /** Aborted when the service is deleted or its starts are cancelled at shutdown. */
  get signal(): AbortSignal {
    return this.lifetime.signal;
  }

  /**
   * Tracks a running container of an earlier run that has not responded yet. It counts as a
   * start in progress, so wake-ups join it, becomes ready when `ready` resolves, and is removed
   * when `ready` rejects.
   */
  adoptStarting(replica: Replica, ready: Promise<void>): void {
    const record: ReplicaRecord = { replica: { ...replica, state: 'starting' }, leases: 0 };
    this.replicas.add(record);
    this.starting += 1;
    const log = this.log.child({ replica: replica.name });

    const adopted = ready.then(
      async () => {
        if (this.deleted) {
          this.replicas.delete(replica.id);
          await this.options.runtime.removeReplica(replica.id).catch(() => undefined);
          throw this.deletedError();
        }
        record.replica.state = 'ready';
        record.replica.readyAt = new Date().toISOString();
        this.touch();
        log.info({ address: replica.address }, 'replica adopted');
        this.schedulePublish().catch(() => undefined);
        if (record.replica.specHash !== this.specHash) this.refresh().catch(() => undefined);
        return record;
      },
      async (error: unknown) => {
        this.replicas.delete(replica.id);
        log.warn({ err: error }, 'adopted container did not respond; removing it');
        await this.options.runtime.removeReplica(replica.id).catch((removeError: unknown) => {
          log.warn({ err: removeError }, 'remove adopted container failed; the reconcile scan retries');
        });
        throw error;
      },
    );
    const settled = adopted.finally(() => {
      this.starting -= 1;
    });
    this.track(settled);
  }

  /** Adopts a running container found at start-up or by a reconcile scan. */
  adopt(replica: Replica): void {
    this.replicas.add({ replica, leases: 0 });
    // The inactivity timeout restarts for adopted replicas: their last request is not known.
    this.touch();
  }

  has(id: string): boolean {
    return this.replicas.has(id);
  }

  /** Handles a container that exited without being stopped by Luma. */
  onContainerExit(id: string, exitCode: number | null, oomKilled = false): void {
    const record = this.replicas.get(id);
    if (!record) return;
    record.exit = { exitCode };
    if (oomKilled) record.oomKilled = true;
    if (record.replica.state === 'starting') return; // the readiness probe reports it
    if (record.replica.state === 'stopping' || record.replica.state === 'draining') return;
    this.loseReplica(record, { exitCode, containerGone: false });
  }

  /** Marks a replica that the kernel killed for its memory limit; Docker reports the exit next. */
  onContainerOom(id: string): void {
    const record = this.replicas.get(id);
    if (record) record.oomKilled = true;
  }

  /** Forgets a replica whose container no longer exists. */
  onContainerGone(id: string): void {
    const record = this.replicas.get(id);
    if (!record) return;
    if (record.replica.state === 'starting') {
      record.exit = { exitCode: null };
      return;
    }
    if (record.replica.state === 'ready') {
      this.loseReplica(record, { exitCode: record.exit?.exitCode ?? null, containerGone: true });
      return;
    }
    this.replicas.delete(id);
  }

  /**
   * Takes a ready replica that died out of routing at once, records the crash (exit code, OOM
   * kill and output in `lastError`), and schedules a replacement after the crash delay.
   */
  private loseReplica(record: ReplicaRecord, exit: { exitCode: number | null; containerGone: boolean }): void {
    const now = Date.now();
    const { replica } = record;
    replica.state = 'failed';
    this.replicas.delete(replica.id);
    this.schedulePublish().catch(() => undefined);

    const served = servedMs(record, now);
    const delayMs = this.crashes.record(now, served);
    this.lastError = reportCrash({
      record,
      exit,
      now,
      servedMs: served,
      replaceInMs: delayMs,
      runtime: this.options.runtime,
      logger: this.log,
    });
    this.scheduleReplacement(delayMs);
  }

  /** Replaces lost replicas after `delayMs`; see `replaceLost`. */
  private scheduleReplacement(delayMs: number): void {
    clearTimeout(this.replacementTimer);
    this.replacementTimer = setTimeout(() => {
      this.replacementTimer = undefined;
      this.replaceLost().catch((error: unknown) => this.log.error({ err: error }, 'replace exited replica failed'));
    }, delayMs);
    this.replacementTimer.unref();
  }

  /**
   * Starts replicas until the service has as many as it should: `minReplicas`, and while the
   * service is awake (a request within the inactivity timeout) at least one, or the count of
   * the last scaling decision.
   */
  private replaceLost(): Promise<void> {
    return this.operations.add(async () => {
      const now = Date.now();
      if (this.deleted || this.retryDelay(now) > 0) return;
      const timeout = this.spec.inactivityTimeoutMs ?? this.options.defaults.inactivityTimeoutMs;
      const awake = this.lastRequestAt !== null && now - this.lastRequestAt < timeout;
      const target = Math.min(this.spec.maxReplicas, Math.max(this.spec.minReplicas, awake ? (this.desired ?? 1) : 0));
      const missing = target - this.activeReplicas();
      if (missing <= 0) return;
      this.log.info({ missing, target }, 'replacing exited replicas');
      await Promise.allSettled(Array.from({ length: missing }, () => this.startReplica('replace')));
    });
  }

  /** Milliseconds until a new replica may start after failed starts or crashes; 0 when it may now. */
  private retryDelay(now: number): number {
    return Math.max(this.backoff.remaining(now), this.crashes.remaining(now));
  }

  knownReplicaIds(): string[] {
    return this.replicas.ids();
  }

  // ---- views -------------------------------------------------------------------------------

  state(): ServiceState {
    return deriveState({ replicas: this.replicas, starting: this.starting, lastError: this.lastError });
  }

  status(): ServiceStatus {
    return buildStatus(
      {
        spec: this.spec,
        replicas: this.replicas,
        starting: this.starting,
        lastRequestAt: this.lastRequestAt,
        lastError: this.lastError,
        lastScaling: this.lastScaling,
        desired: this.desired,
        retryAt: Math.max(this.backoff.retryAtTime ?? 0, this.crashes.retryAtTime ?? 0) || null,
      },
      Date.now(),
    );
  }

  private deletedError(): LumaError {
    return new LumaError('service_deleted', `service "${this.name}" was deleted`, { details: { service: this.name } });
  }

  /** Resolves when every start in progress has ended, successfully or not. */
  async startsSettled(): Promise<void> {
    await Promise.allSettled([...this.starts]);
  }

  /** Aborts the starts in progress with `reason`; they remove their containers. For shutdown. */
  cancelStarts(reason: Error): void {
    clearTimeout(this.replacementTimer);
    this.lifetime.abort(reason);
  }
}

type StartReason = 'wake' | 'minimum' | 'replace' | 'scale-up';

