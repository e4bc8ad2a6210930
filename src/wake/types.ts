import type { ServiceSpec } from '../model.js';

/**
 * A ready replica handed to the wake-up handler for one request. `release()` must be called
 * exactly once, when the replayed request (including its response body or upgraded socket) ends,
 * so the controller can count in-flight requests and drain the replica safely.
 */
export interface ReplicaLease {
  replicaId: string;
  /** `ip:port` of the replica. */
  address: string;
  release(): void;
}

/** Implemented by the controller: starts or finds a ready replica for a service. */
export interface ReplicaProvider {
  /**
   * Resolves with a lease on a ready replica of `service`, starting one when none is ready.
   * Concurrent calls for the same service share one start (single-flight).
   * Rejects with a LumaError: `service_not_found`, `image_not_found`, `image_pull_failed`,
   * `replica_exited`, `startup_timeout`, `wake_backoff`, `service_deleted`, `shutting_down`.
   * Rejects with the signal's reason when `signal` aborts (client went away).
   */
  acquire(service: string, signal: AbortSignal): Promise<ReplicaLease>;

  /** Returns the service for a host name (without port), for host-routed requests. */
  serviceForHost(host: string): ServiceSpec | undefined;

  /** Returns the service by name. */
  service(name: string): ServiceSpec | undefined;
}
