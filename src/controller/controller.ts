import PQueue from 'p-queue';
import type { ServiceBackend, ServiceStatus } from '../api/backend.js';
import type { AccessLogEntry } from '../caddy/types.js';
import { LumaError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ServiceSpec } from '../model.js';
import type { ReplicaLease, ReplicaProvider } from '../wake/types.js';
import { adoptContainers } from './adoption.js';
import { settlesWithin } from './async.js';
import type { ContainerSnapshot, InFlightSource, ReadinessProbe, ReplicaRuntime, UpstreamPublisher } from './ports.js';
import { ReplicaStarter } from './replica-starter.js';
import { ServiceRuntime } from './service-runtime.js';
import { Autoscaler, targetConcurrency } from '../scaler/autoscaler.js';
import type { AutoscalerOptions } from '../scaler/options.js';

/** Persistence of service specs (src/store implements this). */
export interface SpecStore {
  put(spec: ServiceSpec): Promise<void>;
  remove(name: string): Promise<unknown>;
}

export interface ControllerOptions {
  logger: Logger;
  runtime: ReplicaRuntime;
  probe: ReadinessProbe;
  publisher: UpstreamPublisher;
  inFlight: InFlightSource;
  store: SpecStore;
  defaults: { startupTimeoutMs: number; inactivityTimeoutMs: number; concurrency: number };
  drainTimeoutMs: number;
  stopGracePeriodMs: number;
  /** Period of the full Docker scan that heals missed events. */
  reconcileIntervalMs?: number;
  /** Period of the idle check that scales services to zero. */
  idleCheckIntervalMs?: number;
  /** Time `stop()` waits for API writes and replica starts before it cancels the starts. Default 10 s. */
  stopWaitMs?: number;
  /** Global target of concurrent requests per replica (`-scale-threshold`). */
  scaleThreshold: number;
  /** Requests held by the wake-up handler for a service; excluded from the scaling signal. */
  queuedRequests?: (service: string) => number;
  autoscaler?: AutoscalerOptions;
}

type ServiceView = { spec: ServiceSpec; status: ServiceStatus };

const STOP_WAIT_MS = 10_000;
/** Period of the scan retries after a failed scan. */
const RECONCILE_RETRY_MS = 1_000;
/** Time `stop()` gives cancelled starts to remove their containers. */
const CANCEL_WAIT_MS = 5_000;

/** Containers younger than this are never treated as orphans: their creator may not have recorded them yet. */
const ORPHAN_GRACE_MS = 60_000;

/**
 * Owns every service's desired state and converges Docker and Caddy towards it. Implements the
 * REST API's backend and the wake-up handler's replica provider.
 */
export class Controller implements ServiceBackend, ReplicaProvider {
  private readonly services = new Map<string, ServiceRuntime>();
  private readonly hostIndex = new Map<string, string>();
  private readonly writes = new PQueue({ concurrency: 1 });
  private readonly starter: ReplicaStarter;
  private readonly autoscaler: Autoscaler;
  private readonly log: Logger;
  private timers: NodeJS.Timeout[] = [];
  private reconciling: Promise<void> | null = null;
  /** Whether the last periodic scan failed. */
  private reconcileFailing = false;
  private stopping = false;

  constructor(private readonly options: ControllerOptions) {
    this.log = options.logger;
    this.starter = new ReplicaStarter(options.runtime, options.probe, options.logger.child({ component: 'starter' }));
    this.autoscaler = new Autoscaler(options.autoscaler);
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  /** Loads services, adopts running containers and installs every route. */
  async start(specs: ServiceSpec[]): Promise<void> {
    for (const spec of specs) this.addRuntime(spec);

    const containers = await this.options.runtime.listReplicas();
    await adoptContainers({
      containers,
      services: this.services,
      runtime: this.options.runtime,
      probe: this.options.probe,
      stopGracePeriodMs: this.options.stopGracePeriodMs,
      logger: this.log,
    });

    await this.republishAll().catch((error: unknown) => {
      this.log.error({ err: error }, 'install caddy routes failed; retrying in the background');
    });
    for (const service of this.services.values()) this.ensureMinimum(service);

    const reconcileMs = this.options.reconcileIntervalMs ?? 5_000;
    const idleMs = this.options.idleCheckIntervalMs ?? 1_000;
    this.every(reconcileMs, () => this.scheduledReconcile());
    // After a failed scan, for example while Docker is unreachable, scan every second until one
    // succeeds, so that replicas that died meanwhile are replaced soon after Docker is back.
    this.every(RECONCILE_RETRY_MS, async () => {
      if (this.reconcileFailing) await this.scheduledReconcile();
    });
    this.every(idleMs, async () => this.checkIdle());
  }

  /**
   * Rejects new API writes and wake-ups with `shutting_down`, stops the timers, and waits up to
   * `stopWaitMs` for queued API writes and starts in progress. Starts still running after that
   * are cancelled: they remove their containers and their waiters get `shutting_down`. Drains
   * are not awaited. Running containers keep running, for the next start to adopt.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];

    const runtimes = [...this.services.values()];
    const waitMs = this.options.stopWaitMs ?? STOP_WAIT_MS;
    const pending = Promise.all([this.writes.onIdle(), ...runtimes.map((runtime) => runtime.startsSettled())]);
    const settled = await settlesWithin(pending, waitMs);
    if (!settled) this.log.warn({ waitedMs: waitMs }, 'cancel replica starts still running at shutdown');

    // Also keeps replacements and Docker events from starting replicas while Luma exits.
    const reason = new LumaError('shutting_down', 'luma is shutting down; retry when it is back');
    for (const runtime of runtimes) runtime.cancelStarts(reason);
    if (!settled) await settlesWithin(Promise.all(runtimes.map((runtime) => runtime.startsSettled())), CANCEL_WAIT_MS);
  }

  private every(periodMs: number, task: () => Promise<void>): void {
    let running = false;
    const timer = setInterval(() => {
      if (running || this.stopping) return;
      running = true;
      task()
        .catch((error: unknown) => this.log.error({ err: error }, 'periodic task failed'))
        .finally(() => {
          running = false;
        });
    }, periodMs);
    timer.unref();
    this.timers.push(timer);
  }

  // ---- ReplicaProvider ---------------------------------------------------------------------

  async acquire(service: string, signal: AbortSignal): Promise<ReplicaLease> {
    if (this.stopping) throw new LumaError('shutting_down', 'luma is shutting down', { details: { service } });
    const runtime = this.services.get(service);
    if (!runtime) throw notFound(service);
    return runtime.acquire(signal);
  }

  serviceForHost(host: string): ServiceSpec | undefined {
    const name = this.hostIndex.get(host.toLowerCase());
    return name === undefined ? undefined : this.services.get(name)?.spec;
  }

  service(name: string): ServiceSpec | undefined {
    return this.services.get(name)?.spec;
  }

  // ---- ServiceBackend ----------------------------------------------------------------------

  list(): ServiceView[] {
    return [...this.services.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((s) => this.view(s));
  }

  get(name: string): ServiceView | undefined {
    const runtime = this.services.get(name);
    return runtime ? this.view(runtime) : undefined;
  }

  create(spec: ServiceSpec): Promise<ServiceView> {
    return this.write(async () => {
      if (this.services.has(spec.name)) {
        throw new LumaError('service_exists', `service "${spec.name}" already exists`, { details: { service: spec.name } });
      }
      this.checkHosts(spec);
      await this.options.store.put(spec);

      const runtime = this.addRuntime(spec);
      this.log.info({ service: spec.name, image: spec.image, minReplicas: spec.minReplicas }, 'service created');
      await runtime.schedulePublish().catch(() => undefined);
      this.ensureMinimum(runtime);
      return this.view(runtime);
    });
  }

  update(name: string, spec: ServiceSpec): Promise<ServiceView> {
    return this.write(async () => {
      const runtime = this.services.get(name);
      if (!runtime) throw notFound(name);
      this.checkHosts(spec);
      await this.options.store.put(spec);

      this.unindexHosts(runtime.spec);
      this.indexHosts(spec);
      this.log.info({ service: name, generation: spec.generation }, 'service updated');
      runtime
        .update(spec)
        .then(() => this.ensureMinimum(runtime))
        .catch((error: unknown) => this.log.error({ err: error, service: name }, 'apply service update failed'));
      return this.view(runtime);
    });
  }

  delete(name: string): Promise<void> {
    return this.write(async () => {
      const runtime = this.services.get(name);
      if (!runtime) throw notFound(name);

      await runtime.delete();
      await this.options.store.remove(name);
      this.unindexHosts(runtime.spec);
      this.services.delete(name);
      this.log.info({ service: name }, 'service deleted');
    });
  }

  private write<T>(task: () => Promise<T>): Promise<T> {
    if (this.stopping) {
      return Promise.reject(new LumaError('shutting_down', 'luma is shutting down; retry when it is back'));
    }
    return this.writes.add(task) as Promise<T>;
  }

  private view(runtime: ServiceRuntime): ServiceView {
    return { spec: runtime.spec, status: runtime.status() };
  }

  private checkHosts(spec: ServiceSpec): void {
    for (const host of spec.hosts) {
      const owner = this.hostIndex.get(host);
      if (owner !== undefined && owner !== spec.name) {
        throw new LumaError('host_in_use', `host "${host}" is already routed to service "${owner}"`, {
          details: { host, service: owner, field: 'hosts' },
        });
      }
    }
  }

  private indexHosts(spec: ServiceSpec): void {
    for (const host of spec.hosts) this.hostIndex.set(host, spec.name);
  }

  private unindexHosts(spec: ServiceSpec): void {
    for (const host of spec.hosts) {
      if (this.hostIndex.get(host) === spec.name) this.hostIndex.delete(host);
    }
  }

  private addRuntime(spec: ServiceSpec): ServiceRuntime {
    const runtime = new ServiceRuntime({
      spec,
      runtime: this.options.runtime,
      starter: this.starter,
      publisher: this.options.publisher,
      inFlight: this.options.inFlight,
      logger: this.log.child({ service: spec.name }),
      defaults: this.options.defaults,
      drainTimeoutMs: this.options.drainTimeoutMs,
      stopGracePeriodMs: this.options.stopGracePeriodMs,
    });
    this.services.set(spec.name, runtime);
    this.indexHosts(spec);
    return runtime;
  }

  private ensureMinimum(runtime: ServiceRuntime): void {
    if (this.stopping) return;
    runtime.ensureMinimum().catch((error: unknown) => {
      this.log.error({ err: error, service: runtime.name }, 'start minimum replicas failed');
    });
  }

  // ---- activity ----------------------------------------------------------------------------

  /** Attributes one access-log entry to its service: host routes first, then the path prefix. */
  recordAccess(entry: AccessLogEntry): void {
    const byHost = this.hostIndex.get(entry.host);
    const name = byHost ?? firstPathSegment(entry.uri);
    if (name === undefined) return;
    this.services.get(name)?.touch(entry.at.getTime());
  }

  /**
   * Takes one sample of Caddy's in-flight counts: services with requests in flight count as
   * active, and each awake service's concurrency feeds the autoscaler.
   */
  recordInFlight(counts: ReadonlyMap<string, number>): void {
    const now = Date.now();
    for (const runtime of this.services.values()) {
      for (const replica of runtime.status().replicas) {
        if (replica.address && (counts.get(replica.address) ?? 0) > 0) {
          runtime.touch(now);
          break;
        }
      }
    }
    if (!this.stopping) this.scale(performance.now());
  }

  /** Runs the autoscaler for every awake service and applies changed replica counts. */
  private scale(at: number): void {
    for (const runtime of this.services.values()) {
      const ready = runtime.readyReplicas();
      if (runtime.isDeleted || ready === 0) {
        this.autoscaler.forget(runtime.name);
        continue;
      }
      this.autoscaler.record(runtime.name, { at, concurrency: runtime.concurrency() });
      const outcome = this.autoscaler.decide(runtime.name, {
        at,
        readyReplicas: ready,
        minReplicas: runtime.spec.minReplicas,
        maxReplicas: runtime.spec.maxReplicas,
        target: targetConcurrency(runtime.spec, this.options.scaleThreshold),
        queuedRequests: this.options.queuedRequests?.(runtime.name) ?? 0,
      });
      if (runtime.busy || outcome.desired === runtime.activeReplicas()) continue;
      runtime.scaleTo(outcome.desired, outcome.reason).catch((error: unknown) => {
        this.log.error({ err: error, service: runtime.name }, 'scale replicas failed');
      });
    }
  }

  private async checkIdle(): Promise<void> {
    const now = Date.now();
    for (const runtime of this.services.values()) {
      runtime.maybeSleep(now)?.catch((error: unknown) => {
        this.log.error({ err: error, service: runtime.name }, 'scale to zero failed');
      });
    }
  }

  // ---- reconcile ---------------------------------------------------------------------------

  /** Reacts to a container event from Docker; the periodic scan covers missed ones. */
  onContainerEvent(event: { kind: 'die' | 'oom' | 'destroy' | 'start'; id: string; service: string; exitCode?: number }): void {
    const runtime = this.services.get(event.service);
    if (!runtime) return;
    if (event.kind === 'oom') runtime.onContainerOom(event.id);
    if (event.kind === 'die') runtime.onContainerExit(event.id, event.exitCode ?? null);
    if (event.kind === 'destroy') runtime.onContainerGone(event.id);
    if (event.kind === 'die' || event.kind === 'destroy') this.ensureMinimum(runtime);
  }

  /** Runs a periodic scan; logs the first failure of a run of failures and the recovery. */
  private async scheduledReconcile(): Promise<void> {
    try {
      await this.reconcile();
    } catch (error) {
      if (!this.reconcileFailing) this.log.error({ err: error }, 'reconcile scan failed; retrying every second');
      this.reconcileFailing = true;
      return;
    }
    if (this.reconcileFailing) this.log.info('reconcile scan succeeded again');
    this.reconcileFailing = false;
  }

  /** Compares Docker's containers with the known replicas and repairs the difference. */
  reconcile(): Promise<void> {
    if (!this.reconciling) {
      this.reconciling = this.reconcileOnce().finally(() => {
        this.reconciling = null;
      });
    }
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<void> {
    const containers = await this.options.runtime.listReplicas();
    const byId = new Map<string, ContainerSnapshot>(containers.map((c) => [c.id, c]));

    for (const runtime of this.services.values()) {
      for (const id of runtime.knownReplicaIds()) {
        const container = byId.get(id);
        if (!container) runtime.onContainerGone(id);
        else if (!container.running) runtime.onContainerExit(id, container.exitCode, container.oomKilled);
      }
    }

    for (const container of containers) {
      const runtime = this.services.get(container.service);
      if (runtime?.has(container.id)) continue;
      if (Date.now() - Date.parse(container.createdAt) < ORPHAN_GRACE_MS) continue;
      this.log.warn({ container: container.name, service: container.service }, 'removing orphan container');
      await this.options.runtime.removeReplica(container.id).catch((error: unknown) => {
        this.log.warn({ err: error, container: container.name }, 'remove orphan container failed');
      });
    }

    for (const runtime of this.services.values()) {
      this.ensureMinimum(runtime);
      if (runtime.routeStale) runtime.schedulePublish().catch(() => undefined);
    }
  }

  /** Rewrites every route, for start-up and after Caddy restarted without Luma's config. */
  async republishAll(): Promise<void> {
    const runtimes = [...this.services.values()];
    await this.options.publisher.publishAll(runtimes.map((s) => ({ spec: s.spec, replicas: s.routableReplicas() })));
    for (const runtime of runtimes) {
      await this.options.publisher.setDraining(runtime.name, runtime.draining());
    }
  }
}

function notFound(name: string): LumaError {
  return new LumaError('service_not_found', `service "${name}" not found`, { details: { service: name } });
}

function firstPathSegment(uri: string): string | undefined {
  const match = /^\/([^/?#]+)/.exec(uri);
  return match?.[1];
}
