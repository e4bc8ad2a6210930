import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { DecodedPacket } from 'dns-packet';
import { LumaError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Millis } from '../model.js';
import { answerQuery, formatErrorReply, type Rcode, type Reply } from './message.js';
import { parseListenAddress } from './listen-address.js';
import { RecordTable, type ReplicaTarget } from './records.js';
import { TcpConnection } from './tcp-connection.js';

export interface DnsServerOptions {
  /** Names the zone `<instanceId>.luma.internal.`; must be one DNS label. */
  instanceId: string;
  logger: Logger;
  /** TTL of every record. Default 1 s. */
  ttlSeconds?: number;
  /** How long a replica's name keeps resolving after it left its SRV answer. Default 60 s. */
  retiredHostTtlMs?: Millis;
  /** A TCP connection without a complete query for this long is closed. Default 10 s. */
  tcpIdleTimeoutMs?: Millis;
  /** Further TCP connections are rejected while this many are open. Default 128. */
  maxTcpConnections?: number;
}

export interface DnsServerStats {
  /** Queries received, by transport. */
  queries: { udp: number; tcp: number };
  /** Responses sent, by response code. */
  responses: Partial<Record<Rcode, number>>;
  /** UDP responses sent empty with the TC flag because the answer did not fit. */
  truncated: number;
  /** Packets that could not be decoded (answered FORMERR when their header was readable). */
  malformed: number;
  /** Currently open TCP connections. */
  tcpConnections: number;
}

/** Attempts to find a port free for both UDP and TCP when listening on port 0. */
const PORT_ATTEMPTS = 5;

/**
 * An authoritative DNS server for the controller's zone, over UDP and TCP on one address, so
 * Caddy's dynamic upstreams can find each service's replicas without config writes.
 * See names.ts for the records it serves.
 */
export class DnsServer {
  readonly zone: string;
  private readonly table: RecordTable;
  private readonly log: Logger;
  private readonly tcpIdleTimeoutMs: Millis;
  private readonly maxTcpConnections: number;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly connections = new Set<TcpConnection>();
  private readonly counters: DnsServerStats = {
    queries: { udp: 0, tcp: 0 },
    responses: {},
    truncated: 0,
    malformed: 0,
    tcpConnections: 0,
  };

  constructor(options: DnsServerOptions) {
    this.table = new RecordTable({
      instanceId: options.instanceId,
      ttlSeconds: options.ttlSeconds ?? 1,
      retiredHostTtlMs: options.retiredHostTtlMs ?? 60_000,
    });
    this.zone = this.table.zone;
    this.log = options.logger.child({ component: 'dns' });
    this.tcpIdleTimeoutMs = options.tcpIdleTimeoutMs ?? 10_000;
    this.maxTcpConnections = options.maxTcpConnections ?? 128;
  }

  /**
   * Listens for UDP and TCP on `address` (`host:port`, `[v6]:port`; port 0 picks a port free for
   * both). Resolves with the bound host and port. Rejects with `invalid_setting` when the address
   * is invalid or cannot be bound.
   */
  async listen(address: string): Promise<{ host: string; port: number }> {
    if (this.udp !== undefined) throw new Error('dns server is already listening');
    const { host, port } = parseListenAddress(address);

    let lastError: unknown;
    for (let attempt = 0; attempt < (port === 0 ? PORT_ATTEMPTS : 1); attempt += 1) {
      const udp = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4' });
      try {
        const boundPort = await bindUdp(udp, host, port);
        const tcp = await this.bindTcp(host, boundPort);
        this.udp = udp;
        this.tcp = tcp;
        this.attachUdp(udp);
        this.log.info({ host, port: boundPort, zone: this.zone }, 'dns server listening');
        return { host, port: boundPort };
      } catch (error) {
        lastError = error;
        closeQuietly(udp);
        // With port 0 the UDP port may be taken for TCP by another program; try another one.
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
      }
    }
    throw new LumaError('invalid_setting', `listen for dns on ${address} failed: ${String(lastError)}`, {
      cause: lastError,
      details: { address },
    });
  }

  /** Stops listening and closes open TCP connections. */
  async close(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    for (const connection of this.connections) connection.destroy();

    await Promise.all([
      udp === undefined ? undefined : new Promise<void>((resolve) => udp.close(() => resolve())),
      tcp === undefined ? undefined : new Promise<void>((resolve) => tcp.close(() => resolve())),
    ]);
    if (udp !== undefined) this.log.info('dns server stopped');
  }

  /** Replaces the SRV answer of `service`; empty `targets` make it point at the wake-up handler. */
  setService(service: string, targets: ReplicaTarget[]): void {
    this.table.setService(service, targets);
    this.log.debug({ service, targets: targets.map((target) => target.replicaId) }, 'srv answer changed');
  }

  /** Removes `service`'s SRV name; its replica names keep resolving for `retiredHostTtlMs`. */
  removeService(service: string): void {
    if (this.table.removeService(service)) this.log.debug({ service }, 'srv answer removed');
  }

  /** Sets where services without a ready replica point: the wake-up handler's IP and port. */
  setWakeAddress(host: string, port: number): void {
    this.table.setWakeAddress(host, port);
    this.log.debug({ host, port }, 'wake address set');
  }

  /** Returns each service's current SRV targets, for debugging. */
  snapshot(): ReturnType<RecordTable['snapshot']> {
    return this.table.snapshot();
  }

  stats(): DnsServerStats {
    return {
      ...this.counters,
      queries: { ...this.counters.queries },
      responses: { ...this.counters.responses },
      tcpConnections: this.connections.size,
    };
  }

  private attachUdp(udp: dgram.Socket): void {
    udp.on('message', (packet, remote) => {
      const reply = this.handle(packet, 'udp');
      if (reply === undefined) return;
      udp.send(reply.message, remote.port, remote.address, (error) => {
        if (error) this.log.debug({ err: error, remote: remote.address }, 'send dns response failed');
      });
    });
    // A UDP socket reports errors such as ICMP unreachable for earlier sends here.
    udp.on('error', (error) => this.log.warn({ err: error }, 'dns udp socket error'));
  }

  private bindTcp(host: string, port: number): Promise<net.Server> {
    const server = net.createServer((socket) => this.accept(socket));
    server.maxConnections = this.maxTcpConnections;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, () => {
        server.off('error', reject);
        server.on('error', (error) => this.log.warn({ err: error }, 'dns tcp server error'));
        resolve(server);
      });
    });
  }

  private accept(socket: net.Socket): void {
    const connection = new TcpConnection(socket, {
      idleTimeoutMs: this.tcpIdleTimeoutMs,
      handle: (message) => this.handle(message, 'tcp'),
      onClose: () => this.connections.delete(connection),
      logger: this.log,
    });
    this.connections.add(connection);
  }

  /** Decodes one query and returns its reply; undefined means send nothing. */
  private handle(packet: Buffer, transport: 'udp' | 'tcp'): Reply | undefined {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(packet);
    } catch (error) {
      this.counters.malformed += 1;
      this.log.debug({ err: error, transport, bytes: packet.length }, 'decode dns query failed');
      return this.count(formatErrorReply(packet));
    }

    this.counters.queries[transport] += 1;
    let reply: Reply | undefined;
    try {
      reply = answerQuery(query, this.table, transport);
    } catch (error) {
      // Decoded names that cannot be encoded again (for example dots inside a label) end here.
      this.counters.malformed += 1;
      this.log.debug({ err: error, transport }, 'answer dns query failed');
      return this.count(formatErrorReply(packet));
    }

    const question = query.questions?.[0];
    this.log.debug({ transport, name: question?.name, type: question?.type, rcode: reply?.rcode }, 'dns query answered');
    return this.count(reply);
  }

  private count(reply: Reply | undefined): Reply | undefined {
    if (reply === undefined) return undefined;
    this.counters.responses[reply.rcode] = (this.counters.responses[reply.rcode] ?? 0) + 1;
    if (reply.truncated) this.counters.truncated += 1;
    return reply;
  }
}

function closeQuietly(udp: dgram.Socket): void {
  try {
    udp.close();
  } catch {
    // Already closed: a failed bind closes the socket.
  }
}

function bindUdp(udp: dgram.Socket, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    udp.once('error', reject);
    udp.bind({ address: host, port, exclusive: true }, () => {
      udp.off('error', reject);
      resolve(udp.address().port);
    });
  });
}
