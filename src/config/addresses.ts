import { BlockList, isIP } from 'node:net';
import path from 'node:path';

/** Listen and connect addresses of Luma's settings, parsed and checked. */

export interface TcpAddress {
  kind: 'tcp';
  /** Host name or IP literal, IPv6 without brackets. */
  host: string;
  /** Port number; 0 lets the operating system pick a free port. */
  port: number;
}

export interface UnixSocketAddress {
  kind: 'unix';
  /** Absolute path of the socket file. */
  path: string;
}

export type ListenAddress = TcpAddress | UnixSocketAddress;

/** Caddy's admin endpoint: an HTTP origin, or a unix socket that speaks HTTP. */
export type CaddyAdminEndpoint = { kind: 'http'; url: string } | UnixSocketAddress;

/** Docker engine endpoint, as in `DOCKER_HOST`. */
export type DockerEndpoint =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; protocol: 'http' | 'https'; host: string; port: number };

export class AddressSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AddressSyntaxError';
  }
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * Returns whether `address` is an IP literal in 127.0.0.0/8 or ::1, including IPv4-mapped IPv6
 * forms such as `::ffff:127.0.0.1`. Host names, even `localhost`, return false.
 */
export function isLoopbackIp(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return LOOPBACK.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** Returns whether a listen host is loopback: a loopback IP literal or `localhost`. */
export function isLoopbackHost(host: string): boolean {
  return host.toLowerCase() === 'localhost' || isLoopbackIp(host);
}

/**
 * Parses `host:port` (`127.0.0.1:8081`, `[::1]:0`, `localhost:8082`) or, when `allowUnixSocket`
 * is set, a unix socket path (`/run/luma/api.sock` or `unix:/run/luma/api.sock`).
 * With `loopbackOnly`, a TCP host must be loopback.
 */
export function parseListenAddress(
  text: string,
  options: { allowUnixSocket: boolean; loopbackOnly: boolean },
): ListenAddress {
  const socketPath = unixSocketPath(text);
  if (socketPath !== undefined) {
    if (!options.allowUnixSocket) throw new AddressSyntaxError('must be host:port; unix sockets are not supported here');
    return { kind: 'unix', path: socketPath };
  }

  const address = parseHostPort(text);
  if (options.loopbackOnly && !isLoopbackHost(address.host)) {
    const alternatives = options.allowUnixSocket ? 'a loopback address or a unix socket path' : 'a loopback address';
    throw new AddressSyntaxError(
      `host ${JSON.stringify(address.host)} is not loopback; use ${alternatives}, for example 127.0.0.1:${address.port}`,
    );
  }
  return address;
}

/** Formats a listen address the way `parseListenAddress` reads it. */
export function formatListenAddress(address: ListenAddress): string {
  if (address.kind === 'unix') return address.path;
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function unixSocketPath(text: string): string | undefined {
  let candidate: string | undefined;
  if (text.startsWith('unix://')) candidate = text.slice('unix://'.length);
  else if (text.startsWith('unix:')) candidate = text.slice('unix:'.length);
  else if (text.startsWith('/')) candidate = text;
  if (candidate === undefined) return undefined;
  if (!candidate.startsWith('/')) throw new AddressSyntaxError('a unix socket path must be absolute, for example /run/luma/api.sock');
  return path.normalize(candidate);
}

function parseHostPort(text: string): TcpAddress {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(text);
  if (match === null) {
    throw new AddressSyntaxError('must be host:port, for example 127.0.0.1:8081 or [::1]:8081');
  }

  const [, bracketed, plain = '', portText = ''] = match;
  const host = bracketed ?? plain;
  if (host === '') throw new AddressSyntaxError(`missing host; write it explicitly, for example 127.0.0.1:${portText}`);
  if (bracketed !== undefined && isIP(bracketed) !== 6) throw new AddressSyntaxError(`[${bracketed}] is not an IPv6 address`);
  if (bracketed === undefined && !isIP(host) && !isHostName(host)) {
    throw new AddressSyntaxError(`${JSON.stringify(host)} is not a valid IP address or host name`);
  }

  const port = Number(portText);
  if (port > 65535) throw new AddressSyntaxError(`port ${portText} is out of range 0-65535`);
  return { kind: 'tcp', host, port };
}

/** Returns whether `text` is a DNS host name: dot-separated labels of letters, digits and inner hyphens. */
export function isHostName(text: string): boolean {
  if (text.length === 0 || text.length > 253) return false;
  return text.split('.').every((label) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label));
}

/**
 * Parses Caddy's admin endpoint: an `http://` or `https://` origin, or a unix socket given as an
 * absolute path, `unix:/path` or Caddy's own notation `unix//path`.
 */
export function parseCaddyAdmin(text: string): CaddyAdminEndpoint {
  const caddyNotation = text.startsWith('unix//') ? `unix:${text.slice('unix/'.length)}` : text;
  const socketPath = unixSocketPath(caddyNotation);
  if (socketPath !== undefined) return { kind: 'unix', path: socketPath };

  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new AddressSyntaxError('must be an http:// URL such as http://127.0.0.1:2019, or a unix socket path');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AddressSyntaxError(`unsupported scheme ${url.protocol}; use http:// or a unix socket path`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new AddressSyntaxError('must be an origin without a path, for example http://127.0.0.1:2019');
  }
  if (url.username !== '' || url.password !== '') throw new AddressSyntaxError('must not contain credentials');
  return { kind: 'http', url: url.origin };
}

/** Parses a Docker endpoint in `DOCKER_HOST` syntax: `unix:///path`, `tcp://host:port`, `http(s)://host:port`. */
export function parseDockerHost(text: string): DockerEndpoint {
  if (text.startsWith('unix://')) {
    const socketPath = text.slice('unix://'.length);
    if (!socketPath.startsWith('/')) throw new AddressSyntaxError('must be unix:// followed by an absolute path, for example unix:///var/run/docker.sock');
    return { kind: 'unix', path: socketPath };
  }

  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new AddressSyntaxError('must be unix:///path, tcp://host:port, http://host:port or https://host:port');
  }
  if (url.protocol !== 'tcp:' && url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AddressSyntaxError(`unsupported scheme ${url.protocol}; use unix://, tcp://, http:// or https://`);
  }
  if (url.hostname === '') throw new AddressSyntaxError('missing host');
  const protocol = url.protocol === 'https:' ? 'https' : 'http';
  // Docker's conventional ports: 2375 for plain HTTP, 2376 for TLS.
  const defaultPort = protocol === 'https' ? 2376 : 2375;
  const port = url.port === '' ? defaultPort : Number(url.port);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { kind: 'tcp', protocol, host, port };
}

/**
 * Parses a CIDR range (`10.0.0.0/8`, `fd00::/8`) or a single IP (taken as /32 or /128) and
 * returns it in canonical `address/prefix` form.
 */
export function parseCidr(text: string): string {
  const [address = '', prefixText, extra] = text.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) {
    throw new AddressSyntaxError(`${JSON.stringify(text)} is not a CIDR range or IP address, for example 10.0.0.0/8`);
  }

  const maxPrefix = family === 4 ? 32 : 128;
  if (prefixText === undefined) return `${address}/${maxPrefix}`;
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
    throw new AddressSyntaxError(`prefix length in ${JSON.stringify(text)} must be 0-${maxPrefix}`);
  }
  return `${address}/${Number(prefixText)}`;
}
