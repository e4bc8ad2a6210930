import type Dockerode from 'dockerode';
import type { Logger } from '../log.js';
import type { ServiceSpec } from '../model.js';

export interface DockerRuntimeOptions {
  logger: Logger;
  /** Value of the `dev.luma.instance` label; decides which containers belong to this Luma. */
  instanceId: string;
  /** Bridge network that replicas join; created by `ensureNetwork()` when missing. */
  network: string;
  /** A ready client, mainly for tests. Takes precedence over `dockerHost`. */
  docker?: Dockerode;
  /**
   * Engine endpoint in `DOCKER_HOST` syntax: `unix:///var/run/docker.sock`, `tcp://host:2375`,
   * `http://host:port` or `https://host:port`. Default: `unix:///var/run/docker.sock`.
   */
  dockerHost?: string;
  /**
   * Extra labels on every replica container and on the network `ensureNetwork()` creates, such
   * as `team=web`. Luma's own labels (`LABELS`) win over keys given here.
   */
  containerLabels?: Record<string, string>;
  /** Maximum Docker API calls in flight at once, image pulls excluded. Default 8. */
  maxConcurrentOperations?: number;
  /** Maximum image pulls in flight at once; pulls of the same image are shared. Default 2. */
  maxConcurrentPulls?: number;
  /** Time limit of one Docker API call other than pulls and event streams. Default 60 s. */
  operationTimeoutMs?: number;
}

export interface CreateReplicaInput {
  spec: ServiceSpec;
  specHash: string;
  /**
   * Stop grace period stored on the container (`StopTimeout`, whole seconds, rounded up), used
   * when Docker itself stops the container, for example on daemon shutdown. Default 10 s.
   */
  stopGracePeriodMs?: number;
}

/** A container of this Luma instance, as Docker reports it. */
export interface ContainerSummary {
  id: string;
  /** Container name without the leading `/`; informational only. */
  name: string;
  service: string;
  generation: number;
  specHash: string;
  /** Docker's state: created, running, paused, restarting, removing, exited or dead. */
  state: string;
  running: boolean;
  /** Exit code of the last run; null while running or never started. */
  exitCode: number | null;
  oomKilled: boolean;
  /** IPv4 address on the instance's network; null when not running or not attached. */
  ip: string | null;
  createdAt: string;
}

export type ReplicaEvent =
  | { kind: 'start' | 'die' | 'oom' | 'destroy'; id: string; service: string; exitCode?: number }
  | { kind: 'connected' }
  | { kind: 'disconnected'; error: unknown };

export interface EventSubscription {
  close(): void;
}
