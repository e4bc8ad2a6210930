import type { IncomingMessage } from 'node:http';
import type { ReplicaProvider } from './types.js';
import { hostName } from '../host-name.js';

/** The service a request is for, or why none was found. */
export type ServiceTarget =
  | { found: true; service: string }
  | { found: false; message: string };


/**
 * Finds the service a request proxied by Caddy is for. Path routes strip the `/<name>` prefix and
 * set `X-Forwarded-Prefix: /<name>`; host routes leave `Host` as the client sent it.
 */
export function resolveService(req: IncomingMessage, provider: ReplicaProvider): ServiceTarget {
  const prefix = req.headers['x-forwarded-prefix'];
  if (typeof prefix === 'string' && prefix.trim() !== '') {
    const name = prefix.trim().replace(/^\/+|\/+$/g, '');
    if (provider.service(name) === undefined) {
      return { found: false, message: `service "${name}" not found` };
    }
    return { found: true, service: name };
  }

  const host = req.headers.host;
  if (host === undefined || host.trim() === '') {
    return { found: false, message: 'no service for a request without Host or X-Forwarded-Prefix' };
  }

  const name = hostName(host);
  const spec = provider.serviceForHost(name);
  if (spec === undefined) return { found: false, message: `no service for host "${name}"` };
  return { found: true, service: spec.name };
}
