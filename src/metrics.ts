import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ServiceBackend } from './api/backend.js';
import type { ServiceState } from './model.js';
import type { WakeStats } from './wake/handler.js';

/**
 * Prometheus metrics of the controller, served at `GET /api/metrics`. Every value is read from
 * the controller and the wake-up handler when scraped, so nothing on the request path updates
 * a metric.
 */
const SERVICE_STATES: readonly ServiceState[] = ['sleeping', 'starting', 'ready', 'failed'];

export function createMetrics(sources: { backend: ServiceBackend; wakeStats: () => WakeStats }): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'luma_' });

  new Gauge({
    name: 'luma_services',
    help: 'Registered services by state (sleeping, starting, ready, failed).',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const state of SERVICE_STATES) this.set({ state }, 0);
      for (const { status } of sources.backend.list()) this.inc({ state: status.state });
    },
  });

  new Gauge({
    name: 'luma_replicas',
    help: 'Replicas by service and state (starting, ready, draining, stopping).',
    labelNames: ['service', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { spec, status } of sources.backend.list()) {
        for (const replica of status.replicas) this.inc({ service: spec.name, state: replica.state });
      }
    },
  });

  new Gauge({
    name: 'luma_service_concurrency',
    help: 'Requests in flight on the ready replicas of a service, from Caddy and the wake-up handler.',
    labelNames: ['service'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { spec, status } of sources.backend.list()) this.set({ service: spec.name }, status.concurrency);
    },
  });

  new Gauge({
    name: 'luma_wake_waiting_requests',
    help: 'Requests held by the wake-up handler until a replica of their service is ready.',
    labelNames: ['service'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { spec } of sources.backend.list()) this.set({ service: spec.name }, 0);
      for (const [service, waiting] of Object.entries(sources.wakeStats().waitingByService)) this.set({ service }, waiting);
    },
  });

  new Counter({
    name: 'luma_wake_requests_total',
    help: 'Requests handled by the wake-up handler since start, by outcome (replayed, retried, failed, rejected_queue_full).',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      // The wake-up handler keeps the totals; the counter mirrors them at scrape time.
      const stats = sources.wakeStats();
      this.reset();
      this.inc({ outcome: 'replayed' }, stats.replayed);
      this.inc({ outcome: 'retried' }, stats.retried);
      // The handler counts queue-full rejections among its failures; the outcomes here are disjoint.
      this.inc({ outcome: 'failed' }, Math.max(0, stats.failed - stats.rejectedQueueFull));
      this.inc({ outcome: 'rejected_queue_full' }, stats.rejectedQueueFull);
    },
  });

  return registry;
}
