import type net from 'node:net';
import type { Logger } from '../log.js';
import type { Millis } from '../model.js';
import type { Reply } from './message.js';

/** Bytes of unread responses after which a client that does not read is disconnected. */
const MAX_PENDING_WRITE_BYTES = 1024 * 1024;

/**
 * One DNS-over-TCP connection (RFC 7766): messages framed by a 2-byte big-endian length, several
 * queries per connection, answered in order. Closed after `idleTimeoutMs` without traffic, on a
 * zero-length frame, and when the handler returns nothing for a packet it could not read.
 */
export class TcpConnection {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(
    private readonly socket: net.Socket,
    private readonly options: {
      idleTimeoutMs: Millis;
      handle: (message: Buffer) => Reply | undefined;
      onClose: () => void;
      logger: Logger;
    },
  ) {
    socket.setTimeout(options.idleTimeoutMs, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => options.logger.debug({ err: error }, 'dns tcp connection failed'));
    socket.on('close', () => options.onClose());
  }

  destroy(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);

    while (this.buffered.length >= 2) {
      const length = this.buffered.readUInt16BE(0);
      if (length === 0) {
        this.socket.destroy();
        return;
      }
      if (this.buffered.length < 2 + length) return;

      const message = this.buffered.subarray(2, 2 + length);
      this.buffered = this.buffered.subarray(2 + length);
      const reply = this.options.handle(message);
      if (reply === undefined) {
        this.socket.destroy();
        return;
      }
      this.send(reply.message);
    }
  }

  private send(message: Buffer): void {
    if (this.socket.writableLength > MAX_PENDING_WRITE_BYTES) {
      this.options.logger.debug({ pendingBytes: this.socket.writableLength }, 'close dns tcp connection that does not read');
      this.socket.destroy();
      return;
    }
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16BE(message.length);
    this.socket.write(Buffer.concat([prefix, message]));
  }
}
