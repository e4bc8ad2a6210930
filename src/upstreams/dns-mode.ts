import { buildSrvUpstreams, srvChangeDelayMs } from '../caddy/dynamic-upstreams.js';
import type { JsonObject } from '../caddy/json.js';
import type { ServiceRoute } from '../caddy/types.js';
import type { UpstreamPublisher } from '../controller/ports.js';
import type { DnsServer } from '../dns/server.js';
import { parseUpstreamAddress, replicaLabel, serviceRecordName } from '../dns/names.js';
import type { Millis, Replica, ServiceSpec } from '../model.js';
import { serviceRoute, type RouteWriter } from './admin-mode.js';

/**
 * DNS upstream mode: each service's route takes its upstreams from an SRV record served by the
 * controller's DNS server, so waking, scaling and draining change DNS answers and never Caddy's
 * config. Routes are written only when a service is created, updated or deleted, and when Caddy
 * lost its config.
 *
 * Trade-off: warm traffic depends on the controller. Caddy 2.6.2 keeps using a cached SRV response
 * for one refresh interval. After that, every request to a service gets 503 until the
 * controller's DNS server is back. Caddy 2.8 and later can keep a stale answer longer with
 * `grace_period`.
 */
export class DnsUpstreamPublisher implements UpstreamPublisher {
  /** Route as last written, per service, to skip writes that change nothing. */
  private readonly written = new Map<string, string>();
  /**
   * Replica addresses (`ip:port`) by DNS label, to map Caddy's upstream names back. Replicas that
   * left every answer stay for RETIRED_LABEL_MS, while their last requests may still run.
   */
  private readonly addressByLabel = new Map<string, { address: string; retiredAt?: number }>();
  /** Replica ids in each service's current SRV answer. */
  private readonly answers = new Map<string, Set<string>>();

  constructor(
    private readonly options: {
      dns: DnsServer;
      routes: RouteWriter;
      instanceId: string;
      /** `ip:port` of the DNS server, as Caddy dials it. */
      dnsAddress: string;
      refreshMs: Millis;
    },
  ) {}

  /** reverse_proxy fields of a route in this mode, for CaddyRouting. */
  dynamicUpstreams(route: ServiceRoute): JsonObject {
    const fields = buildSrvUpstreams({
      srvName: serviceRecordName(this.options.instanceId, route.service),
      dnsAddress: this.options.dnsAddress,
      refreshMs: this.options.refreshMs,
      maxConcurrency: route.maxConcurrency,
    });
    return fields as unknown as JsonObject;
  }

  async publish(spec: ServiceSpec, replicas: Replica[]): Promise<void> {
    const removed = this.setAnswer(spec.name, replicas);
    await this.writeRoute(spec);

    // Caddy may pick a replica left out of the answer until its cached answer expires.
    if (removed) await sleep(srvChangeDelayMs(this.options.refreshMs));
  }

  async unpublish(service: string): Promise<void> {
    await this.options.routes.removeRoute(service);
    this.written.delete(service);
    this.options.dns.removeService(service);
    this.answers.delete(service);
  }

  async publishAll(entries: Array<{ spec: ServiceSpec; replicas: Replica[] }>): Promise<void> {
    for (const { spec, replicas } of entries) this.setAnswer(spec.name, replicas);
    const routes = entries.map(({ spec }) => serviceRoute(spec, []));
    await this.options.routes.ensureServer(routes);
    for (const { spec } of entries) this.written.set(spec.name, JSON.stringify(serviceRoute(spec, [])));
  }

  /** Draining replicas need no parking: Caddy lists a dynamic upstream while it has requests. */
  async setDraining(): Promise<void> {}

  /**
   * Maps an address from `GET /reverse_proxy/upstreams` (`<label>.<service>.<zone>.:<port>`) to
   * the replica's `ip:port`; undefined for the wake-up target and addresses of other zones.
   */
  canonicalAddress(address: string): string | undefined {
    const target = parseUpstreamAddress(this.options.instanceId, address);
    if (target === undefined) return address;
    if (target.kind !== 'replica') return undefined;
    return this.addressByLabel.get(target.replicaLabel)?.address;
  }

  /** Sets the SRV answer; returns whether a replica left it. */
  private setAnswer(service: string, replicas: Replica[]): boolean {
    const targets = [];
    const ids = new Set<string>();
    for (const replica of replicas) {
      if (!replica.address) continue;
      const separator = replica.address.lastIndexOf(':');
      const ip = replica.address.slice(0, separator).replace(/^\[|\]$/g, '');
      const port = Number(replica.address.slice(separator + 1));
      targets.push({ replicaId: replica.id, ip, port });
      ids.add(replica.id);
      this.addressByLabel.set(replicaLabel(replica.id), { address: replica.address });
    }
    this.options.dns.setService(service, targets);

    const previous = this.answers.get(service) ?? new Set<string>();
    this.answers.set(service, ids);
    const removed = [...previous].filter((id) => !ids.has(id));
    this.retireLabels(removed);
    return removed.length > 0;
  }

  private retireLabels(removedIds: string[]): void {
    const now = Date.now();
    for (const id of removedIds) {
      const entry = this.addressByLabel.get(replicaLabel(id));
      if (entry) entry.retiredAt = now;
    }
    for (const [label, entry] of this.addressByLabel) {
      if (entry.retiredAt !== undefined && now - entry.retiredAt > RETIRED_LABEL_MS) this.addressByLabel.delete(label);
    }
  }

  private async writeRoute(spec: ServiceSpec): Promise<void> {
    const route = serviceRoute(spec, []);
    const key = JSON.stringify(route);
    if (this.written.get(spec.name) === key) return;
    await this.options.routes.setRoute(route);
    this.written.set(spec.name, key);
  }
}

const RETIRED_LABEL_MS = 10 * 60_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
