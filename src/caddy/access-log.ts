import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { LumaError } from '../errors.js';
import type { Logger } from '../log.js';
import type { AccessLogEntry } from './types.js';
import { hostName } from '../host-name.js';

export interface AccessLogReceiverOptions {
  logger: Logger;
  /** Loopback IP to bind; default 127.0.0.1. */
  host?: string;
  /** UDP port to bind; 0 (the default) lets the system pick one. */
  port?: number;
  /** Called once per access log entry; exceptions are logged and dropped. */
  onEntry: (entry: AccessLogEntry) => void;
}

export interface AccessLogStats {
  datagrams: number;
  entries: number;
  /** Lines that were not JSON or lacked a field of AccessLogEntry. */
  malformed: number;
}

/**
 * Socket receive buffer, so a burst of entries is not dropped while the event loop is busy. Linux
 * caps it at `net.core.rmem_max` (208 KiB by default) without an error.
 */
const RECEIVE_BUFFER_BYTES = 1 << 20;

/**
 * Receives Caddy's access log over UDP on loopback (see buildAccessLog for why UDP) and turns each
 * JSON line into an AccessLogEntry. Caddy sends one entry per datagram; a datagram holding several
 * newline-separated lines is split. Entries sent while the receiver is stopped are lost, and Caddy
 * resumes sending to the same port once it is bound again (checked on Caddy 2.6.2).
 */
export class AccessLogReceiver {
  private readonly log: Logger;
  private readonly host: string;
  private readonly port: number;
  private readonly onEntry: (entry: AccessLogEntry) => void;
  private socket: dgram.Socket | undefined;
  private boundPort: number | undefined;
  private readonly counters: AccessLogStats = { datagrams: 0, entries: 0, malformed: 0 };

  constructor(options: AccessLogReceiverOptions) {
    this.log = options.logger.child({ component: 'access-log' });
    this.host = options.host ?? '127.0.0.1';
    this.port = options.port ?? 0;
    this.onEntry = options.onEntry;
    if (isIP(this.host) === 0) {
      throw new LumaError('invalid_setting', `invalid access log host ${JSON.stringify(this.host)}: expected an IP address such as 127.0.0.1`, {
        details: { host: this.host },
      });
    }
  }

  /** `host:port` the receiver is bound to, for ServerLayout.accessLogAddress. */
  get address(): string {
    if (this.boundPort === undefined) throw new Error('access log receiver is not started');
    return isIP(this.host) === 6 ? `[${this.host}]:${this.boundPort}` : `${this.host}:${this.boundPort}`;
  }

  get stats(): AccessLogStats {
    return { ...this.counters };
  }

  async start(): Promise<void> {
    if (this.socket !== undefined) return;
    const socket = dgram.createSocket({ type: isIP(this.host) === 6 ? 'udp6' : 'udp4', recvBufferSize: RECEIVE_BUFFER_BYTES });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      // A restart binds the port of the first start, because Caddy's config names that port.
      socket.bind(this.boundPort ?? this.port, this.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });

    socket.on('message', (message) => this.receive(message));
    socket.on('error', (error) => this.log.error({ err: error }, 'access log socket failed'));
    this.socket = socket;
    this.boundPort = socket.address().port;
    this.log.info({ address: this.address }, 'started access log receiver');
  }

  async stop(): Promise<void> {
    const socket = this.socket;
    if (socket === undefined) return;
    this.socket = undefined;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    this.log.info({ ...this.counters }, 'stopped access log receiver');
  }

  private receive(message: Buffer): void {
    this.counters.datagrams++;
    for (const line of message.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      const entry = parseAccessLogLine(line);
      if (entry === undefined) {
        this.counters.malformed++;
        // The first one at warn shows a misconfigured encoder; the rest would only repeat it.
        const level = this.counters.malformed === 1 ? 'warn' : 'debug';
        this.log[level]({ line: line.slice(0, 300), malformed: this.counters.malformed }, 'drop malformed access log line');
        continue;
      }

      this.counters.entries++;
      try {
        this.onEntry(entry);
      } catch (error) {
        this.log.error({ err: error, uri: entry.uri }, 'access log entry handler failed');
      }
    }
  }
}

/**
 * Parses one line of Caddy's JSON access log. Reads `ts` (end of the request, seconds since the
 * epoch as a float, or an RFC 3339 string), `duration` (seconds), `status`, `request.host` and
 * `request.uri` (the URI as the client sent it, before any rewrite). Returns undefined when a
 * field is missing or has the wrong type.
 */
export function parseAccessLogLine(line: string): AccessLogEntry | undefined {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof record !== 'object' || record === null) return undefined;

  const { ts, duration, status, request } = record as { ts?: unknown; duration?: unknown; status?: unknown; request?: unknown };
  const { host, uri } = (request ?? {}) as { host?: unknown; uri?: unknown };
  if (typeof host !== 'string' || typeof uri !== 'string' || typeof status !== 'number') return undefined;

  const at = timestamp(ts);
  if (at === undefined) return undefined;
  return {
    host: hostName(host),
    uri,
    status,
    at,
    durationMs: typeof duration === 'number' ? duration * 1000 : 0,
  };
}

function timestamp(value: unknown): Date | undefined {
  let at: Date | undefined;
  if (typeof value === 'number') at = new Date(value * 1000);
  else if (typeof value === 'string') at = new Date(value);
  return at !== undefined && !Number.isNaN(at.getTime()) ? at : undefined;
}
