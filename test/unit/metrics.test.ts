import { describe, expect, it } from 'vitest';
import type { ServiceBackend, ServiceStatus } from '../../src/api/backend.js';
import { createMetrics } from '../../src/metrics.js';
import type { ServiceSpec } from '../../src/model.js';
import type { WakeStats } from '../../src/wake/handler.js';

function status(state: ServiceStatus['state'], replicaStates: Array<'ready' | 'draining'>, concurrency: number): ServiceStatus {
  return {
    state,
    desiredReplicas: replicaStates.length,
    readyReplicas: replicaStates.filter((s) => s === 'ready').length,
    replicas: replicaStates.map((replicaState, i) => ({
      id: `id${i}`,
      name: `r${i}`,
      state: replicaState,
      address: null,
      generation: 1,
      createdAt: '',
      readyAt: null,
      inFlight: 0,
    })),
    concurrency,
    lastRequestAt: null,
    lastError: null,
    retryAt: null,
    lastScaling: null,
  };
}

const spec = (name: string) => ({ name }) as ServiceSpec;

describe('metrics', () => {
  it('reports services, replicas and wake counters', async () => {
    const backend = {
      list: () => [
        { spec: spec('web'), status: status('ready', ['ready', 'ready', 'draining'], 7) },
        { spec: spec('idle'), status: status('sleeping', [], 0) },
      ],
    } as unknown as ServiceBackend;
    const wakeStats = () =>
      ({ waitingByService: { idle: 3 }, replayed: 10, retried: 1, failed: 4, rejectedQueueFull: 4 }) as unknown as WakeStats;

    const text = await createMetrics({ backend, wakeStats }).metrics();

    expect(text).toContain('luma_services{state="ready"} 1');
    expect(text).toContain('luma_services{state="sleeping"} 1');
    expect(text).toContain('luma_replicas{service="web",state="ready"} 2');
    expect(text).toContain('luma_replicas{service="web",state="draining"} 1');
    expect(text).toContain('luma_service_concurrency{service="web"} 7');
    expect(text).toContain('luma_wake_waiting_requests{service="idle"} 3');
    expect(text).toContain('luma_wake_requests_total{outcome="rejected_queue_full"} 4');
    expect(text).toContain('luma_wake_requests_total{outcome="failed"} 0');
    expect(text).toContain('luma_wake_waiting_requests{service="web"} 0');
    expect(text).toContain('luma_services{state="failed"} 0');
    expect(text).toContain('luma_process_cpu_seconds_total');
  });

  it('drops services that no longer exist', async () => {
    let services = [{ spec: spec('gone'), status: status('ready', ['ready'], 1) }];
    const backend = { list: () => services } as unknown as ServiceBackend;
    const registry = createMetrics({ backend, wakeStats: () => ({ waitingByService: {}, replayed: 0, retried: 0, failed: 0, rejectedQueueFull: 0 }) as unknown as WakeStats });

    expect(await registry.metrics()).toContain('service="gone"');
    services = [];
    expect(await registry.metrics()).not.toContain('service="gone"');
  });
});
