import { LumaError } from '../errors.js';
import { isJsonObject, type JsonObject } from './json.js';
import { containerId, dialAddress, hostRouteId, pathRouteId } from './names.js';
import type { ServiceRoute } from './types.js';

/**
 * Caddy JSON for one service: its host route, its path route and the reverse_proxy handler they
 * share. Checked against Caddy 2.6.2; the fields used here exist unchanged up to 2.10.
 */

/** Addresses a route needs besides the service's own replicas. */
export interface RouteTargets {
  instanceId: string;
  /** Dial address of the wake-up handler, used while a service has no ready replica. */
  wakeAddress: string;
  /**
   * Caddy's `stream_close_delay`: how long upgraded connections (WebSocket) outlive a config
   * reload. Caddy 2.6.2 rejects the field and closes every upgraded connection on each reload;
   * the field exists from Caddy 2.7 on. Unset leaves Caddy's default.
   */
  streamCloseDelay?: string;
  /**
   * In the dns upstream mode: the reverse_proxy fields (`dynamic_upstreams`, transport resolver,
   * request limit) that make Caddy take the service's upstreams from its SRV record. The route
   * then no longer depends on the replicas, so scaling needs no config write.
   */
  dynamicUpstreams?: (route: ServiceRoute) => JsonObject;
}

export interface ProxyOptions {
  requestHeaders?: JsonObject;
  loadBalancing?: JsonObject;
  streamCloseDelay?: string;
}

/**
 * Transport of every proxy handler. There is deliberately no `response_header_timeout` and no
 * `read_timeout`: a request held by the wake-up handler during a cold start may wait 75 s or more
 * before the first response byte. `dial_timeout` bounds the wait for a replica that vanished
 * from the Docker network.
 */
const TRANSPORT: JsonObject = { protocol: 'http', dial_timeout: '2s' };

/**
 * How long a request may wait for a replica that is below its `max_requests` limit, or retry a
 * replica whose dial failed, before Caddy responds with 503. `try_interval` is the pause between tries.
 */
const TRY_DURATION = '1s';
const TRY_INTERVAL = '100ms';

/** Path of the never-matching parking route; a request for it falls through to the 404 routes. */
const PARKING_PATH = '/.luma-parking';

/**
 * Returns a reverse_proxy handler for `upstreams`.
 *
 * `flush_interval` is left unset on purpose. Caddy 2.6.2 serves an explicit `-1` from the handler's
 * own context, so every config reload aborts that handler's in-flight requests (seen as 502), and a
 * client that goes away does not cancel the upstream request. Unset, Caddy still flushes at once
 * for `text/event-stream` and for responses without Content-Length, so SSE and chunked streams are
 * not buffered, and in-flight requests survive reloads.
 */
export function proxyHandler(upstreams: JsonObject[], options: ProxyOptions = {}): JsonObject {
  const handler: JsonObject = { handler: 'reverse_proxy', upstreams };
  if (options.loadBalancing !== undefined) handler.load_balancing = options.loadBalancing;
  if (options.requestHeaders !== undefined) handler.headers = { request: options.requestHeaders };
  handler.transport = { ...TRANSPORT };
  if (options.streamCloseDelay !== undefined) handler.stream_close_delay = options.streamCloseDelay;
  return handler;
}

/**
 * Returns the proxy handler of a service: to its replicas with `least_conn` and the per-replica
 * `max_requests` limit, or to the wake-up handler when it has none.
 */
function serviceProxy(targets: RouteTargets, route: ServiceRoute, requestHeaders: JsonObject): JsonObject {
  const { streamCloseDelay } = targets;
  if (targets.dynamicUpstreams !== undefined) {
    const fields = targets.dynamicUpstreams(route);
    const handler = proxyHandler([], { requestHeaders, loadBalancing: replicaLoadBalancing(), streamCloseDelay });
    delete handler.upstreams;
    const transport = isJsonObject(fields.transport) ? fields.transport : {};
    return { ...handler, ...fields, transport: { ...TRANSPORT, ...transport } };
  }
  if (route.upstreams.length === 0) {
    return proxyHandler([{ dial: dialAddress(targets.wakeAddress) }], { requestHeaders, streamCloseDelay });
  }

  const upstreams = route.upstreams.map((address) => {
    const upstream: JsonObject = { dial: dialAddress(address) };
    if (route.maxConcurrency !== undefined) upstream.max_requests = route.maxConcurrency;
    return upstream;
  });
  return proxyHandler(upstreams, { requestHeaders, loadBalancing: replicaLoadBalancing(), streamCloseDelay });
}

function replicaLoadBalancing(): JsonObject {
  return {
    selection_policy: { policy: 'least_conn' },
    try_duration: TRY_DURATION,
    try_interval: TRY_INTERVAL,
  };
}

/**
 * Returns the route for the service's extra host names, or undefined when it has none. The path
 * passes unchanged, and a client-sent `X-Forwarded-Prefix` is removed so the app and the wake-up
 * handler never mistake a host-routed request for a path-routed one.
 */
export function buildHostRoute(targets: RouteTargets, route: ServiceRoute): JsonObject | undefined {
  if (route.hosts.length === 0) return undefined;
  return {
    '@id': hostRouteId(targets.instanceId, route.service),
    match: [{ host: [...route.hosts] }],
    handle: [serviceProxy(targets, route, { delete: ['X-Forwarded-Prefix'] })],
  };
}

/**
 * Returns the route for `/<service>` and `/<service>/*`.
 *
 * - `/<service>` redirects (308) to `/<service>/`, keeping the query string byte for byte.
 * - `/<service>/*` loses the prefix and gains `X-Forwarded-Prefix: /<service>`.
 *
 * The prefix is cut with `path_regexp` on the escaped path, because `strip_path_prefix` cleans
 * the path first (Caddy 2.6.2 and later merge `//` and resolve `..`). With the regexp, percent
 * encodings, repeated slashes and dot segments reach the app exactly as the client sent them.
 * Caddy's path matcher is case-insensitive, so the regexp is too.
 */
export function buildPathRoute(targets: RouteTargets, route: ServiceRoute): JsonObject {
  const prefix = `/${route.service}`;
  const redirect = (location: string): JsonObject => ({
    handler: 'static_response',
    status_code: 308,
    headers: { Location: [location] },
  });

  return {
    '@id': pathRouteId(targets.instanceId, route.service),
    match: [{ path: [prefix, `${prefix}/*`] }],
    handle: [
      {
        handler: 'subroute',
        routes: [
          {
            match: [{ path: [prefix], expression: "{http.request.uri.query} != ''" }],
            handle: [redirect(`${prefix}/?{http.request.uri.query}`)],
          },
          { match: [{ path: [prefix] }], handle: [redirect(`${prefix}/`)] },
          {
            handle: [
              // NOTE: a request whose escaped path spells the prefix with percent-encodings
              // (`/%73vc/x` for `/svc/x`) matches this route but is not stripped, so the app
              // receives the full path. No ordinary client sends such paths.
              { handler: 'rewrite', path_regexp: [{ find: `(?i)^${escapeRegExp(prefix)}/`, replace: '/' }] },
              serviceProxy(targets, route, { set: { 'X-Forwarded-Prefix': [prefix] } }),
            ],
          },
        ],
      },
    ],
  };
}

/**
 * Returns the parking route: a route that never matches (`path X` and `not path X`) and whose
 * only purpose is to reference draining upstreams. Caddy keeps one in-flight counter per dial
 * address only while a loaded route references the address. Without this route, a reload that
 * drops a replica's address deletes its counter. `GET /reverse_proxy/upstreams` then stops
 * reporting the requests still running on the replica (verified on Caddy 2.6.2).
 */
export function buildParkingRoute(instanceId: string, addresses: readonly string[]): JsonObject {
  return {
    '@id': containerId(instanceId, 'parking'),
    match: [{ path: [PARKING_PATH], not: [{ path: [PARKING_PATH] }] }],
    handle: [proxyHandler(parkingUpstreams(addresses))],
  };
}

export function parkingUpstreams(addresses: readonly string[]): JsonObject[] {
  return [...new Set(addresses)].sort().map((address) => ({ dial: dialAddress(address) }));
}

/**
 * Returns `route` with lower-case, sorted, duplicate-free host names and duplicate-free
 * upstreams, so equal routes build equal JSON.
 */
export function normalizeRoute(route: ServiceRoute): ServiceRoute {
  const limit = route.maxConcurrency;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    throw new LumaError('invalid_input', `invalid maxConcurrency ${limit} for service ${route.service}: expected an integer of at least 1`, {
      details: { service: route.service, maxConcurrency: limit },
    });
  }

  const normalized: ServiceRoute = {
    service: route.service,
    hosts: [...new Set(route.hosts.map((host) => host.toLowerCase()))].sort(),
    upstreams: [...new Set(route.upstreams)].sort(),
  };
  if (route.maxConcurrency !== undefined) normalized.maxConcurrency = route.maxConcurrency;
  return normalized;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
