import type { Millis, ReplicaState, ServiceSpec, ServiceState } from '../model.js';

/** A replica as the API shows it. */
export interface ReplicaView {
  id: string;
  name: string;
  state: ReplicaState;
  address: string | null;
  generation: number;
  createdAt: string;
  readyAt: string | null;
  /** In-flight requests seen on this replica (Caddy plus the wake-up handler). */
  inFlight: number;
}

/** Live state of a service, next to its settings in API responses. */
export interface ServiceStatus {
  state: ServiceState;
  desiredReplicas: number;
  readyReplicas: number;
  replicas: ReplicaView[];
  /** Current concurrent requests over all replicas. */
  concurrency: number;
  lastRequestAt: string | null;
  /** Last failed start: reason, exit code and the tail of the container output. */
  lastError: {
    at: string;
    code: string;
    message: string;
    exitCode?: number;
    logTail?: string[];
  } | null;
  /** When the next wake may try again after failures; null when not backing off. */
  retryAt: string | null;
  lastScaling: { at: string; from: number; to: number; reason: string } | null;
}

/** Implemented by the controller; the REST API validates input and calls these. */
export interface ServiceBackend {
  list(): Array<{ spec: ServiceSpec; status: ServiceStatus }>;
  get(name: string): { spec: ServiceSpec; status: ServiceStatus } | undefined;
  /** Persists and applies a new service. Rejects with `service_exists` if the name is taken. */
  create(spec: ServiceSpec): Promise<{ spec: ServiceSpec; status: ServiceStatus }>;
  /**
   * Persists and applies changed settings. `spec` is the complete new spec (the API merges
   * PATCH input into the current one). Rejects with `service_not_found`.
   */
  update(name: string, spec: ServiceSpec): Promise<{ spec: ServiceSpec; status: ServiceStatus }>;
  /** Drains and removes the service's replicas and route, then forgets it. */
  delete(name: string): Promise<void>;
}

/** Global defaults the API needs to fill in and show effective values. */
export interface ServiceDefaults {
  port: number;
  minReplicas: number;
  maxReplicas: number;
  /** Upper bound on maxReplicas (the `--max-replicas-limit` setting). */
  maxReplicasLimit: number;
  startupTimeoutMs: Millis;
  inactivityTimeoutMs: Millis;
  concurrency: number;
}
