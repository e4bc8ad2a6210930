import type Dockerode from 'dockerode';
import { LumaError, SettingError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { LABELS } from '../model.js';
import { createDockerClient } from './client.js';
import { buildCreateOptions, summaryFromInspect, summaryFromListEntry } from './containers.js';
import { START_DOCKERD_HINT, dockerFailure, dockerMessage, dockerStatus, isConnectionError, isNotFound } from './errors.js';
import { EventWatcher } from './events.js';
import { ImagePuller } from './images.js';
import { demultiplexLogs, lastLines } from './logs.js';
import { OperationQueue } from './operations.js';
import type { ContainerSummary, CreateReplicaInput, DockerRuntimeOptions, EventSubscription, ReplicaEvent } from './types.js';

/**
 * Luma's only door to the Docker engine: images, the replicas' network, and replica containers
 * labelled with this instance's id. Calls are capped (`maxConcurrentOperations`) and time-limited;
 * mutations of one container run in the order they were requested.
 */
export class DockerRuntime {
  private readonly docker: Dockerode;
  private readonly logger: Logger;
  private readonly instanceId: string;
  private readonly network: string;
  private readonly extraLabels: Record<string, string>;
  private readonly operations: OperationQueue;
  private readonly operationTimeoutMs: number;
  private readonly images: ImagePuller;

  constructor(options: DockerRuntimeOptions) {
    this.logger = options.logger;
    this.instanceId = options.instanceId;
    this.network = options.network;
    this.extraLabels = options.containerLabels ?? {};
    this.operationTimeoutMs = options.operationTimeoutMs ?? 60_000;
    this.docker = options.docker ?? clientFor(options.dockerHost);
    this.operations = new OperationQueue({
      concurrency: options.maxConcurrentOperations ?? 8,
      timeoutMs: this.operationTimeoutMs,
    });
    this.images = new ImagePuller(this.docker, this.operations, this.logger, options.maxConcurrentPulls ?? 2);
  }

  /** Pings the engine and reads its version. Rejects with `docker_unavailable` and a hint how to start it. */
  async connect(): Promise<{ version: string; apiVersion: string }> {
    try {
      // The @types/dockerode signatures of ping and version take no options, so these calls
      // are bounded by the queue's time limit only.
      const info = await this.operations.run('version', async () => {
        await this.docker.ping();
        return this.docker.version();
      });
      this.logger.debug({ version: info.Version, apiVersion: info.ApiVersion }, 'docker engine connected');
      return { version: info.Version, apiVersion: info.ApiVersion };
    } catch (error) {
      const detail = error instanceof LumaError ? error.message : dockerMessage(error);
      const permission = (error as { code?: unknown }).code === 'EACCES' ? '; run Luma as root or as a member of the docker group' : '';
      throw new LumaError('docker_unavailable', `connect to docker engine failed: ${detail}${permission}; ${START_DOCKERD_HINT}`, {
        cause: error,
      });
    }
  }

  /** Creates the bridge network (labelled with the instance id) unless a network of that name exists. */
  async ensureNetwork(): Promise<void> {
    try {
      await this.operations.run('network inspect', () => this.docker.getNetwork(this.network).inspect());
      this.logger.debug({ network: this.network }, 'network exists');
      return;
    } catch (error) {
      if (!isNotFound(error)) throw dockerFailure('network inspect', error, { network: this.network });
    }

    try {
      await this.operations.run('network create', (signal) =>
        this.docker.createNetwork({
          Name: this.network,
          Driver: 'bridge',
          CheckDuplicate: true,
          Labels: { ...this.extraLabels, [LABELS.instance]: this.instanceId },
          abortSignal: signal,
        } as Dockerode.NetworkCreateOptions),
      );
      this.logger.info({ network: this.network }, 'network created');
    } catch (error) {
      // Another process created it between the inspect and the create.
      if (dockerStatus(error) === 409) return;
      throw dockerFailure('network create', error, { network: this.network });
    }
  }

  /** See `ImagePuller.ensureImage`. */
  ensureImage(image: string, signal?: AbortSignal): Promise<void> {
    return this.images.ensureImage(image, signal);
  }

  /**
   * Creates (does not start) a replica container. Rejects with `image_not_found` when the image
   * is not present locally, `docker_unavailable` when the engine fails, and `replica_exited` when
   * Docker rejects the container settings (for example a memory limit below Docker's 6 MB minimum).
   */
  async createReplica(input: CreateReplicaInput): Promise<{ id: string; name: string }> {
    const options = buildCreateOptions(input, {
      instanceId: this.instanceId,
      network: this.network,
      extraLabels: this.extraLabels,
    });
    const name = options.name ?? '';
    try {
      const container = await this.operations.run('container create', (signal) =>
        this.docker.createContainer({ ...options, abortSignal: signal }),
      );
      this.logger.debug({ service: input.spec.name, container: name, id: container.id }, 'replica container created');
      return { id: container.id, name };
    } catch (error) {
      const details = { service: input.spec.name, image: input.spec.image, statusCode: dockerStatus(error) };
      if (isNotFound(error)) {
        throw new LumaError('image_not_found', `image ${input.spec.image} not found locally: ${dockerMessage(error)}`, { cause: error, details });
      }
      if (dockerStatus(error) === 400 || dockerStatus(error) === 409) {
        throw new LumaError('replica_exited', `create container for service "${input.spec.name}" failed: ${dockerMessage(error)}`, {
          cause: error,
          details: { ...details, exitCode: null },
        });
      }
      throw dockerFailure('container create', error, details);
    }
  }

  /**
   * Starts a created replica and returns its IP on the instance's network. Rejects with
   * `replica_exited` (and Docker's exit code, such as 127 for a missing executable) when the
   * process cannot start or exits before its address is read.
   */
  async startReplica(id: string): Promise<{ ip: string }> {
    try {
      await this.operations.runFor(id, 'container start', (signal) => this.docker.getContainer(id).start({ abortSignal: signal }));
    } catch (error) {
      if (dockerStatus(error) !== 304) throw await this.startFailure(id, error);
    }

    const summary = await this.inspectReplica(id);
    if (summary === undefined || !summary.running) {
      throw new LumaError('replica_exited', `replica ${id} exited right after start`, {
        details: { id, exitCode: summary?.exitCode ?? null, oomKilled: summary?.oomKilled ?? false },
      });
    }
    if (summary.ip === null) {
      throw new LumaError('docker_unavailable', `replica ${id} is running but has no IP address on network ${this.network}`, {
        details: { id, network: this.network },
      });
    }
    this.logger.debug({ id, ip: summary.ip }, 'replica container started');
    return { ip: summary.ip };
  }

  private async startFailure(id: string, error: unknown): Promise<LumaError> {
    if (isConnectionError(error) || error instanceof LumaError) return dockerFailure('container start', error, { id });
    if (isNotFound(error) && /no such container/i.test(dockerMessage(error))) {
      return new LumaError('replica_exited', `replica ${id} was removed before it started`, { cause: error, details: { id, exitCode: null } });
    }

    // Docker sets ExitCode (127: executable not found, 126: not executable, 128: other) and
    // State.Error when the OCI runtime cannot start the process.
    const summary = await this.inspectReplica(id).catch(() => undefined);
    return new LumaError('replica_exited', `start replica ${id} failed: ${dockerMessage(error)}`, {
      cause: error,
      details: { id, exitCode: summary?.exitCode ?? null, statusCode: dockerStatus(error) },
    });
  }

  /**
   * Stops a replica: Docker sends the image's stop signal (SIGTERM unless the image sets
   * STOPSIGNAL), then SIGKILL after the grace period. Docker takes whole seconds, so the grace
   * period is rounded up. A replica that is already stopped or removed is not an error.
   */
  async stopReplica(id: string, gracePeriodMs: number): Promise<void> {
    const seconds = Math.max(0, Math.ceil(gracePeriodMs / 1000));
    const startedAt = Date.now();
    try {
      await this.operations.runFor(
        id,
        'container stop',
        (signal) => this.docker.getContainer(id).stop({ t: seconds, abortSignal: signal }),
        seconds * 1000 + this.operationTimeoutMs,
      );
    } catch (error) {
      const status = dockerStatus(error);
      if (status === 304 || status === 404) return;
      throw dockerFailure('container stop', error, { id });
    }
    this.logger.debug({ id, durationMs: Date.now() - startedAt }, 'replica container stopped');
  }

  /** Removes a replica, killing it if it still runs. A missing container is not an error. */
  async removeReplica(id: string): Promise<void> {
    try {
      await this.operations.runFor(id, 'container remove', (signal) =>
        this.docker.getContainer(id).remove({ force: true, v: true, abortSignal: signal }),
      );
    } catch (error) {
      // 409 "removal already in progress" ends the same way.
      const status = dockerStatus(error);
      if (status === 404 || status === 409) return;
      throw dockerFailure('container remove', error, { id });
    }
    this.logger.debug({ id }, 'replica container removed');
  }

  /** Returns the replica, or undefined when no container has this id. */
  async inspectReplica(id: string): Promise<ContainerSummary | undefined> {
    try {
      const info = await this.operations.run('container inspect', (signal) => this.docker.getContainer(id).inspect({ abortSignal: signal }));
      return summaryFromInspect(info, this.network);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw dockerFailure('container inspect', error, { id });
    }
  }

  /**
   * Lists every container, running or not, that carries this instance's label. Containers that
   * are not running are inspected for their exit code and OOM flag.
   */
  async listReplicas(): Promise<ContainerSummary[]> {
    let entries: Dockerode.ContainerInfo[];
    try {
      entries = await this.operations.run('container list', (signal) =>
        this.docker.listContainers({
          all: true,
          filters: { label: [`${LABELS.instance}=${this.instanceId}`] },
          abortSignal: signal,
        }),
      );
    } catch (error) {
      throw dockerFailure('container list', error);
    }

    const summaries = await Promise.all(
      entries.map(async (entry) => {
        const listed = summaryFromListEntry(entry, this.network);
        if (listed.running) return listed;
        // Removed between the list and the inspect: then it is no longer a replica.
        return this.inspectReplica(entry.Id);
      }),
    );
    return summaries.filter((summary): summary is ContainerSummary => summary !== undefined);
  }

  /** Returns the last `lines` lines of stdout and stderr, interleaved; empty for a missing container. */
  async tailLogs(id: string, lines: number): Promise<string[]> {
    if (lines <= 0) return [];
    let output: unknown;
    try {
      output = await this.operations.run('container logs', (signal) =>
        this.docker.getContainer(id).logs({ stdout: true, stderr: true, follow: false, tail: lines, abortSignal: signal }),
      );
    } catch (error) {
      if (isNotFound(error)) return [];
      throw dockerFailure('container logs', error, { id });
    }
    // docker-modem returns the body parsed as JSON when it happens to be JSON (TTY containers).
    const data = Buffer.isBuffer(output) ? output : Buffer.from(typeof output === 'string' ? output : JSON.stringify(output));
    return lastLines(demultiplexLogs(data), lines);
  }

  /** Follows this instance's container events until `close()`; see `EventWatcher`. */
  watchEvents(onEvent: (event: ReplicaEvent) => void): EventSubscription {
    const watcher = new EventWatcher({ docker: this.docker, instanceId: this.instanceId, logger: this.logger, onEvent });
    watcher.start();
    return watcher;
  }
}

function clientFor(dockerHost: string | undefined): Dockerode {
  try {
    return createDockerClient(dockerHost);
  } catch (error) {
    throw new SettingError('docker-host', dockerHost, describeError(error));
  }
}
