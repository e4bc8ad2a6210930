import type { ReplicaView, ServiceStatus } from '../api/backend.js';
import type { ServiceSpec, ServiceState } from '../model.js';
import type { ReplicaTable } from './replica-table.js';

/** The state of one service that ServiceRuntime keeps, as input to its API view. */
export interface StatusInput {
  spec: ServiceSpec;
  replicas: ReplicaTable;
  /** Starts in progress. */
  starting: number;
  lastRequestAt: number | null;
  lastError: ServiceStatus['lastError'];
  lastScaling: ServiceStatus['lastScaling'];
  /** Replica count of the last scaling decision; null before the first one. */
  desired: number | null;
  /** When the next start may be tried after failures, as epoch milliseconds; null when never. */
  retryAt: number | null;
}

/** Returns the service state: a ready replica wins, then a start in progress, then the last failure. */
export function deriveState(input: Pick<StatusInput, 'replicas' | 'starting' | 'lastError'>): ServiceState {
  if (input.replicas.inState('ready').length > 0) return 'ready';
  if (input.starting > 0 || input.replicas.inState('starting').length > 0) return 'starting';
  if (input.lastError) return 'failed';
  return 'sleeping';
}

/** Returns the live status the API shows next to a service's settings. */
export function buildStatus(input: StatusInput, now: number): ServiceStatus {
  const replicas: ReplicaView[] = input.replicas.all().map((record) => ({
    id: record.replica.id,
    name: record.replica.name,
    state: record.replica.state,
    address: record.replica.address ?? null,
    generation: record.replica.generation,
    createdAt: record.replica.createdAt,
    readyAt: record.replica.readyAt ?? null,
    inFlight: input.replicas.load(record),
  }));
  const ready = replicas.filter((r) => r.state === 'ready');
  const state = deriveState(input);
  return {
    state,
    desiredReplicas: state === 'sleeping' ? input.spec.minReplicas : Math.max(input.spec.minReplicas, input.desired ?? ready.length),
    readyReplicas: ready.length,
    replicas,
    concurrency: ready.reduce((sum, r) => sum + r.inFlight, 0),
    lastRequestAt: input.lastRequestAt === null ? null : new Date(input.lastRequestAt).toISOString(),
    lastError: input.lastError,
    retryAt: input.retryAt !== null && input.retryAt > now ? new Date(input.retryAt).toISOString() : null,
    lastScaling: input.lastScaling,
  };
}
