import type { UpstreamStatus } from '../caddy/types.js';
import type { Logger } from '../log.js';
import type { InFlightSource } from './ports.js';

/**
 * Reads Caddy's per-upstream in-flight counts (`GET /reverse_proxy/upstreams`) on an interval.
 * Warm traffic never passes through Node, so these counts and Caddy's access log are the only
 * activity signals for it.
 */
export class ActivityMonitor implements InFlightSource {
  private counts = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private waiters: Array<() => void> = [];
  private failing = false;
  private running = false;

  constructor(
    private readonly options: {
      readUpstreams: () => Promise<UpstreamStatus[]>;
      intervalMs: number;
      logger: Logger;
      onSample?: (counts: ReadonlyMap<string, number>) => void;
      /** Maps an address as Caddy lists it to the replica address; undefined drops the entry. */
      mapAddress?: (address: string) => string | undefined;
    },
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.releaseWaiters();
  }

  inFlight(address: string): number {
    return this.counts.get(address) ?? 0;
  }

  nextSample(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.sample().finally(() => this.schedule(this.options.intervalMs));
    }, delayMs);
    this.timer.unref();
  }

  private async sample(): Promise<void> {
    try {
      const upstreams = await this.options.readUpstreams();
      const counts = new Map<string, number>();
      for (const upstream of upstreams) {
        const address = this.options.mapAddress ? this.options.mapAddress(upstream.address) : upstream.address;
        if (address === undefined) continue;
        counts.set(address, (counts.get(address) ?? 0) + upstream.numRequests);
      }
      this.counts = counts;
      if (this.failing) this.options.logger.info('caddy upstream counts readable again');
      this.failing = false;
      this.options.onSample?.(counts);
    } catch (error) {
      // Keep the last counts: a drain must not treat an unreadable Caddy as "no requests".
      if (!this.failing) this.options.logger.warn({ err: error }, 'read caddy upstream counts failed');
      this.failing = true;
    } finally {
      this.releaseWaiters();
    }
  }

  private releaseWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
