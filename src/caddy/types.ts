/** What the controller asks of Caddy; only src/caddy speaks Caddy's JSON. */

/** The desired route of one service. */
export interface ServiceRoute {
  service: string;
  /** Extra host names; the path prefix `/<service>/` is always routed. */
  hosts: string[];
  /** Dial addresses (`ip:port`) of ready, non-draining replicas. Empty: route to the wake-up handler. */
  upstreams: string[];
  /** Per-replica hard limit of concurrent requests; unlimited when unset. */
  maxConcurrency?: number;
}

/** One entry of `GET /reverse_proxy/upstreams`. */
export interface UpstreamStatus {
  address: string;
  numRequests: number;
  fails: number;
}

/** One completed request, from Caddy's access log. */
export interface AccessLogEntry {
  /** Request host without port, lower case. */
  host: string;
  /** Original request URI (path and query) as the client sent it. */
  uri: string;
  status: number;
  /** Time the request ended. */
  at: Date;
  durationMs: number;
}
