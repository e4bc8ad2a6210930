import type { Logger } from '../log.js';
import { type CaddyAdmin, configPath, idPath, rejectedStatus } from './admin.js';
import { buildAccessLog, buildServer, type ServerLayout } from './config.js';
import { isJsonObject, type JsonObject } from './json.js';
import { accessLoggerName, containerId, hostRouteId, pathRouteId, serverName } from './names.js';
import { buildHostRoute, buildPathRoute, normalizeRoute, parkingUpstreams } from './routes.js';
import { httpAppPorts } from './tls.js';
import type { ServiceRoute, UpstreamStatus } from './types.js';

export interface CaddyRoutingOptions {
  admin: CaddyAdmin;
  logger: Logger;
  instanceId: string;
  /** Public port of Luma's server in Caddy. */
  port: number;
  /** HTTPS port for services' host names, on the same server; no TLS listener when unset. See tls.ts. */
  tlsPort?: number;
  /** Interface of the public port; all interfaces when unset. */
  listenHost?: string;
  /** Address of the controller's REST API (`host:port` or a unix socket path). */
  apiAddress: string;
  /** Address of the wake-up handler (`host:port` or a unix socket path). */
  wakeAddress: string;
  /** `host:port` of the UDP AccessLogReceiver; Caddy writes no access log for Luma when unset. */
  accessLogAddress?: string;
  /** How long an address dropped by `setRoute` stays parked unless `setDraining` lists it. */
  autoParkMs?: number;
  /**
   * How long WebSocket and other upgraded connections outlive a config write, in milliseconds.
   * Only for Caddy 2.7 and later (`detectFeatures().release` is `2.8-or-later`): Caddy 2.6.2
   * rejects the setting, and closes every upgraded connection on every config write.
   */
  streamCloseDelayMs?: number;
  /** Reverse_proxy fields of the dns upstream mode; see RouteTargets.dynamicUpstreams. */
  dynamicUpstreams?: (route: ServiceRoute) => JsonObject;
  /** Largest request body of a service request, in bytes; see RouteTargets.maxBodyBytes. */
  maxBodyBytes?: number;
  /** CIDR ranges whose `X-Forwarded-*` headers Caddy keeps; see RouteTargets.trustedProxies. */
  trustedProxies?: readonly string[];
}

const DEFAULT_AUTO_PARK_MS = 10 * 60_000;

/**
 * Owns Luma's HTTP server in Caddy and every write to it. Writes are serialised, and each one
 * changes only Luma's server and Luma's access logger, never other parts of Caddy's config.
 *
 * Draining: when `setRoute` or `removeRoute` drops an upstream address, the address is first
 * added to the parking route, so Caddy keeps counting its in-flight requests (see
 * buildParkingRoute). It stays parked until a `setDraining` call lists it and a later call no
 * longer does, or, if no call ever lists it, for `autoParkMs`.
 */
export class CaddyRouting {
  private readonly admin: CaddyAdmin;
  private readonly log: Logger;
  private readonly layout: ServerLayout;
  private readonly autoParkMs: number;
  private readonly routes = new Map<string, ServiceRoute>();
  private draining = new Set<string>();
  /** Addresses parked by setRoute or removeRoute, with the time they stop being parked. */
  private readonly autoParked = new Map<string, number>();
  private installed = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: CaddyRoutingOptions) {
    this.admin = options.admin;
    this.log = options.logger.child({ component: 'caddy-routing' });
    this.autoParkMs = options.autoParkMs ?? DEFAULT_AUTO_PARK_MS;
    this.layout = {
      instanceId: options.instanceId,
      port: options.port,
      tlsPort: options.tlsPort,
      listenHost: options.listenHost ?? '',
      apiAddress: options.apiAddress,
      wakeAddress: options.wakeAddress,
      accessLogAddress: options.accessLogAddress,
      dynamicUpstreams: options.dynamicUpstreams,
      maxBodyBytes: options.maxBodyBytes,
      trustedProxies: options.trustedProxies,
    };
    if (options.streamCloseDelayMs !== undefined) this.layout.streamCloseDelay = `${options.streamCloseDelayMs}ms`;
    // Builds once to reject a bad instance id, port or address now rather than at the first write.
    buildServer(this.layout, [], []);
  }

  /** Name of Luma's server in `apps.http.servers`. */
  get serverName(): string {
    return serverName(this.layout.instanceId);
  }

  /**
   * Installs Luma's server with exactly `routes`, replacing any previous version of it. Creates
   * `apps.http.servers` (and the access logger) when missing, also on a Caddy whose config is null.
   */
  ensureServer(routes: ServiceRoute[]): Promise<void> {
    return this.serialise(async () => {
      const normalized = routes.map(normalizeRoute);
      buildServer(this.layout, normalized, []);
      this.routes.clear();
      for (const route of normalized) this.routes.set(route.service, route);
      await this.install();
    });
  }

  /** Adds or replaces one service's routes, leaving the other services' routes untouched. */
  setRoute(route: ServiceRoute): Promise<void> {
    return this.serialise(async () => {
      const next = normalizeRoute(route);
      const previous = this.routes.get(next.service);
      if (!this.installed) {
        this.routes.set(next.service, next);
        await this.install();
        return;
      }
      if (previous !== undefined && JSON.stringify(previous) === JSON.stringify(next)) return;

      try {
        await this.parkDropped(previous?.upstreams ?? [], next.upstreams);
        await this.writeServiceRoutes(previous, next);
        this.routes.set(next.service, next);
      } catch (error) {
        if (!isMissingObject(error)) throw error;
        this.log.info({ err: error, service: next.service }, 'reinstall server after its route ids went missing');
        this.routes.set(next.service, next);
        await this.install();
        return;
      }
      this.log.info({ service: next.service, upstreams: next.upstreams, hosts: next.hosts }, 'wrote route');
    });
  }

  /** Removes one service's routes; requests for it then get the 404 routes. */
  removeRoute(service: string): Promise<void> {
    return this.serialise(async () => {
      const previous = this.routes.get(service);
      if (previous === undefined) return;
      this.routes.delete(service);
      if (!this.installed) return;

      await this.parkDropped(previous.upstreams, []);
      for (const id of [hostRouteId(this.layout.instanceId, service), pathRouteId(this.layout.instanceId, service)]) {
        try {
          await this.admin.delete(idPath(id));
        } catch (error) {
          // 404 is "unknown object ID": the route is already gone, which is the goal.
          if (rejectedStatus(error) !== 404) throw error;
        }
      }
      this.log.info({ service }, 'removed route');
    });
  }

  /**
   * Replaces the set of draining addresses kept in the parking route. Pass every address that
   * left routing and may still have requests in flight, over all services.
   */
  setDraining(addresses: string[]): Promise<void> {
    return this.serialise(async () => {
      const next = new Set(addresses);
      for (const address of next) this.autoParked.delete(address);
      const before = this.parkedAddresses();
      this.draining = next;
      await this.writeParking(before);
    });
  }

  /** Returns whether Luma's server exists in Caddy's running config. False after Caddy restarted empty. */
  async serverPresent(): Promise<boolean> {
    try {
      return isJsonObject(await this.admin.get(configPath('apps', 'http', 'servers', this.serverName)));
    } catch (error) {
      // 400 "invalid traversal path": apps or apps.http does not exist.
      if (rejectedStatus(error) === 400) return false;
      throw error;
    }
  }

  /** Returns Caddy's in-flight counts per upstream address (all servers, parked ones included). */
  readUpstreams(): Promise<UpstreamStatus[]> {
    return this.admin.readUpstreams();
  }

  /** Deletes Luma's server and access logger from Caddy. */
  removeServer(): Promise<void> {
    return this.serialise(async () => {
      await this.admin.delete(configPath('apps', 'http', 'servers', this.serverName)).catch(ignoreMissingParent);
      if (this.layout.accessLogAddress !== undefined) {
        await this.admin.delete(configPath('logging', 'logs', accessLoggerName(this.layout.instanceId))).catch(ignoreMissingParent);
      }
      this.installed = false;
      this.log.info({ server: this.serverName }, 'removed server');
    });
  }

  private async install(): Promise<void> {
    const accessLog = buildAccessLog(this.layout);
    if (accessLog !== undefined) {
      await this.putOrPatch(configPath('logging', 'logs', accessLoggerName(this.layout.instanceId)), accessLog);
    }

    // The ports go first: a server with TLS policies loaded before them would serve TLS on the
    // plain port too (Caddy keeps only the listener on `http_port` plain).
    const ports = httpAppPorts(this.layout);
    if (ports !== undefined) {
      for (const [key, value] of Object.entries(ports)) await this.putOrPatch(configPath('apps', 'http', key), value);
    }

    this.expireAutoParked();
    const server = buildServer(this.layout, [...this.routes.values()], this.parkedAddresses());
    await this.putOrPatch(configPath('apps', 'http', 'servers', this.serverName), server);
    this.installed = true;
    this.log.info({ server: this.serverName, port: this.layout.port, services: this.routes.size }, 'installed server');
  }

  /** Writes `value` at `path`: PATCH when something is there, PUT (which creates parents) when not. */
  private async putOrPatch(path: string, value: JsonObject | number): Promise<void> {
    let current: unknown;
    try {
      current = await this.admin.get(path);
    } catch (error) {
      if (rejectedStatus(error) !== 400) throw error;
    }
    if (current === undefined || current === null) await this.admin.put(path, value);
    else await this.admin.patch(path, value);
  }

  private async writeServiceRoutes(previous: ServiceRoute | undefined, next: ServiceRoute): Promise<void> {
    const { instanceId } = this.layout;
    const hostRoute = buildHostRoute(this.layout, next);
    const hadHostRoute = previous !== undefined && previous.hosts.length > 0;
    const hostId = hostRouteId(instanceId, next.service);
    if (hostRoute !== undefined && hadHostRoute) await this.admin.patch(idPath(hostId), hostRoute);
    // PUT at an array index inserts there: right after the API route, which is always first, and
    // the server-wide body-limit route, which follows it when a limit is set.
    else if (hostRoute !== undefined) {
      const index = this.layout.maxBodyBytes === undefined ? 1 : 2;
      await this.admin.put(configPath('apps', 'http', 'servers', this.serverName, 'routes', index), hostRoute);
    }
    else if (hadHostRoute) await this.admin.delete(idPath(hostId));

    const pathRoute = buildPathRoute(this.layout, next);
    if (previous !== undefined) await this.admin.patch(idPath(pathRouteId(instanceId, next.service)), pathRoute);
    else await this.admin.post(idPath(containerId(instanceId, 'paths'), 'handle', 0, 'routes'), pathRoute);
  }

  /** Parks the replica addresses in `before` that are missing from `after`, before routes drop them. */
  private async parkDropped(before: string[], after: string[]): Promise<void> {
    const remaining = new Set(after);
    const dropped = before.filter((address) => !remaining.has(address) && address !== this.layout.wakeAddress);
    if (dropped.length === 0) return;

    const parkedBefore = this.parkedAddresses();
    const until = Date.now() + this.autoParkMs;
    for (const address of dropped) {
      if (!this.draining.has(address)) this.autoParked.set(address, until);
    }
    await this.writeParking(parkedBefore);
  }

  private async writeParking(before: string[]): Promise<void> {
    this.expireAutoParked();
    const after = this.parkedAddresses();
    if (JSON.stringify(before) === JSON.stringify(after) || !this.installed) return;

    try {
      await this.admin.patch(idPath(containerId(this.layout.instanceId, 'parking'), 'handle', 0, 'upstreams'), parkingUpstreams(after));
    } catch (error) {
      if (!isMissingObject(error)) throw error;
      this.log.info({ err: error }, 'reinstall server after its parking route went missing');
      await this.install();
      return;
    }
    this.log.info({ parked: after }, 'parked draining upstreams');
  }

  private parkedAddresses(): string[] {
    return [...new Set([...this.draining, ...this.autoParked.keys()])].sort();
  }

  private expireAutoParked(): void {
    const now = Date.now();
    for (const [address, until] of this.autoParked) {
      if (until <= now) this.autoParked.delete(address);
    }
  }

  private serialise<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** 404 is an unknown `@id`; 400 and 500 with a path error mean Luma's server or a container is gone. */
function isMissingObject(error: unknown): boolean {
  const status = rejectedStatus(error);
  if (status === 404) return true;
  if (status !== 400 && status !== 500) return false;
  const message = String((error as { details: { caddyError?: unknown } }).details.caddyError ?? '');
  return /invalid traversal path|key does not exist|array index out of bounds/.test(message);
}

function ignoreMissingParent(error: unknown): void {
  if (rejectedStatus(error) !== 400) throw error;
}
