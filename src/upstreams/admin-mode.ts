import type { ServiceRoute } from '../caddy/types.js';
import type { UpstreamPublisher } from '../controller/ports.js';
import type { Replica, ServiceSpec } from '../model.js';

/** The part of CaddyRouting this mode uses. */
export interface RouteWriter {
  ensureServer(routes: ServiceRoute[]): Promise<void>;
  setRoute(route: ServiceRoute): Promise<void>;
  removeRoute(service: string): Promise<void>;
  setDraining(addresses: string[]): Promise<void>;
}

export function serviceRoute(spec: ServiceSpec, upstreams: string[]): ServiceRoute {
  return { service: spec.name, hosts: spec.hosts, upstreams, maxConcurrency: spec.maxConcurrency };
}

/**
 * Admin-write upstream mode: every change of a service's ready replicas rewrites its route through
 * Caddy's admin API. Warm traffic keeps flowing while the controller is down, but each write
 * reloads Caddy's whole configuration (see docs/architecture.md).
 */
export class AdminUpstreamPublisher implements UpstreamPublisher {
  private readonly draining = new Map<string, string[]>();

  constructor(private readonly routes: RouteWriter) {}

  async publish(spec: ServiceSpec, replicas: Replica[]): Promise<void> {
    const upstreams = replicas.map((r) => r.address).filter((a): a is string => Boolean(a));
    await this.routes.setRoute(serviceRoute(spec, upstreams));
  }

  async unpublish(service: string): Promise<void> {
    await this.routes.removeRoute(service);
  }

  async publishAll(entries: Array<{ spec: ServiceSpec; replicas: Replica[] }>): Promise<void> {
    const routes = entries.map(({ spec, replicas }) =>
      serviceRoute(
        spec,
        replicas.map((r) => r.address).filter((a): a is string => Boolean(a)),
      ),
    );
    await this.routes.ensureServer(routes);
  }

  async setDraining(service: string, addresses: string[]): Promise<void> {
    if (addresses.length === 0) this.draining.delete(service);
    else this.draining.set(service, addresses);
    await this.routes.setDraining([...new Set([...this.draining.values()].flat())]);
  }
}
