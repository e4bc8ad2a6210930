/**
 * Bounded admission for requests waiting for a replica. Each held request takes one slot of its
 * service and one of the total. When either bound is reached, the request is rejected at once
 * instead of queueing without limit.
 */
export class WakeGate {
  private readonly perService = new Map<string, number>();
  private held = 0;

  constructor(
    private readonly maxPerService: number,
    private readonly maxTotal: number,
  ) {}

  /** Takes a slot for `service`; returns false, taking nothing, when a bound is reached. */
  tryEnter(service: string): boolean {
    const current = this.perService.get(service) ?? 0;
    if (current >= this.maxPerService || this.held >= this.maxTotal) return false;

    this.perService.set(service, current + 1);
    this.held += 1;
    return true;
  }

  /** Frees a slot taken by `tryEnter`. */
  leave(service: string): void {
    const current = this.perService.get(service) ?? 0;
    if (current === 0) return;

    if (current === 1) this.perService.delete(service);
    else this.perService.set(service, current - 1);
    this.held -= 1;
  }

  /** Number of requests of `service` holding a slot. */
  waiting(service: string): number {
    return this.perService.get(service) ?? 0;
  }

  /** Number of requests holding a slot, over all services. */
  get total(): number {
    return this.held;
  }

  /** Returns the number of waiting requests per service, for services with at least one. */
  byService(): Record<string, number> {
    return Object.fromEntries(this.perService);
  }
}
