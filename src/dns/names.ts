import { LumaError } from '../errors.js';

/**
 * Names served by the controller's DNS server. Every name is absolute (ends with a dot), so
 * resolvers never append search domains to it.
 *
 * | name                                 | type | data                                   |
 * |--------------------------------------|------|----------------------------------------|
 * | `<zone>`                             | SOA  | the zone itself                        |
 * | `_http._tcp.<service>.<zone>`        | SRV  | one record per ready replica, or wake  |
 * | `<replica-label>.<service>.<zone>`   | A    | the container IP (AAAA for IPv6)       |
 * | `wake.<service>.<zone>`              | A    | the wake-up handler's IP               |
 *
 * with `<zone>` = `<instanceId>.luma.internal.` and `<replica-label>` = the first 12 characters
 * of the container id (Docker's short id). The instance id keeps the names of two Luma instances
 * apart when they share one Caddy, because Caddy caches SRV answers and upstream hosts by name.
 */

/** Parent of every zone; `.internal` is reserved for private use (ICANN, 2024). */
export const ZONE_SUFFIX = 'luma.internal.';

/** Label of the per-service name that points at the wake-up handler. */
export const WAKE_LABEL = 'wake';

/** Length of the replica label: Docker's short container id. */
export const REPLICA_LABEL_LENGTH = 12;

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Maximum length of a domain name in text form without the final dot (RFC 1035). */
const MAX_NAME_LENGTH = 253;

/**
 * Lower-cases `value` and checks that it is one DNS label (RFC 1123 host name rules: letters,
 * digits and inner hyphens, 1-63 characters). Throws `invalid_input` naming `field` otherwise.
 */
export function toLabel(value: string, field: string): string {
  const label = value.toLowerCase();
  if (!LABEL.test(label)) {
    throw new LumaError(
      'invalid_input',
      `invalid ${field} ${JSON.stringify(value)}: a DNS name needs 1-63 letters, digits or inner hyphens`,
      { details: { [field]: value } },
    );
  }
  return label;
}

/** Returns the zone the DNS server is authoritative for, for example `a1b2.luma.internal.`. */
export function dnsZone(instanceId: string): string {
  return `${toLabel(instanceId, 'instance id')}.${ZONE_SUFFIX}`;
}

/** Returns the SRV name Caddy queries for `service`: `_http._tcp.<service>.<zone>`. */
export function serviceRecordName(instanceId: string, service: string): string {
  return withinLimit(`_http._tcp.${toLabel(service, 'service')}.${dnsZone(instanceId)}`);
}

/** Returns the host name of one replica: `<short container id>.<service>.<zone>`. */
export function replicaHostName(instanceId: string, service: string, replicaId: string): string {
  return withinLimit(`${replicaLabel(replicaId)}.${toLabel(service, 'service')}.${dnsZone(instanceId)}`);
}

/** Returns the host name of the wake-up handler, the SRV target of `service` while it has no ready replica. */
export function wakeHostName(instanceId: string, service: string): string {
  return withinLimit(`${WAKE_LABEL}.${toLabel(service, 'service')}.${dnsZone(instanceId)}`);
}

/**
 * Returns the label of a replica id: its first 12 characters, lower case. Rejects ids that do not
 * make a DNS label, and `wake`, which names the wake-up target. Docker ids are 64 hex digits, so
 * neither case happens with real containers.
 */
export function replicaLabel(replicaId: string): string {
  const label = toLabel(replicaId.slice(0, REPLICA_LABEL_LENGTH), 'replica id');
  if (label === WAKE_LABEL) {
    throw new LumaError('invalid_input', `invalid replica id ${JSON.stringify(replicaId)}: "wake" is reserved`, {
      details: { replicaId },
    });
  }
  return label;
}

/** Service and replica (or wake-up handler) of an upstream address from `GET /reverse_proxy/upstreams`. */
export type UpstreamTarget =
  | { kind: 'replica'; service: string; replicaLabel: string; port: number }
  | { kind: 'wake'; service: string; port: number };

/**
 * Parses a dial address built from an SRV answer, such as `3f2a9c1b7d4e.api.a1b2.luma.internal.:8080`,
 * back into service and replica. Returns undefined for addresses outside `instanceId`'s zone.
 */
export function parseUpstreamAddress(instanceId: string, address: string): UpstreamTarget | undefined {
  const colon = address.lastIndexOf(':');
  if (colon < 0) return undefined;

  const port = Number(address.slice(colon + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65_535) return undefined;

  let host = address.slice(0, colon).toLowerCase();
  if (!host.endsWith('.')) host += '.';
  const zone = dnsZone(instanceId);
  if (!host.endsWith(`.${zone}`)) return undefined;

  const labels = host.slice(0, -zone.length - 1).split('.');
  if (labels.length !== 2) return undefined;

  const [first, service] = labels as [string, string];
  if (first === WAKE_LABEL) return { kind: 'wake', service, port };
  return { kind: 'replica', service, replicaLabel: first, port };
}

function withinLimit(name: string): string {
  if (name.length - 1 > MAX_NAME_LENGTH) {
    throw new LumaError('invalid_input', `DNS name ${name} is longer than ${MAX_NAME_LENGTH} characters`, {
      details: { name },
    });
  }
  return name;
}
