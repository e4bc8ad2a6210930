import { LumaError } from '../errors.js';

/**
 * Names Luma gives to the parts of Caddy's configuration it owns. Every name contains the
 * instance id, so two Luma instances can share one Caddy.
 *
 * | name                              | what                                               |
 * |-----------------------------------|----------------------------------------------------|
 * | `luma-<instance>`                 | key of the HTTP server in `apps.http.servers`      |
 * | `luma_<instance>`                 | access logger (`logging.logs`, `http.log.access.*`) |
 * | `luma-<instance>.api`             | `@id` of the route to the controller's API         |
 * | `luma-<instance>.paths`           | `@id` of the container of all path routes          |
 * | `luma-<instance>.parking`         | `@id` of the never-matching route of draining upstreams |
 * | `luma-<instance>.host.<service>`  | `@id` of one service's host route                  |
 * | `luma-<instance>.path.<service>`  | `@id` of one service's path route                  |
 *
 * Instance ids and service names may not contain dots, so the ids cannot collide.
 */

/** Letters, digits, `_` and `-`; safe in `@id`s, admin API paths, logger names and regexps. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

export type ContainerKind = 'api' | 'paths' | 'parking';

export function checkName(value: string, kind: 'instance id' | 'service'): string {
  if (!NAME_PATTERN.test(value)) {
    throw new LumaError(
      'invalid_input',
      `invalid ${kind} ${JSON.stringify(value)} for a caddy route: use 1-63 letters, digits, "_" or "-", starting with a letter or digit`,
      { details: { [kind === 'service' ? 'service' : 'instanceId']: value } },
    );
  }
  return value;
}

export function serverName(instanceId: string): string {
  return `luma-${checkName(instanceId, 'instance id')}`;
}

export function accessLoggerName(instanceId: string): string {
  return `luma_${checkName(instanceId, 'instance id')}`;
}

export function containerId(instanceId: string, kind: ContainerKind): string {
  return `${serverName(instanceId)}.${kind}`;
}

export function hostRouteId(instanceId: string, service: string): string {
  return `${serverName(instanceId)}.host.${checkName(service, 'service')}`;
}

export function pathRouteId(instanceId: string, service: string): string {
  return `${serverName(instanceId)}.path.${checkName(service, 'service')}`;
}

/**
 * Returns the dial address Caddy expects for `address`: `host:port` stays as it is, and a unix
 * socket path (`/run/luma/api.sock` or `unix:/run/luma/api.sock`) becomes `unix//run/luma/api.sock`.
 */
export function dialAddress(address: string): string {
  if (address.startsWith('unix//')) return address;
  if (address.startsWith('unix:')) return `unix/${address.slice('unix:'.length).replace(/^\/*/, '/')}`;
  if (address.startsWith('/')) return `unix/${address}`;
  if (!/^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):\d{1,5}$/.test(address)) {
    throw new LumaError('invalid_input', `invalid upstream address ${JSON.stringify(address)}: expected host:port or a unix socket path`, {
      details: { address },
    });
  }
  return address;
}
