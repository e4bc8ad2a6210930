import { LumaError } from '../errors.js';
import type { JsonObject } from './json.js';

/**
 * Listeners of Luma's server: the plain HTTP port, and optionally an HTTPS port for services'
 * host names. Facts below were checked on Caddy 2.6.2.
 *
 * - One server listens on both ports. Caddy applies the server's TLS connection policies to every
 *   listener except the one on the HTTP app's `http_port`, so `http_port` must be the plain port
 *   and `https_port` the TLS port (both are settings of the whole HTTP app, see httpAppPorts).
 * - Caddy's automatic HTTPS obtains and renews a certificate for every host name in a top-level
 *   route's host matcher. Public names get theirs from Caddy's default ACME issuers. Names that
 *   do not qualify for a public certificate, such as `*.localhost`, get theirs from Caddy's local
 *   CA. Names in subroutes are not found, which is why host routes are top-level routes.
 * - HTTP/2 is served over TLS (ALPN) next to HTTP/1.1. The plain listener serves HTTP/1.1 only:
 *   h2c needs the server's `protocols` to list `h2c`, which Luma leaves unset.
 * - Redirects from HTTP to HTTPS are off, so the plain port serves every request as before.
 */

export interface ListenLayout {
  /** Plain HTTP port. */
  port: number;
  /** HTTPS port for host names; no TLS listener when unset. */
  tlsPort?: number;
  /** Interface to listen on; empty for all interfaces, Caddy's `:<port>`. */
  listenHost: string;
}

/** Returns the server fields that set its listeners, TLS and automatic HTTPS. */
export function listenFields(layout: ListenLayout): JsonObject {
  checkPort('public port', layout.port);
  if (layout.tlsPort === undefined) {
    return {
      listen: [listenAddress(layout.listenHost, layout.port)],
      // Without this, Caddy would treat host matchers on a port other than 80 as sites to serve
      // over HTTPS and start obtaining certificates for them.
      automatic_https: { disable: true },
    };
  }

  checkPort('TLS port', layout.tlsPort);
  if (layout.tlsPort === layout.port) {
    throw new LumaError('invalid_setting', `invalid TLS port ${layout.tlsPort}: it must differ from the public port`, {
      details: { port: layout.port, tlsPort: layout.tlsPort },
    });
  }
  return {
    listen: [listenAddress(layout.listenHost, layout.port), listenAddress(layout.listenHost, layout.tlsPort)],
    tls_connection_policies: [{}],
    automatic_https: { disable_redirects: true },
  };
}

/**
 * Returns the HTTP app's `http_port` and `https_port` for a layout with a TLS port, or undefined
 * without one. They tell Caddy which listener stays plain, and which ports its ACME challenges
 * and automatic HTTPS use, for every server in this Caddy.
 */
export function httpAppPorts(layout: ListenLayout): { http_port: number; https_port: number } | undefined {
  if (layout.tlsPort === undefined) return undefined;
  return { http_port: layout.port, https_port: layout.tlsPort };
}

function listenAddress(listenHost: string, port: number): string {
  const host = listenHost.includes(':') ? `[${listenHost}]` : listenHost;
  return `${host}:${port}`;
}

function checkPort(name: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new LumaError('invalid_setting', `invalid ${name} ${port}: expected 1-65535`, { details: { port } });
  }
}
