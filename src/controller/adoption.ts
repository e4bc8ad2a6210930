import type { Logger } from '../log.js';
import type { Replica } from '../model.js';
import type { ContainerSnapshot, ReadinessProbe, ReplicaRuntime } from './ports.js';
import type { ServiceRuntime } from './service-runtime.js';

/** Shortest time an adopted container gets to respond over HTTP before it is removed. */
const ADOPTION_PROBE_TIMEOUT_MS = 3_000;
/** Time start-up waits for adopted containers to respond; slower ones finish in the background. */
const ADOPTION_WAIT_MS = 500;

/**
 * Takes over the containers a previous run of this instance left behind. Running containers of
 * known services that respond over HTTP become ready replicas. Containers of unknown services and
 * stopped containers, including ones created but never started before a crash, are removed.
 *
 * A running container that does not respond within `ADOPTION_WAIT_MS`, such as one that was
 * still booting when the previous run died, is handed to its service as a start in progress, so
 * start-up does not wait for it and wake-ups join it. It becomes ready when it responds within
 * the service's startup timeout (counted from the container's creation, at least
 * `ADOPTION_PROBE_TIMEOUT_MS`), and is removed otherwise. Services with replicas from an older
 * spec then replace them.
 */
export async function adoptContainers(options: {
  containers: ContainerSnapshot[];
  services: ReadonlyMap<string, ServiceRuntime>;
  runtime: ReplicaRuntime;
  probe: ReadinessProbe;
  stopGracePeriodMs: number;
  logger: Logger;
}): Promise<void> {
  const { runtime, logger } = options;

  const remove = async (container: ContainerSnapshot, reason: string) => {
    logger.info({ container: container.name, service: container.service, reason }, 'removing container left by an earlier run');
    try {
      if (container.running) await runtime.stopReplica(container.id, options.stopGracePeriodMs);
      await runtime.removeReplica(container.id);
    } catch (error) {
      logger.warn({ err: error, container: container.name }, 'remove leftover container failed');
    }
  };

  await Promise.all(
    options.containers.map(async (container) => {
      const service = options.services.get(container.service);
      if (!service) return remove(container, 'service no longer registered');
      if (!container.running || container.ip === null) return remove(container, 'container not running');

      const address = `${container.ip}:${service.spec.port}`;
      const ageMs = Math.max(0, Date.now() - Date.parse(container.createdAt));
      const ready = options.probe({
        address,
        healthCheck: service.spec.healthCheck,
        timeoutMs: Math.max(ADOPTION_PROBE_TIMEOUT_MS, service.startupTimeoutMs - ageMs),
        signal: service.signal,
        hasExited: async () => {
          const snapshot = await runtime.inspectReplica(container.id);
          return snapshot === undefined || !snapshot.running ? { exitCode: snapshot?.exitCode ?? null } : undefined;
        },
      });
      const replica: Replica = {
        id: container.id,
        name: container.name,
        service: container.service,
        state: 'starting',
        address,
        generation: container.generation,
        specHash: container.specHash,
        createdAt: container.createdAt,
      };

      const outcome = await settleWithin(ready, ADOPTION_WAIT_MS);
      if (outcome === 'pending') {
        logger.info({ service: container.service, replica: container.name, address }, 'adopting replica that is not responding yet');
        service.adoptStarting(replica, ready);
        return;
      }
      if (outcome !== 'ready') {
        logger.warn({ err: outcome.error, container: container.name }, 'adopted container did not respond');
        return remove(container, 'not responding over HTTP');
      }
      service.adopt({ ...replica, state: 'ready', readyAt: new Date().toISOString() });
      logger.info({ service: container.service, replica: container.name, address }, 'replica adopted');
    }),
  );

  for (const service of options.services.values()) {
    service.refresh().catch((error: unknown) => {
      logger.error({ err: error, service: service.name }, 'replace outdated replicas failed');
    });
  }
}

/** Returns how `promise` settled within `ms`: `ready`, the error, or `pending`. */
async function settleWithin(promise: Promise<unknown>, ms: number): Promise<'ready' | 'pending' | { error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms);
  });
  const settled = promise.then(
    () => 'ready' as const,
    (error: unknown) => ({ error }),
  );
  try {
    return await Promise.race([settled, pending]);
  } finally {
    clearTimeout(timer);
  }
}
