import PQueue from 'p-queue';
import { LumaError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Replica, ServiceSpec, ServiceState } from '../model.js';
import type { ReplicaView, ServiceStatus } from '../api/backend.js';
import type { ReplicaLease } from '../wake/types.js';
import { StartBackoff } from './backoff.js';
import type { InFlightSource, ReplicaRuntime, UpstreamPublisher } from './ports.js';
import type { ReplicaStarter } from './replica-starter.js';
import { replicaSpecHash } from './spec-hash.js';
import { abortable } from './async.js';
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
 * A wake (`acquire`) starts at most one replica at a time (single-flight). Every other change of
 * the replica set (minimum floor, scaling, scale to zero, replacement, delete) runs through
 * `operations`, one at a time. Replicas leave routing before they are drained and stopped.
 */
export class ServiceRuntime {
  spec: ServiceSpec;
  private specHash: string;
  private readonly replicas: ReplicaTable;
  private readonly operations = new PQueue({ concurrency: 1 });
  private readonly backoff = new StartBackoff();
  private pendingWake: Promise<ReplicaRecord> | null = null;
  private starting = 0;
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

    const waitMs = this.backoff.remaining(Date.now());
    if (waitMs > 0) {
      throw new LumaError('wake_backoff', `service "${this.name}" failed to start recently: ${this.lastError?.message ?? 'unknown error'}`, {
        details: { service: this.name, retryAfterMs: waitMs },
      });
    }

    if (this.pendingWake === null) {
      this.pendingWake = this.startReplica('wake').finally(() => {
        this.pendingWake = null;
      });
      // Every waiter may have gone away; the failure is already logged by startReplica.
      this.pendingWake.catch(() => undefined);
    }
    const record = await abortable(this.pendingWake, signal);
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

  private async startReplica(reason: 'wake' | 'minimum' | 'replace' | 'scale-up'): Promise<ReplicaRecord> {
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
      });
    } catch (error) {
      if (record) this.replicas.delete(record.replica.id);
      this.recordFailure(error);
      throw error;
    } finally {
      this.starting -= 1;
    }

    if (!record) throw new LumaError('replica_exited', `replica of service "${spec.name}" was not created`);
    record.replica.state = 'ready';
    record.replica.readyAt = new Date().toISOString();
    this.backoff.reset();
    this.lastError = null;
    this.log.info(
      { replica: record.replica.name, address: record.replica.address, bootMs: Date.now() - startedAt, reason },
      'replica ready',
    );
    this.schedulePublish();
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
      if (this.deleted || this.backoff.remaining(Date.now()) > 0) return;
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

  /** Ready replicas plus replicas starting for this service. */
  activeReplicas(): number {
    return this.replicas.countActive() + (this.pendingWake ? 1 : 0);
  }

  readyReplicas(): number {
    return this.replicas.inState('ready').length;
  }

  /** True while a replica-set change is queued or running. */
  get busy(): boolean {
    return this.operations.size + this.operations.pending > 0 || this.pendingWake !== null;
  }

  /**
   * Starts or drains replicas so that `desired` are ready or starting. Scale-down removes the
   * least busy replicas first, after they left routing and finished their requests.
   */
  scaleTo(desired: number, reason: string): Promise<void> {
    return this.operations.add(async () => {
      if (this.deleted) return;
      const target = Math.min(Math.max(desired, this.spec.minReplicas), this.spec.maxReplicas);
      const active = this.replicas.countActive();
      if (target === active) return;

      this.desired = target;
      this.lastScaling = { at: new Date().toISOString(), from: active, to: target, reason };
      this.log.info({ from: active, to: target, reason }, 'scaling replicas');

      if (target > active) {
        if (this.backoff.remaining(Date.now()) > 0) return;
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
    if (this.pendingWake || this.starting > 0 || this.operations.size + this.operations.pending > 0) return undefined;
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

  /** Applies a changed spec; replicas are replaced when fields that need a new container changed. */
  update(spec: ServiceSpec): Promise<void> {
    return this.operations.add(async () => {
      this.spec = spec;
      this.specHash = replicaSpecHash(spec);
      this.backoff.reset();
      this.lastError = null;
      await this.schedulePublish();
      await this.replaceOutdated();
    });
  }

  /** Replaces adopted replicas created from an older spec. */
  refresh(): Promise<void> {
    return this.operations.add(() => this.replaceOutdated());
  }

  /** Starts replicas of the current spec, then drains those of older specs (no gap in service). */
  private async replaceOutdated(): Promise<void> {
    const spec = this.spec;
    const outdated = this.replicas.inState('ready', 'starting').filter((r) => r.replica.specHash !== this.specHash);
    if (outdated.length === 0) return;
    const readyOutdated = outdated.filter((r) => r.replica.state === 'ready').length;
    const wanted = Math.max(readyOutdated, spec.minReplicas);
    if (wanted > 0) {
      this.log.info({ replicas: wanted }, 'replacing replicas after spec change');
      const results = await Promise.allSettled(Array.from({ length: wanted }, () => this.startReplica('replace')));
      if (results.every((r) => r.status === 'rejected')) {
        this.log.warn('no new replica started; outdated replicas keep serving');
        return;
      }
    }
    await this.drainAndStop(outdated, 'replace');
  }

  /** Removes the route, then drains and removes every replica. */
  delete(): Promise<void> {
    this.deleted = true;
    return this.operations.add(async () => {
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
          onRemoved: () => this.options.publisher.setDraining(this.name, this.replicas.drainingAddresses()),
        }),
      ),
    );
  }

  /** Addresses of this service's replicas that are draining. */
  draining(): string[] {
    return this.replicas.drainingAddresses();
  }

  // ---- observed state from Docker ------------------------------------------------------------

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
  onContainerExit(id: string, exitCode: number | null): void {
    const record = this.replicas.get(id);
    if (!record) return;
    record.exit = { exitCode };
    if (record.replica.state === 'starting') return; // the readiness probe reports it
    if (record.replica.state === 'stopping' || record.replica.state === 'draining') return;

    this.log.warn({ replica: record.replica.name, exitCode }, 'replica exited unexpectedly');
    record.replica.state = 'failed';
    this.replicas.delete(id);
    this.schedulePublish().catch(() => undefined);
    this.options.runtime.removeReplica(id).catch((error: unknown) => {
      this.log.warn({ err: error, replica: record.replica.name }, 'remove exited replica failed');
    });
  }

  /** Forgets a replica whose container no longer exists. */
  onContainerGone(id: string): void {
    const record = this.replicas.get(id);
    if (!record) return;
    if (record.replica.state === 'starting') {
      record.exit = { exitCode: null };
      return;
    }
    this.replicas.delete(id);
    if (record.replica.state === 'ready') {
      this.log.warn({ replica: record.replica.name }, 'replica container disappeared');
      this.schedulePublish().catch(() => undefined);
    }
  }

  knownReplicaIds(): string[] {
    return this.replicas.ids();
  }

  // ---- views -------------------------------------------------------------------------------

  state(): ServiceState {
    if (this.replicas.inState('ready').length > 0) return 'ready';
    if (this.pendingWake || this.starting > 0 || this.replicas.inState('starting').length > 0) return 'starting';
    if (this.lastError) return 'failed';
    return 'sleeping';
  }

  status(): ServiceStatus {
    const replicas: ReplicaView[] = this.replicas.all().map((record) => ({
      id: record.replica.id,
      name: record.replica.name,
      state: record.replica.state,
      address: record.replica.address ?? null,
      generation: record.replica.generation,
      createdAt: record.replica.createdAt,
      readyAt: record.replica.readyAt ?? null,
      inFlight: this.replicas.load(record),
    }));
    const ready = replicas.filter((r) => r.state === 'ready');
    const retryAt = this.backoff.retryAtTime;
    return {
      state: this.state(),
      desiredReplicas: this.state() === 'sleeping' ? this.spec.minReplicas : Math.max(this.spec.minReplicas, this.desired ?? ready.length),
      readyReplicas: ready.length,
      replicas,
      concurrency: ready.reduce((sum, r) => sum + r.inFlight, 0),
      lastRequestAt: this.lastRequestAt === null ? null : new Date(this.lastRequestAt).toISOString(),
      lastError: this.lastError,
      retryAt: retryAt !== null && retryAt > Date.now() ? new Date(retryAt).toISOString() : null,
      lastScaling: this.lastScaling,
    };
  }

  private deletedError(): LumaError {
    return new LumaError('service_deleted', `service "${this.name}" was deleted`, { details: { service: this.name } });
  }

  /** Waits for queued operations; used at shutdown and in tests. */
  async idle(): Promise<void> {
    await this.operations.onIdle();
    if (this.pendingWake) await this.pendingWake.catch(() => undefined);
  }
}

