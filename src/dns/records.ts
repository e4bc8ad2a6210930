import { isIP } from 'node:net';
import type { Answer, RecordType, SoaAnswer } from 'dns-packet';
import { LumaError } from '../errors.js';
import type { Millis } from '../model.js';
import { dnsZone, replicaHostName, serviceRecordName, toLabel, wakeHostName } from './names.js';

/** One ready replica as the SRV answer lists it. */
export interface ReplicaTarget {
  /** Docker container id; its first 12 characters name the replica's host. */
  replicaId: string;
  /** Container IP, IPv4 (served as an A record) or IPv6 (served as AAAA). */
  ip: string;
  /** Port the app listens on inside the container. */
  port: number;
}

/** The records of one name, or why there are none. */
export type LookupResult =
  | { rcode: 'NOERROR'; answers: Answer[] }
  | { rcode: 'NXDOMAIN' | 'REFUSED' | 'SERVFAIL' };

export interface RecordTableOptions {
  instanceId: string;
  /** TTL of every record, in seconds. Caddy ignores it (it caches for its own `refresh`). */
  ttlSeconds: number;
  /**
   * How long a host name keeps resolving after its replica left the SRV answer. Caddy may still
   * pick the replica from its cached SRV answer for up to `refresh` and then dials it by name.
   */
  retiredHostTtlMs: Millis;
  now?: () => number;
}

interface HostRecord {
  ip: string;
  family: 4 | 6;
  /** Time after which the name stops resolving; undefined while the SRV answer lists it. */
  retiredUntil?: number;
}

interface ServiceRecords {
  srvName: string;
  wakeName: string;
  /** SRV data in answer order; empty when the service has no ready replica. */
  targets: Array<{ hostName: string; port: number }>;
}

/** Default priority and weight of every SRV record: all replicas are equal. */
const SRV_PRIORITY = 0;
const SRV_WEIGHT = 1;

/**
 * The zone's records: each service's SRV answer and the A/AAAA records of the names it lists.
 * Names are stored lower case without the final dot, as dns-packet decodes them.
 */
export class RecordTable {
  readonly zone: string;
  private readonly apex: string;
  private readonly ttl: number;
  private readonly retiredHostTtlMs: Millis;
  private readonly now: () => number;
  private readonly services = new Map<string, ServiceRecords>();
  /** SRV name to service. */
  private readonly srvNames = new Map<string, string>();
  private readonly hosts = new Map<string, HostRecord>();
  private wake: { ip: string; family: 4 | 6; port: number } | undefined;
  private serial = 1;

  constructor(private readonly options: RecordTableOptions) {
    this.zone = dnsZone(options.instanceId);
    this.apex = stripDot(this.zone);
    this.ttl = options.ttlSeconds;
    this.retiredHostTtlMs = options.retiredHostTtlMs;
    this.now = options.now ?? Date.now;
  }

  /** Replaces the SRV answer of `service`; an empty list makes it point at the wake-up handler. */
  setService(service: string, targets: ReplicaTarget[]): void {
    const name = toLabel(service, 'service');
    const instanceId = this.options.instanceId;
    const next = targets.map((target) => {
      const family = ipFamily(target.ip);
      if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65_535) {
        throw new LumaError('invalid_input', `invalid port ${target.port} for replica ${target.replicaId}`, {
          details: { service, replicaId: target.replicaId, port: target.port },
        });
      }
      const hostName = stripDot(replicaHostName(instanceId, name, target.replicaId));
      return { hostName, port: target.port, host: { ip: target.ip, family } };
    });

    const previous = this.services.get(name);
    this.retireHosts(previous, new Set(next.map((target) => target.hostName)));
    for (const target of next) this.hosts.set(target.hostName, target.host);

    const records: ServiceRecords = {
      srvName: stripDot(serviceRecordName(instanceId, name)),
      wakeName: stripDot(wakeHostName(instanceId, name)),
      targets: next.map(({ hostName, port }) => ({ hostName, port })),
    };
    this.services.set(name, records);
    this.srvNames.set(records.srvName, name);
    this.bumpSerial();
  }

  /** Forgets `service`: its SRV name answers NXDOMAIN; replica names resolve until they expire. */
  removeService(service: string): boolean {
    const name = toLabel(service, 'service');
    const previous = this.services.get(name);
    if (previous === undefined) return false;

    this.retireHosts(previous, new Set());
    this.services.delete(name);
    this.srvNames.delete(previous.srvName);
    this.bumpSerial();
    return true;
  }

  /** Sets the address SRV answers give for services without a ready replica. */
  setWakeAddress(ip: string, port: number): void {
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new LumaError('invalid_input', `invalid wake-up port ${port}`, { details: { port } });
    }
    this.wake = { ip, family: ipFamily(ip), port };
    this.bumpSerial();
  }

  /** Returns the services and their current SRV targets, for debugging. */
  snapshot(): Array<{ service: string; targets: Array<{ host: string; port: number }> }> {
    return [...this.services.entries()].map(([service, records]) => ({
      service,
      targets: this.srvTargets(records).map((target) => ({ host: `${target.hostName}.`, port: target.port })),
    }));
  }

  /** Returns true when `name` is the zone apex or below it. */
  inZone(name: string): boolean {
    const key = normalize(name);
    return key === this.apex || key.endsWith(`.${this.apex}`);
  }

  /** Looks up the records of `name` and `type` (`ANY` returns every type the name has). */
  lookup(name: string, type: RecordType | 'ANY'): LookupResult {
    const key = normalize(name);
    if (!this.inZone(key)) return { rcode: 'REFUSED' };

    if (key === this.apex) {
      return { rcode: 'NOERROR', answers: type === 'SOA' || type === 'ANY' ? [this.soa(name)] : [] };
    }

    const service = this.srvNames.get(key);
    if (service !== undefined) return this.lookupSrv(name, type, this.services.get(service)!);

    const host = this.host(key);
    if (host === 'unset') return { rcode: 'SERVFAIL' };
    if (host !== undefined) return { rcode: 'NOERROR', answers: this.addressAnswers(name, type, host) };

    if (this.isEmptyNonTerminal(key)) return { rcode: 'NOERROR', answers: [] };
    return { rcode: 'NXDOMAIN' };
  }

  /** Returns the zone's SOA record, which negative answers carry in their authority section. */
  soa(name: string = this.zone): SoaAnswer {
    return {
      type: 'SOA',
      name,
      ttl: this.ttl,
      class: 'IN',
      data: {
        mname: `ns.${this.apex}`,
        rname: `hostmaster.${this.apex}`,
        serial: this.serial,
        refresh: 60,
        retry: 10,
        expire: 600,
        // Negative-caching TTL (RFC 2308): keep it as short as the records.
        minimum: this.ttl,
      },
    };
  }

  private lookupSrv(name: string, type: RecordType | 'ANY', records: ServiceRecords): LookupResult {
    if (type !== 'SRV' && type !== 'ANY') return { rcode: 'NOERROR', answers: [] };

    const targets = this.srvTargets(records);
    if (targets.length === 0) return { rcode: 'SERVFAIL' };

    const answers: Answer[] = targets.map((target) => ({
      type: 'SRV',
      name,
      ttl: this.ttl,
      class: 'IN',
      data: { priority: SRV_PRIORITY, weight: SRV_WEIGHT, port: target.port, target: target.hostName },
    }));
    return { rcode: 'NOERROR', answers };
  }

  /** Returns the SRV targets of a service: its replicas, or its wake name; empty when wake is unset. */
  private srvTargets(records: ServiceRecords): Array<{ hostName: string; port: number }> {
    if (records.targets.length > 0) return records.targets;
    if (this.wake === undefined) return [];
    return [{ hostName: records.wakeName, port: this.wake.port }];
  }

  /** Returns the address record of a host name, `'unset'` for a wake name before `setWakeAddress`. */
  private host(key: string): HostRecord | 'unset' | undefined {
    const host = this.hosts.get(key);
    if (host !== undefined) {
      if (host.retiredUntil === undefined || host.retiredUntil > this.now()) return host;
      this.hosts.delete(key);
      return undefined;
    }

    const labels = key.slice(0, -this.apex.length - 1).split('.');
    if (labels.length === 2 && labels[0] === 'wake' && this.services.has(labels[1]!)) {
      return this.wake ?? 'unset';
    }
    return undefined;
  }

  private addressAnswers(name: string, type: RecordType | 'ANY', host: HostRecord): Answer[] {
    const recordType = host.family === 4 ? 'A' : 'AAAA';
    if (type !== recordType && type !== 'ANY') return [];
    return [{ type: recordType, name, ttl: this.ttl, class: 'IN', data: host.ip }];
  }

  /** `<service>` and `_tcp.<service>` exist as names because records sit below them (RFC 8020). */
  private isEmptyNonTerminal(key: string): boolean {
    const labels = key.slice(0, -this.apex.length - 1).split('.');
    const service = labels.at(-1)!;
    if (!this.services.has(service)) return false;
    return labels.length === 1 || (labels.length === 2 && labels[0] === '_tcp');
  }

  private retireHosts(previous: ServiceRecords | undefined, keep: Set<string>): void {
    const now = this.now();
    for (const [key, host] of this.hosts) {
      if (host.retiredUntil !== undefined && host.retiredUntil <= now) this.hosts.delete(key);
    }
    if (previous === undefined) return;

    for (const target of previous.targets) {
      const host = this.hosts.get(target.hostName);
      if (host !== undefined && !keep.has(target.hostName) && host.retiredUntil === undefined) {
        host.retiredUntil = now + this.retiredHostTtlMs;
      }
    }
  }

  private bumpSerial(): void {
    this.serial = this.serial >= 0xffff_ffff ? 1 : this.serial + 1;
  }
}

function ipFamily(ip: string): 4 | 6 {
  const family = isIP(ip);
  if (family === 0) {
    throw new LumaError('invalid_input', `invalid IP address ${JSON.stringify(ip)}`, { details: { ip } });
  }
  return family as 4 | 6;
}

function stripDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

function normalize(name: string): string {
  return stripDot(name).toLowerCase();
}
