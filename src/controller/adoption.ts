import type { Logger } from '../log.js';
import type { ContainerSnapshot, ReadinessProbe, ReplicaRuntime } from './ports.js';
import type { ServiceRuntime } from './service-runtime.js';

/** Time an adopted container has to respond over HTTP before it is replaced. */
const ADOPTION_PROBE_TIMEOUT_MS = 3_000;

/**
 * Takes over the containers a previous run of this instance left behind. Running containers of
 * known services that respond over HTTP become ready replicas; containers of unknown services, stopped
 * containers (including ones half-created by a crash) and containers that do not respond are
 * removed. Services with replicas from an older spec then replace them.
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
      try {
        await options.probe({
          address,
          healthCheck: service.spec.healthCheck,
          timeoutMs: ADOPTION_PROBE_TIMEOUT_MS,
          hasExited: async () => {
            const snapshot = await runtime.inspectReplica(container.id);
            return snapshot === undefined || !snapshot.running ? { exitCode: snapshot?.exitCode ?? null } : undefined;
          },
        });
      } catch (error) {
        logger.warn({ err: error, container: container.name }, 'adopted container did not answer');
        return remove(container, 'not answering HTTP');
      }

      service.adopt({
        id: container.id,
        name: container.name,
        service: container.service,
        state: 'ready',
        address,
        generation: container.generation,
        specHash: container.specHash,
        createdAt: container.createdAt,
        readyAt: new Date().toISOString(),
      });
      logger.info({ service: container.service, replica: container.name, address }, 'replica adopted');
    }),
  );

  for (const service of options.services.values()) {
    service.refresh().catch((error: unknown) => {
      logger.error({ err: error, service: service.name }, 'replace outdated replicas failed');
    });
  }
}
