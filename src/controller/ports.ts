import type { HealthCheck, Replica, ServiceSpec } from '../model.js';

/**
 * The controller's view of its neighbours. Production wires these to src/docker, src/caddy and
 * src/dns; tests can substitute fakes.
 */

export interface ContainerSnapshot {
  id: string;
  name: string;
  service: string;
  generation: number;
  specHash: string;
  running: boolean;
  exitCode: number | null;
  oomKilled: boolean;
  ip: string | null;
  createdAt: string;
}

/** Docker operations on replicas (src/docker/DockerRuntime implements this). */
export interface ReplicaRuntime {
  ensureImage(image: string, signal?: AbortSignal): Promise<void>;
  createReplica(input: { spec: ServiceSpec; specHash: string; stopGracePeriodMs?: number }): Promise<{ id: string; name: string }>;
  startReplica(id: string): Promise<{ ip: string }>;
  stopReplica(id: string, gracePeriodMs: number): Promise<void>;
  removeReplica(id: string): Promise<void>;
  inspectReplica(id: string): Promise<ContainerSnapshot | undefined>;
  listReplicas(): Promise<ContainerSnapshot[]>;
  tailLogs(id: string, lines: number): Promise<string[]>;
}

/** Waits until a started replica responds over HTTP. Rejects with `replica_exited` or `startup_timeout`. */
export type ReadinessProbe = (options: {
  address: string;
  healthCheck?: HealthCheck;
  timeoutMs: number;
  signal?: AbortSignal;
  hasExited: () => Promise<{ exitCode: number | null } | undefined>;
}) => Promise<void>;

/** Points a service's traffic at its ready replicas, or at the wake-up handler when there are none. */
export interface UpstreamPublisher {
  /**
   * Routes `service` to `replicas` (the wake-up handler when empty). Resolves once Caddy can no
   * longer pick a replica that was left out, so draining may start.
   */
  publish(spec: ServiceSpec, replicas: Replica[]): Promise<void>;
  /** Removes the service's route, so Caddy responds 404 for it. */
  unpublish(service: string): Promise<void>;
  /** Rewrites every route from scratch, for start-up and after Caddy lost its config. */
  publishAll(entries: Array<{ spec: ServiceSpec; replicas: Replica[] }>): Promise<void>;
  /** Replaces the service's addresses that left routing but may still have requests in flight. */
  setDraining(service: string, addresses: string[]): Promise<void>;
}

/** In-flight requests per replica address, as last read from Caddy. */
export interface InFlightSource {
  inFlight(address: string): number;
  /** Resolves after the next read of Caddy's upstream counts completes. */
  nextSample(): Promise<void>;
}
