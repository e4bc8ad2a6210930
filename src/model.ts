/**
 * Luma's vocabulary, shared by every module.
 *
 * - service: what the user registers (a name, an image and settings).
 * - replica: one container of a service.
 * - route: Caddy's matchers and handlers for a service.
 * - upstream: an address Caddy proxies to (a replica, or the wake-up handler).
 * - wake: a cold start triggered by a request for a service with no ready replica.
 * - desired and observed: what the store asks for versus what Docker and Caddy report.
 */

/** Durations are milliseconds in code; the API and flags use Go-style strings such as `90s`. */
export type Millis = number;

export interface HealthCheck {
  /** Path that must answer 2xx, for example `/healthz`. */
  path: string;
  /** Timeout of one probe request. */
  timeoutMs: Millis;
}

export interface Resources {
  /** Memory limit in bytes. */
  memoryBytes?: number;
  /** CPU limit in cores, for example 0.5. */
  cpus?: number;
}

/** A registered service as stored. Optional overrides fall back to the global settings. */
export interface ServiceSpec {
  name: string;
  image: string;
  /** Port the app listens on inside the container; also passed as `PORT`. */
  port: number;
  minReplicas: number;
  maxReplicas: number;
  env: Record<string, string>;
  /** Replaces the image's CMD when set. */
  command?: string[];
  /** Host names routed to this service in addition to the path prefix `/<name>/`. */
  hosts: string[];
  healthCheck?: HealthCheck;
  startupTimeoutMs?: Millis;
  inactivityTimeoutMs?: Millis;
  /** Target concurrent requests per replica for scaling; the global `-scale-threshold` when unset. */
  concurrency?: number;
  /** Hard limit of concurrent requests per replica; unlimited when unset. */
  maxConcurrency?: number;
  resources?: Resources;
  createdAt: string;
  updatedAt: string;
  /** Increases on every change of the spec. */
  generation: number;
}

/**
 * Replica lifecycle.
 *
 * | state    | meaning                                               | next                        |
 * |----------|-------------------------------------------------------|-----------------------------|
 * | starting | container created or started, not yet answering HTTP  | ready, failed               |
 * | ready    | answers HTTP, receives traffic                        | draining, failed            |
 * | draining | removed from routing, in-flight requests finishing    | stopping                    |
 * | stopping | SIGTERM sent, waiting for exit and removal            | (removed)                   |
 * | failed   | exited or never became ready; removed after logging   | (removed)                   |
 */
export type ReplicaState = 'starting' | 'ready' | 'draining' | 'stopping' | 'failed';

/**
 * Service lifecycle, derived from its replicas and its last wake result.
 *
 * | state    | meaning                                                         |
 * |----------|-----------------------------------------------------------------|
 * | sleeping | no replica; the route points at the wake-up handler              |
 * | starting | a replica is booting and none is ready                           |
 * | ready    | at least one replica is ready                                    |
 * | failed   | the last start failed; the next wake retries after the backoff   |
 */
export type ServiceState = 'sleeping' | 'starting' | 'ready' | 'failed';

export interface Replica {
  /** Docker container id. */
  id: string;
  /** Docker container name. */
  name: string;
  service: string;
  state: ReplicaState;
  /** `ip:port` on the Docker network, once the container runs. */
  address?: string;
  /** Spec generation the container was created from. */
  generation: number;
  /** Hash of the fields that force a new container when they change (image, env, command, ...). */
  specHash: string;
  createdAt: string;
  readyAt?: string;
}

/** Labels put on every container Luma creates. Ownership is decided by labels, never by names. */
export const LABELS = {
  /** Identifies the Luma instance (one per data directory). */
  instance: 'dev.luma.instance',
  service: 'dev.luma.service',
  generation: 'dev.luma.generation',
  specHash: 'dev.luma.spec-hash',
} as const;
