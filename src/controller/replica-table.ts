import type { Replica, ReplicaState } from '../model.js';
import type { InFlightSource } from './ports.js';

/** Reason a replica leaves routing. A new request cancels an `idle` drain. */
export type DrainReason = 'idle' | 'scale-down' | 'replace' | 'delete';

export interface ReplicaRecord {
  replica: Replica;
  /** Requests replayed by the wake-up handler and still open. */
  leases: number;
  /** Set when Docker reported the container's exit. */
  exit?: { exitCode: number | null };
  /** Set when Docker reported that the kernel killed the container for its memory limit. */
  oomKilled?: boolean;
  drainReason?: DrainReason;
}

/** The replicas of one service, with their load from Caddy's counts and wake-up leases. */
export class ReplicaTable {
  private readonly records = new Map<string, ReplicaRecord>();

  constructor(private readonly inFlight: InFlightSource) {}

  get(id: string): ReplicaRecord | undefined {
    return this.records.get(id);
  }

  add(record: ReplicaRecord): void {
    this.records.set(record.replica.id, record);
  }

  delete(id: string): boolean {
    return this.records.delete(id);
  }

  has(id: string): boolean {
    return this.records.has(id);
  }

  ids(): string[] {
    return [...this.records.keys()];
  }

  all(): ReplicaRecord[] {
    return [...this.records.values()];
  }

  inState(...states: ReplicaState[]): ReplicaRecord[] {
    return this.all().filter((record) => states.includes(record.replica.state));
  }

  /** In-flight requests on a replica: Caddy's last count plus open wake-up replays. */
  load(record: ReplicaRecord): number {
    const address = record.replica.address;
    return record.leases + (address ? this.inFlight.inFlight(address) : 0);
  }

  /** Returns the ready replica with the fewest requests in flight. */
  leastLoadedReady(): ReplicaRecord | undefined {
    let best: ReplicaRecord | undefined;
    for (const record of this.inState('ready')) {
      if (best === undefined || this.load(record) < this.load(best)) best = record;
    }
    return best;
  }

  /** In-flight requests over the ready replicas. */
  concurrency(): number {
    return this.inState('ready').reduce((sum, record) => sum + this.load(record), 0);
  }

  /** Addresses of replicas that left routing and are not yet removed. */
  drainingAddresses(): string[] {
    return this.inState('draining', 'stopping')
      .map((record) => record.replica.address)
      .filter((address): address is string => Boolean(address));
  }
}
