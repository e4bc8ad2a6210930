import { LumaError } from '../errors.js';
import type { Millis } from '../model.js';

/**
 * reverse_proxy fields for the "dns" upstream mode: Caddy finds a service's replicas with an SRV
 * lookup against the controller's DNS server, so scaling changes DNS answers instead of Caddy's
 * config. Facts below were observed on Caddy 2.6.2 (Go 1.19.8).
 *
 * - Caddy caches each SRV answer for `refresh` and looks it up again on the first request after
 *   that, so a change takes effect within `refresh` of the next request. Without traffic no
 *   lookup happens.
 * - Lookups must go over TCP. Over UDP an answer larger than 512 bytes (4 or 5 replicas, by
 *   name length) is truncated, Go retries over TCP, and Caddy's resolver dialer still uses UDP,
 *   so the lookup fails with "no answer from DNS server".
 * - Caddy keeps using a cached answer until it is `refresh` old, also while the DNS server is
 *   down. A lookup that fails after that makes Caddy use the static `upstreams` instead, or answer
 *   503 with an empty body when there are none. `grace_period`, which keeps a stale answer on
 *   failure in later Caddy versions, is rejected by 2.6.2 as an unknown field.
 * - The SRV answer's targets are dialed by name, so the http transport needs the same resolver.
 *   Without it, Caddy resolves them with the system's resolver, which does not know the zone.
 * - `GET /reverse_proxy/upstreams` lists a dynamic upstream, as `<target>.:<port>`, only while
 *   a request that fetched it is in flight. An absent replica has no request in flight.
 */

/** Caddy's SRV cache lifetime used when none is configured. */
export const DEFAULT_SRV_REFRESH_MS: Millis = 1_000;

/**
 * Shortest accepted `refresh`. Caddy's SRV source (upstreams.go) holds one process-wide lock on
 * its cache during each lookup, so requests on every SRV route wait for it.
 * A lookup took about 1 ms over TCP on loopback (median of 40-112 lookups, Caddy 2.6.2, 2 shared
 * cores). At 250 ms and 100 busy services that is an estimated 40% of the time under the lock.
 */
export const MIN_SRV_REFRESH_MS: Millis = 250;

/** Added to `refresh` when waiting for Caddy to stop picking a replica removed from DNS. */
const CHANGE_MARGIN_MS: Millis = 1_000;

export interface SrvUpstreamsOptions {
  /** Absolute SRV name of the service, from `serviceRecordName()`. */
  srvName: string;
  /** The controller's DNS server as `ip:port` or `[ipv6]:port`. */
  dnsAddress: string;
  /** How long Caddy caches the SRV answer. Default 1 s, minimum 250 ms. */
  refreshMs?: Millis;
  /** Timeout for Caddy's connection to the DNS server. Default 1 s. */
  dnsDialTimeoutMs?: Millis;
  /** Per-replica limit of concurrent requests; further requests get 503. Unlimited when unset. */
  maxConcurrency?: number;
  /** Static upstream (`ip:port`) Caddy uses only when the SRV lookup fails. */
  fallbackDial?: string;
}

/** Caddy's `UpstreamResolver`. */
export interface CaddyResolver {
  addresses: string[];
}

/** The fields to merge into a service's reverse_proxy handler. */
export interface SrvUpstreamsFields {
  dynamic_upstreams: {
    source: 'srv';
    name: string;
    refresh: string;
    resolver: CaddyResolver;
    dial_timeout: string;
  };
  transport: { protocol: 'http'; resolver: CaddyResolver };
  upstreams?: Array<{ dial: string }>;
  health_checks?: { passive: { unhealthy_request_count: number; max_fails: number } };
}

/**
 * Builds the reverse_proxy fields that take a service's upstreams from its SRV record. Throws
 * `invalid_input` for a relative SRV name and `invalid_setting` for a refresh below 250 ms.
 */
export function buildSrvUpstreams(options: SrvUpstreamsOptions): SrvUpstreamsFields {
  const refreshMs = options.refreshMs ?? DEFAULT_SRV_REFRESH_MS;
  if (!Number.isInteger(refreshMs) || refreshMs < MIN_SRV_REFRESH_MS) {
    throw new LumaError(
      'invalid_setting',
      `invalid SRV refresh ${refreshMs} ms: use a whole number of at least ${MIN_SRV_REFRESH_MS} ms`,
      { details: { refreshMs } },
    );
  }
  // A relative name would make Go's resolver try the system's search domains first.
  if (!options.srvName.endsWith('.')) {
    throw new LumaError('invalid_input', `SRV name ${options.srvName} must be absolute (end with a dot)`, {
      details: { srvName: options.srvName },
    });
  }

  const resolver: CaddyResolver = { addresses: [`tcp/${options.dnsAddress}`] };
  const fields: SrvUpstreamsFields = {
    dynamic_upstreams: {
      source: 'srv',
      name: options.srvName,
      refresh: `${refreshMs}ms`,
      resolver,
      dial_timeout: `${options.dnsDialTimeoutMs ?? 1_000}ms`,
    },
    transport: { protocol: 'http', resolver },
  };

  if (options.fallbackDial !== undefined) fields.upstreams = [{ dial: options.fallbackDial }];

  if (options.maxConcurrency !== undefined) {
    fields.health_checks = {
      passive: {
        unhealthy_request_count: options.maxConcurrency,
        // Caddy 2.6.2 treats every upstream as unhealthy when passive checks have max_fails 0,
        // its default without fail_duration. With no fail_duration no failure is counted, so
        // max_fails 1 only makes the request limit usable.
        max_fails: 1,
      },
    };
  }
  return fields;
}

/**
 * Returns how long after a change of the SRV answer Caddy may still pick a replica that was left
 * out: its cache lifetime plus a margin. Draining a replica starts after this delay.
 */
export function srvChangeDelayMs(refreshMs: Millis = DEFAULT_SRV_REFRESH_MS): Millis {
  return refreshMs + CHANGE_MARGIN_MS;
}
