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
  /**
   * Largest request body a service accepts, in bytes. Caddy rejects larger requests with 413,
   * before they reach a replica or the wake-up handler. Unlimited when unset.
   */
  maxBodyBytes?: number;
  /**
   * CIDR ranges of proxies in front of Caddy. Caddy keeps the `X-Forwarded-For`, `-Proto` and
   * `-Host` values that a client in these ranges sends (appending the client's address to
   * `X-Forwarded-For`) and replaces them for every other client. Empty or unset trusts no one.
   */
  trustedProxies?: readonly string[];
}

export interface ProxyOptions {
  requestHeaders?: JsonObject;
  loadBalancing?: JsonObject;
  streamCloseDelay?: string;
  trustedProxies?: readonly string[];
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
 * Caddy's `flush_interval` for responses with a Content-Length. Caddy 2.6.2 flushes
 * `text/event-stream` and responses without Content-Length at once whatever this is. Without a
 * flush interval, Caddy holds back the headers and the first 4 KiB of a response with a
 * Content-Length until that buffer fills or the body ends. A slow app that writes small pieces
 * would then reach the client in one burst at the end.
 */
const FLUSH_INTERVAL = '100ms';

/**
 * Returns a reverse_proxy handler for `upstreams`.
 *
 * `flush_interval` is positive on purpose, never `-1`. Caddy 2.6.2 serves a handler whose
 * `flush_interval` is `-1` from the handler's own context, so every config reload aborts that
 * handler's in-flight requests (seen as 502), and a client that goes away does not cancel the
 * upstream request. A positive interval has neither effect (both checked on 2.6.2).
 */
export function proxyHandler(upstreams: JsonObject[], options: ProxyOptions = {}): JsonObject {
  const handler: JsonObject = { handler: 'reverse_proxy', upstreams };
  if (options.loadBalancing !== undefined) handler.load_balancing = options.loadBalancing;
  if (options.requestHeaders !== undefined) handler.headers = { request: options.requestHeaders };
  handler.transport = { ...TRANSPORT };
  handler.flush_interval = FLUSH_INTERVAL;
  if (options.streamCloseDelay !== undefined) handler.stream_close_delay = options.streamCloseDelay;
  // The handler's own list: Caddy 2.6.2 rejects the server-level `trusted_proxies` (added in
  // 2.6.3), and later releases still honour this field alongside the server's.
  if (options.trustedProxies !== undefined && options.trustedProxies.length > 0) {
    handler.trusted_proxies = [...options.trustedProxies];
  }
  return handler;
}

/**
 * Returns the proxy handler of a service: to its replicas with `least_conn` and the per-replica
 * `max_requests` limit, or to the wake-up handler when it has none.
 */
function serviceProxy(targets: RouteTargets, route: ServiceRoute, requestHeaders: JsonObject): JsonObject {
  const { streamCloseDelay, trustedProxies } = targets;
  if (targets.dynamicUpstreams !== undefined) {
    const fields = targets.dynamicUpstreams(route);
    const handler = proxyHandler([], { requestHeaders, loadBalancing: replicaLoadBalancing(), streamCloseDelay, trustedProxies });
    delete handler.upstreams;
    const transport = isJsonObject(fields.transport) ? fields.transport : {};
    return { ...handler, ...fields, transport: { ...TRANSPORT, ...transport } };
  }
  if (route.upstreams.length === 0) {
    return proxyHandler([{ dial: dialAddress(targets.wakeAddress) }], { requestHeaders, streamCloseDelay, trustedProxies });
  }

  const upstreams = route.upstreams.map((address) => {
    const upstream: JsonObject = { dial: dialAddress(address) };
    if (route.maxConcurrency !== undefined) upstream.max_requests = route.maxConcurrency;
    return upstream;
  });
  return proxyHandler(upstreams, { requestHeaders, loadBalancing: replicaLoadBalancing(), streamCloseDelay, trustedProxies });
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
  const proxy = serviceProxy(targets, route, { delete: ['X-Forwarded-Prefix'] });
  return {
    '@id': hostRouteId(targets.instanceId, route.service),
    match: [{ host: [...route.hosts] }],
    handle: [...bodyLimit(targets), proxy],
  };
}

/**
 * Returns the server-level route that rejects a request whose declared Content-Length exceeds
 * `maxBodyBytes` with 413 at once, before anything is proxied and without `100 Continue`, and
 * closes the connection. It contains the only CEL expression of the limit, so the cost of a config
 * reload does not grow with it per service. Each service route then cuts a chunked body at the
 * limit with `request_body` (see bodyLimit), which Caddy 2.6.2 turns into a 413 error (see
 * buildBodyTooLargeRoute). `request_body` alone is not enough: on 2.6.2 a Content-Length over
 * its `max_size` reaches the upstream cut short and the client gets 502.
 */
export function buildDeclaredBodyLimitRoute(maxBodyBytes: number): JsonObject {
  checkBodyLimit(maxBodyBytes);
  // CEL's `&&` yields false when either side is false, so a missing header never reaches int().
  const declaredTooLarge = `{http.request.header.Content-Length} != "" && int({http.request.header.Content-Length}) > ${maxBodyBytes}`;
  return {
    match: [{ expression: declaredTooLarge }],
    handle: [
      {
        handler: 'static_response',
        status_code: 413,
        headers: { 'Content-Type': ['text/plain; charset=utf-8'] },
        body: `request body exceeds the limit of ${maxBodyBytes} bytes\n`,
        close: true,
      },
    ],
  };
}

/** Returns the `request_body` handler that cuts a service's request bodies at the limit, if any. */
function bodyLimit(targets: RouteTargets): JsonObject[] {
  if (targets.maxBodyBytes === undefined) return [];
  checkBodyLimit(targets.maxBodyBytes);
  return [{ handler: 'request_body', max_size: targets.maxBodyBytes }];
}

function checkBodyLimit(maxBodyBytes: number): void {
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1) {
    throw new LumaError('invalid_setting', `invalid maximum body size ${maxBodyBytes}: expected a whole number of bytes of at least 1`, {
      details: { maxBodyBytes },
    });
  }
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
  const handle = [
    ...bodyLimit(targets),
    // NOTE: Caddy matches on the decoded, cleaned path but the prefix is cut from the escaped
    // one. A prefix spelled with percent-encodings (`/%73vc/x` for `/svc/x`) is matched but not
    // stripped, and an encoded slash with dot segments (`/a/..%2Fsvc%2Fx`) matches `/svc/`
    // while the app receives the escaped path unchanged. No ordinary client sends such paths.
    { handler: 'rewrite', path_regexp: [{ find: `(?i)^${escapeRegExp(prefix)}/`, replace: '/' }] },
    serviceProxy(targets, route, { set: { 'X-Forwarded-Prefix': [prefix] } }),
  ];

  return {
    '@id': pathRouteId(targets.instanceId, route.service),
    match: [{ path: [`${prefix}/*`] }],
    handle,
  };
}

/** A path of one segment that could name a service, such as `/app`; case-insensitive like Caddy's path matcher. */
const BARE_PREFIX_PATTERN = '(?i)^/[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';

/**
 * Returns the routes that redirect (308) `/<name>` to `/<name>/`, keeping the query string byte
 * for byte. They serve every service at once, so the server contains two CEL expressions whatever
 * the number of services: at 1000 services, one expression per service made each config reload
 * of Caddy 2.6.2 take 680-900 ms instead of 160-370 ms. A bare path that names no service
 * redirects too, and the slash-terminated path then gets the 404 that names the service.
 */
export function buildBarePrefixRedirects(): JsonObject[] {
  const redirect = (location: string): JsonObject => ({
    handler: 'static_response',
    status_code: 308,
    headers: { Location: [location] },
  });
  return [
    {
      match: [{ path_regexp: { pattern: BARE_PREFIX_PATTERN }, expression: "{http.request.uri.query} != ''" }],
      handle: [redirect('{http.request.uri.path}/?{http.request.uri.query}')],
    },
    {
      match: [{ path_regexp: { pattern: BARE_PREFIX_PATTERN } }],
      handle: [redirect('{http.request.uri.path}/')],
    },
  ];
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
