import { LumaError } from '../errors.js';
import type { JsonObject } from './json.js';
import { accessLoggerName, containerId, dialAddress } from './names.js';
import { buildBarePrefixRedirects, buildDeclaredBodyLimitRoute, buildHostRoute, buildParkingRoute, buildPathRoute, normalizeRoute, proxyHandler, type RouteTargets } from './routes.js';
import { listenFields, type ListenLayout } from './tls.js';
import type { ServiceRoute } from './types.js';

/**
 * Caddy JSON for Luma's HTTP server and its access log. Pure functions; CaddyRouting writes the
 * results through the admin API. Route order inside the server:
 *
 * 1. `/api`, `/api/*` to the controller's API, with `X-Luma-Client-Ip` set by Caddy;
 * 2. with a body limit, 413 for a request whose Content-Length exceeds it;
 * 3. host routes of all services, each a top-level route (`luma-<instance>.host.<service>`),
 *    because Caddy's automatic HTTPS only finds host names in top-level routes (see tls.ts);
 * 4. path routes of all services (container `luma-<instance>.paths`);
 * 5. 308 from `/<name>` to `/<name>/`, for every name at once;
 * 6. the parking route of draining upstreams, which never matches;
 * 7. 404 for `/`, then 404 naming the service for anything else.
 *
 * Host routes come before path routes, so `app.example.com/other/x` goes to the service that owns
 * the host even when a service named `other` exists.
 */

export interface ServerLayout extends RouteTargets, ListenLayout {
  /** Dial address of the controller's REST API. */
  apiAddress: string;
  /** `host:port` of the UDP access-log receiver; no access log when undefined. */
  accessLogAddress?: string;
}

const TEXT_HEADERS: JsonObject = {
  'Content-Type': ['text/plain; charset=utf-8'],
  'X-Content-Type-Options': ['nosniff'],
};

/** Returns the whole server object for `apps.http.servers.<serverName>`. */
export function buildServer(layout: ServerLayout, routes: readonly ServiceRoute[], parked: readonly string[]): JsonObject {
  checkUniqueServices(routes);
  const normalized = routes.map(normalizeRoute).sort((a, b) => a.service.localeCompare(b.service));
  const hostRoutes = normalized.map((route) => buildHostRoute(layout, route)).filter((route) => route !== undefined);
  const pathRoutes = normalized.map((route) => buildPathRoute(layout, route));

  const server: JsonObject = {
    ...listenFields(layout),
    routes: [
      buildApiRoute(layout),
      ...(layout.maxBodyBytes === undefined ? [] : [buildDeclaredBodyLimitRoute(layout.maxBodyBytes)]),
      ...hostRoutes,
      routeContainer(containerId(layout.instanceId, 'paths'), pathRoutes),
      ...buildBarePrefixRedirects(),
      buildParkingRoute(layout.instanceId, parked),
      {
        match: [{ path: ['/'] }],
        handle: [{ handler: 'static_response', status_code: 404, headers: TEXT_HEADERS, body: 'not found\n' }],
      },
      {
        handle: [
          {
            handler: 'static_response',
            status_code: 404,
            headers: TEXT_HEADERS,
            body: 'no service named "{http.request.uri.path.0}"\n',
          },
        ],
      },
    ],
    errors: { routes: [buildUnavailableRoute(), buildBodyTooLargeRoute()] },
  };
  if (layout.accessLogAddress !== undefined) {
    server.logs = { default_logger_name: accessLoggerName(layout.instanceId) };
  }
  return server;
}

/**
 * Returns the route to the controller's API. `X-Luma-Client-Ip` is overwritten with the address
 * of the connecting client, so a value sent by the client never reaches the API.
 */
export function buildApiRoute(layout: ServerLayout): JsonObject {
  return {
    '@id': containerId(layout.instanceId, 'api'),
    match: [{ path: ['/api', '/api/*'] }],
    handle: [
      proxyHandler([{ dial: dialAddress(layout.apiAddress) }], {
        requestHeaders: { set: { 'X-Luma-Client-Ip': ['{http.request.remote.host}'] } },
        streamCloseDelay: layout.streamCloseDelay,
      }),
    ],
  };
}

/**
 * Returns the error route, which turns reverse_proxy errors into a short 503 with
 * `Retry-After: 1` instead of Caddy's empty 502. It handles 502 (the dial failed because the
 * wake-up handler, the API or a replica is down) and 503 (every replica stayed at `max_requests`
 * for the whole `try_duration`). A 502 or 503 that an app returns is a response, not an error,
 * and passes unchanged.
 */
export function buildUnavailableRoute(): JsonObject {
  return {
    match: [{ expression: '{http.error.status_code} in [502, 503]' }],
    handle: [
      {
        handler: 'static_response',
        status_code: 503,
        headers: { ...TEXT_HEADERS, 'Retry-After': ['1'] },
        body: 'service unavailable, retry in a moment\n',
      },
    ],
  };
}

/**
 * Returns the `logging.logs.<name>` entry that sends the server's access log as JSON over UDP.
 *
 * UDP, because Caddy 2.6.2's `net` writer dials at config load: over TCP, a receiver that is down
 * makes Caddy reject the whole config (there is no `soft_start` in 2.6.2), including at Caddy
 * start-up. Over UDP the load succeeds without a receiver (checked on 2.6.2), each entry is one
 * datagram, and entries sent while the receiver is down are lost. Header fields are dropped, which keeps a datagram near 300 bytes and
 * keeps cookies off the socket.
 */
export function buildAccessLog(layout: ServerLayout): JsonObject | undefined {
  if (layout.accessLogAddress === undefined) return undefined;
  const name = accessLoggerName(layout.instanceId);
  return {
    writer: { output: 'net', address: `udp/${layout.accessLogAddress}` },
    encoder: {
      format: 'filter',
      wrap: { format: 'json' },
      fields: {
        'request>headers': { filter: 'delete' },
        resp_headers: { filter: 'delete' },
      },
    },
    include: [`http.log.access.${name}`],
  };
}

/**
 * Returns the error route for a chunked request body cut at the limit by `request_body`, which
 * Caddy 2.6.2 reports as a 413 error with an empty body.
 */
export function buildBodyTooLargeRoute(): JsonObject {
  return {
    match: [{ expression: '{http.error.status_code} == 413' }],
    handle: [
      {
        handler: 'static_response',
        status_code: 413,
        headers: TEXT_HEADERS,
        body: 'request body exceeds the limit\n',
        close: true,
      },
    ],
  };
}

function routeContainer(id: string, routes: JsonObject[]): JsonObject {
  // `routes` must stay an array even when empty: POST to `.../routes` appends only to an existing
  // array and would otherwise replace the value with a single route object.
  return { '@id': id, handle: [{ handler: 'subroute', routes }] };
}

function checkUniqueServices(routes: readonly ServiceRoute[]): void {
  const seen = new Set<string>();
  for (const route of routes) {
    if (seen.has(route.service)) {
      throw new LumaError('invalid_input', `service ${route.service} appears twice in the route list`, {
        details: { service: route.service },
      });
    }
    seen.add(route.service);
  }
}
