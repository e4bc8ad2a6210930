/**
 * A minimal WebSocket client over a raw TCP socket (Node 20 has no WebSocket client built in):
 * enough to open a socket through Caddy, send masked text frames and read the echoed frames.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface TestWebSocket {
  /** Sends one masked text frame and resolves with the next text frame received. */
  echo(text: string, timeoutMs?: number): Promise<string>;
  /** Resolves when the server closes the TCP connection. */
  closed: Promise<void>;
  isClosed(): boolean;
  close(): void;
}

export async function openWebSocket(port: number, path: string, host = '127.0.0.1'): Promise<TestWebSocket> {
  const socket = connect(port, host);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });

  const key = randomBytes(16).toString('base64');
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );

  let buffer = Buffer.alloc(0);
  const head = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const text = buffer.subarray(0, end).toString();
      buffer = buffer.subarray(end + 4);
      resolve(text);
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('socket closed before the handshake finished')));
  });
  if (!head.startsWith('HTTP/1.1 101')) {
    socket.destroy();
    throw new Error(`websocket handshake failed: ${head.split('\r\n')[0]}`);
  }
  return wrap(socket, buffer);
}

function wrap(socket: Socket, initial: Buffer): TestWebSocket {
  let buffer = initial;
  let closed = false;
  const waiters: Array<(text: string) => void> = [];
  const closedPromise = new Promise<void>((resolve) => socket.once('close', () => {
    closed = true;
    resolve();
  }));
  socket.on('error', () => undefined);

  const drain = () => {
    while (buffer.length >= 2) {
      const opcode = buffer[0]! & 0x0f;
      let length = buffer[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffer.length < offset + length) return;
      const payload = buffer.subarray(offset, offset + length);
      buffer = buffer.subarray(offset + length);
      if (opcode === 0x1) waiters.shift()?.(payload.toString());
    }
  };
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    drain();
  });

  return {
    closed: closedPromise,
    isClosed: () => closed,
    close: () => socket.destroy(),
    echo(text, timeoutMs = 5_000) {
      const payload = Buffer.from(text);
      if (payload.length >= 126) throw new Error('test frames must be shorter than 126 bytes');
      const mask = randomBytes(4);
      const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]!));
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no websocket echo within ${timeoutMs} ms`)), timeoutMs);
        waiters.push((received) => {
          clearTimeout(timer);
          resolve(received);
        });
        socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
        drain();
      });
    },
  };
}
