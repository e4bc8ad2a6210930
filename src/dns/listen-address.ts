import { isIP } from 'node:net';
import { LumaError } from '../errors.js';

/**
 * Parses a listen address: `127.0.0.1:5353`, `[::1]:0`. The host must be an IP literal, because
 * Caddy's resolver setting takes the same address and a name would need a resolver of its own.
 * Throws `invalid_setting` naming the value.
 */
export function parseListenAddress(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);

  if (host === undefined || isIP(host) === 0 || !Number.isInteger(port) || port > 65_535) {
    throw new LumaError(
      'invalid_setting',
      `invalid dns listen address ${JSON.stringify(address)}: expected ip:port, for example 127.0.0.1:0 or [::1]:5353`,
      { details: { address } },
    );
  }
  return { host, port };
}
