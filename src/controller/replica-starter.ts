import { LumaError, describeError, isLumaError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Replica, ServiceSpec } from '../model.js';
import type { ReadinessProbe, ReplicaRuntime } from './ports.js';

/** Lines of container output kept with a failed start or a crash, for the log and the API. */
export const LOG_TAIL_LINES = 20;

/**
 * Boots one replica: makes sure the image exists (pulling it if needed), creates and starts the
 * container, and waits until its app responds over HTTP. On failure the container is removed and the error
 * carries the exit code and the tail of its output.
 */
export class ReplicaStarter {
  constructor(
    private readonly runtime: ReplicaRuntime,
    private readonly probe: ReadinessProbe,
    private readonly logger: Logger,
  ) {}

  /**
   * Creates the container and reports it through `onCreated` before it is ready, so the caller
   * can track it (a crash of the controller then leaves a labelled container that adoption finds).
   */
  async start(options: {
    spec: ServiceSpec;
    specHash: string;
    startupTimeoutMs: number;
    stopGracePeriodMs: number;
    onCreated: (replica: Replica) => void;
    onAddress: (address: string) => void;
    exitOf: () => { exitCode: number | null } | undefined;
    signal?: AbortSignal;
  }): Promise<void> {
    const { spec } = options;
    const deadline = Date.now() + options.startupTimeoutMs;

    await this.runtime.ensureImage(spec.image, options.signal);

    const created = await this.runtime.createReplica({ spec, specHash: options.specHash, stopGracePeriodMs: options.stopGracePeriodMs });
    const log = this.logger.child({ replica: created.name });
    options.onCreated({
      id: created.id,
      name: created.name,
      service: spec.name,
      state: 'starting',
      generation: spec.generation,
      specHash: options.specHash,
      createdAt: new Date().toISOString(),
    });

    try {
      // An abort during the create lands here, so the container is removed below.
      options.signal?.throwIfAborted();
      const { ip } = await this.runtime.startReplica(created.id);
      const address = `${ip}:${spec.port}`;
      options.onAddress(address);
      log.debug({ address }, 'replica container started');

      await this.probe({
        address,
        healthCheck: spec.healthCheck,
        timeoutMs: Math.max(0, deadline - Date.now()),
        signal: options.signal,
        hasExited: async () => options.exitOf() ?? this.exitFromInspect(created.id),
      });
    } catch (error) {
      throw await this.failStart(created.id, spec, error);
    }
  }

  private async exitFromInspect(id: string): Promise<{ exitCode: number | null } | undefined> {
    const snapshot = await this.runtime.inspectReplica(id);
    if (snapshot === undefined) return { exitCode: null };
    if (snapshot.running) return undefined;
    return { exitCode: snapshot.exitCode };
  }

  /** Collects the output of a failed container, removes it and returns the error to report. */
  private async failStart(id: string, spec: ServiceSpec, error: unknown): Promise<LumaError> {
    const logTail = await this.runtime.tailLogs(id, LOG_TAIL_LINES).catch(() => []);
    await this.runtime.removeReplica(id).catch((removeError: unknown) => {
      this.logger.warn({ err: removeError, container: id }, 'remove failed replica failed');
    });

    const base = isLumaError(error)
      ? error
      : new LumaError('replica_exited', `replica of service "${spec.name}" failed to start: ${describeError(error)}`, {
          cause: error,
        });
    const exitCode = typeof base.details.exitCode === 'number' ? base.details.exitCode : undefined;
    // The copy takes over the original's cause, not the original itself: pino appends each
    // cause's message to the logged one, which would repeat the same text.
    return new LumaError(base.code, base.message, {
      cause: base.cause,
      details: { ...base.details, service: spec.name, image: spec.image, exitCode, logTail },
    });
  }
}
