import { LumaError } from '../errors.js';
import { WakeGate } from './gate.js';
import type { ReplicaLease, ReplicaProvider } from './types.js';

/**
 * Requests waiting for a lease on a replica. Each wait takes a gate slot of its service and of
 * the total until `ReplicaProvider.acquire` settles. Waits run concurrently, because sharing one
 * start per service (single-flight) is the provider's job.
 */
export class LeaseQueue {
  private readonly gate: WakeGate;
  private readonly waits = new Set<AbortController>();
  /** Requests that took a slot, since start. */
  held = 0;
  /** Requests rejected because a bound was reached, since start. */
  rejected = 0;

  constructor(
    private readonly provider: ReplicaProvider,
    maxPerService: number,
    maxTotal: number,
    /** Called after a wait ended and freed its slot. */
    private readonly onWaitEnded: () => void,
  ) {
    this.gate = new WakeGate(maxPerService, maxTotal);
  }

  /**
   * Waits for a lease on a replica of `service`. Rejects with `wake_queue_full` at once when a
   * bound is reached, with the provider's error, or with the abort reason of `abort`.
   */
  async acquire(service: string, abort: AbortController): Promise<ReplicaLease> {
    if (!this.gate.tryEnter(service)) {
      this.rejected += 1;
      throw new LumaError('wake_queue_full', 'too many requests are waiting for a replica', {
        details: { service, waiting: this.gate.waiting(service), waitingTotal: this.gate.total },
      });
    }

    this.held += 1;
    this.waits.add(abort);
    try {
      return await this.provider.acquire(service, abort.signal);
    } finally {
      this.waits.delete(abort);
      this.gate.leave(service);
      this.onWaitEnded();
    }
  }

  /** Aborts every wait with `reason`; the provider rejects them with it. */
  abortAll(reason: Error): void {
    for (const abort of this.waits) abort.abort(reason);
  }

  waiting(service: string): number {
    return this.gate.waiting(service);
  }

  get total(): number {
    return this.gate.total;
  }

  byService(): Record<string, number> {
    return this.gate.byService();
  }
}
