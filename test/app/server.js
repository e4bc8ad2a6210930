// Test app for Luma's integration tests and benchmarks. Plain Node.js 20, no dependencies.
//
// Boot behaviour, from the environment:
//   PORT           port to listen on (default 8080)
//   BOOT_DELAY_MS  wait this long before listening
//   FAIL_UNTIL_MS  respond with 503 to every request for this long after listening
//   CRASH_ON_BOOT  print a few lines to stdout and stderr, then exit with this code (1 if not a number)
//   NEVER_ANSWER   accept TCP connections on PORT but never send a byte
//   NO_LISTEN      stay alive without opening a port
//   LOG_REQUESTS   print one line per request to stdout: `test-app request <method> <url>`
//
// Routes match the end of the path, so they work with or without a `/<service>` prefix:
//   .../sse?events=N&intervalMs=M            text/event-stream, N events, one every M ms
//   .../stream?bytes=N&chunkBytes=K&delayMs=D  N bytes in chunks of K, D ms apart; byte i is i % 256;
//                                            with Content-Length, or chunked when chunked=1
//   .../hold?ms=N                            waits N ms, then echoes
//   .../status/<code>                        echoes with that status (200-599)
//   .../redirect?to=URL                      302 to URL (default /)
//   .../cookie                               sets two cookies
//   .../healthz                              200 once the FAIL_UNTIL_MS window is over
//   .../ws                                   WebSocket echo (RFC 6455)
//   .../crash                                responds, then exits with code 7
//   anything else                            echoes the request as JSON: method, path, query, rawUrl,
//                                            headers, bodyLength, bodySha256, containerId (host name),
//                                            pid, startedAt
//
// SIGTERM and SIGINT close the server and exit 0 at once.
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

const port = Number(process.env.PORT ?? 8080);
const startedAt = new Date().toISOString();
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_WEBSOCKET_MESSAGE_BYTES = 16 * 1024 * 1024;

let server;
const openSockets = new Set();

function exitOnSignal(signal) {
  console.log(`test-app stopping on ${signal} pid=${process.pid}`);
  for (const socket of openSockets) socket.destroy();
  server?.close();
  process.exit(0);
}
process.on('SIGTERM', () => exitOnSignal('SIGTERM'));
process.on('SIGINT', () => exitOnSignal('SIGINT'));

function numberParam(query, name, fallback) {
  const value = Number(query.get(name));
  return query.has(name) && Number.isFinite(value) && value >= 0 ? value : fallback;
}

function queryObject(query) {
  const result = {};
  for (const [key, value] of query) {
    if (key in result) result[key] = [].concat(result[key], value);
    else result[key] = value;
  }
  return result;
}

// Reads the whole body through a hash, so large uploads are never buffered.
async function describeRequest(req, url) {
  const hash = createHash('sha256');
  let bodyLength = 0;
  for await (const chunk of req) {
    hash.update(chunk);
    bodyLength += chunk.length;
  }
  return {
    method: req.method,
    path: url.pathname,
    query: queryObject(url.searchParams),
    rawUrl: req.url,
    headers: req.headers,
    bodyLength,
    bodySha256: hash.digest('hex'),
    containerId: hostname(),
    pid: process.pid,
    startedAt,
  };
}

async function sendEcho(req, res, url, status = 200) {
  const body = JSON.stringify(await describeRequest(req, url));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function sendEvents(req, res, query) {
  const events = numberParam(query, 'events', 3);
  const intervalMs = numberParam(query, 'intervalMs', 100);
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  for (let i = 1; i <= events && !res.destroyed; i++) {
    if (i > 1) await sleep(intervalMs);
    res.write(`id: ${i}\ndata: ${JSON.stringify({ n: i, at: Date.now(), containerId: hostname() })}\n\n`);
  }
  res.end();
}

async function sendStream(req, res, query) {
  const total = numberParam(query, 'bytes', 1024 * 1024);
  const chunkBytes = Math.max(1, numberParam(query, 'chunkBytes', 64 * 1024));
  const delayMs = numberParam(query, 'delayMs', 0);
  const headers = { 'content-type': 'application/octet-stream' };
  if (query.get('chunked') !== '1') headers['content-length'] = total;
  res.writeHead(200, headers);
  let offset = 0;
  while (offset < total && !res.destroyed) {
    const size = Math.min(chunkBytes, total - offset);
    const chunk = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) chunk[i] = (offset + i) % 256;
    offset += size;
    if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve).once('close', resolve));
    if (delayMs > 0 && offset < total) await sleep(delayMs);
  }
  res.end();
}

async function handleRequest(req, res, failUntil) {
  const url = new URL(req.url, 'http://localhost');
  const path = url.pathname;
  const query = url.searchParams;

  if (Date.now() < failUntil) {
    await describeRequest(req, url);
    res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' });
    res.end('test-app is not ready yet\n');
    return;
  }

  const status = /\/status\/(\d{3})$/.exec(path);
  if (status) {
    const code = Number(status[1]);
    if (code < 200 || code > 599) return sendEcho(req, res, url, 400);
    if (code === 204 || code === 304) {
      await describeRequest(req, url);
      res.writeHead(code);
      res.end();
      return;
    }
    return sendEcho(req, res, url, code);
  }

  const route = path.slice(path.lastIndexOf('/') + 1);
  switch (route) {
    case 'sse':
      return sendEvents(req, res, query);
    case 'stream':
      return sendStream(req, res, query);
    case 'hold':
      await sleep(numberParam(query, 'ms', 1000));
      return sendEcho(req, res, url);
    case 'redirect':
      await describeRequest(req, url);
      res.writeHead(302, { location: query.get('to') ?? '/', 'content-length': 0 });
      res.end();
      return;
    case 'cookie':
      await describeRequest(req, url);
      res.setHeader('set-cookie', ['luma_a=1; Path=/', 'luma_b=2; Path=/; HttpOnly']);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('two cookies set\n');
      return;
    case 'healthz':
      await describeRequest(req, url);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    case 'ws':
      await describeRequest(req, url);
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket', connection: 'Upgrade' });
      res.end('websocket upgrade required\n');
      return;
    case 'crash':
      await sendEcho(req, res, url);
      res.on('finish', () => {
        console.log(`test-app crashing on request pid=${process.pid}`);
        process.exit(7);
      });
      return;
    default:
      return sendEcho(req, res, url);
  }
}

// Sends one unmasked server frame with FIN set.
function sendFrame(socket, opcode, payload) {
  let header;
  if (payload.length < 126) {
    header = Buffer.from([0x80 | opcode, payload.length]);
  } else if (payload.length < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  socket.write(Buffer.concat([header, payload]));
}

function closeWebSocket(socket, code, reason = '') {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  sendFrame(socket, 0x8, payload);
  socket.end();
}

// Parses masked client frames and echoes text and binary messages. Fragmented messages are
// reassembled and pings get pongs. A close frame gets a close frame with the same status code.
function serveWebSocket(socket, head) {
  let buffered = head.length > 0 ? Buffer.from(head) : Buffer.alloc(0);
  let messageOpcode = 0;
  let fragments = [];
  let fragmentBytes = 0;
  let closed = false;

  function onFrame(fin, opcode, payload) {
    if (opcode >= 0x8) {
      if (!fin || payload.length > 125) return closeWebSocket(socket, 1002, 'invalid control frame');
      if (opcode === 0x8) {
        closed = true;
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1000;
        return closeWebSocket(socket, code);
      }
      if (opcode === 0x9) return sendFrame(socket, 0xa, payload);
      if (opcode === 0xa) return;
      return closeWebSocket(socket, 1002, 'unknown opcode');
    }

    if (opcode === 0x0 && messageOpcode === 0) return closeWebSocket(socket, 1002, 'unexpected continuation');
    if (opcode !== 0x0 && messageOpcode !== 0) return closeWebSocket(socket, 1002, 'expected continuation');
    if (opcode !== 0x0 && opcode !== 0x1 && opcode !== 0x2) return closeWebSocket(socket, 1002, 'unknown opcode');
    if (opcode !== 0x0) messageOpcode = opcode;

    fragments.push(payload);
    fragmentBytes += payload.length;
    if (fragmentBytes > MAX_WEBSOCKET_MESSAGE_BYTES) return closeWebSocket(socket, 1009, 'message too big');
    if (!fin) return;

    const message = Buffer.concat(fragments);
    const type = messageOpcode;
    fragments = [];
    fragmentBytes = 0;
    messageOpcode = 0;
    if (type === 0x1) {
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(message);
      } catch {
        return closeWebSocket(socket, 1007, 'invalid utf-8');
      }
    }
    sendFrame(socket, type, message);
  }

  function parse() {
    while (!closed && !socket.destroyed && buffered.length >= 2) {
      if ((buffered[0] & 0x70) !== 0) return closeWebSocket(socket, 1002, 'no extension negotiated');
      const fin = (buffered[0] & 0x80) !== 0;
      const opcode = buffered[0] & 0x0f;
      const masked = (buffered[1] & 0x80) !== 0;
      let length = buffered[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffered.length < 4) return;
        length = buffered.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffered.length < 10) return;
        const long = buffered.readBigUInt64BE(2);
        if (long > BigInt(MAX_WEBSOCKET_MESSAGE_BYTES)) return closeWebSocket(socket, 1009, 'message too big');
        length = Number(long);
        offset = 10;
      }
      if (!masked) return closeWebSocket(socket, 1002, 'client frames must be masked');
      if (buffered.length < offset + 4 + length) return;

      const mask = buffered.subarray(offset, offset + 4);
      const payload = Buffer.from(buffered.subarray(offset + 4, offset + 4 + length));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      buffered = buffered.subarray(offset + 4 + length);
      onFrame(fin, opcode, payload);
    }
  }

  socket.on('data', (chunk) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    parse();
  });
  socket.on('error', () => socket.destroy());
  parse();
}

function handleUpgrade(req, socket, head, failUntil) {
  const path = new URL(req.url, 'http://localhost').pathname;
  const key = req.headers['sec-websocket-key'];
  const isWebSocket = (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
  if (Date.now() < failUntil || !path.endsWith('/ws') || !isWebSocket || !key || req.headers['sec-websocket-version'] !== '13') {
    const status = Date.now() < failUntil ? '503 Service Unavailable' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    return;
  }

  const accept = createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64');
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${accept}`];
  const protocol = req.headers['sec-websocket-protocol'];
  if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol.split(',')[0].trim()}`);
  socket.write(lines.join('\r\n') + '\r\n\r\n');
  socket.setNoDelay(true);
  serveWebSocket(socket, head);
}

function trackSockets(netServer) {
  netServer.on('connection', (socket) => {
    openSockets.add(socket);
    socket.on('close', () => openSockets.delete(socket));
  });
}

async function main() {
  if (process.env.CRASH_ON_BOOT !== undefined) {
    const code = Number.parseInt(process.env.CRASH_ON_BOOT, 10);
    console.log('test-app crash-on-boot: starting');
    console.error('test-app crash-on-boot: missing configuration DATABASE_URL');
    console.log(`test-app crash-on-boot: exiting with code ${Number.isNaN(code) ? 1 : code}`);
    process.exitCode = Number.isNaN(code) ? 1 : code;
    return;
  }

  const bootDelayMs = Number(process.env.BOOT_DELAY_MS ?? 0);
  if (bootDelayMs > 0) await sleep(bootDelayMs);

  if (process.env.NO_LISTEN !== undefined) {
    console.log(`test-app started without listening pid=${process.pid}`);
    setInterval(() => {}, 60_000);
    return;
  }

  if (process.env.NEVER_ANSWER !== undefined) {
    server = createTcpServer({ pauseOnConnect: true });
    trackSockets(server);
    server.listen(port, () => console.log(`test-app accepting tcp without answering port=${port} pid=${process.pid}`));
    return;
  }

  const failUntil = Date.now() + Number(process.env.FAIL_UNTIL_MS ?? 0);
  const logRequests = process.env.LOG_REQUESTS !== undefined;
  server = createServer((req, res) => {
    if (logRequests) console.log(`test-app request ${req.method} ${req.url}`);
    handleRequest(req, res, failUntil).catch((error) => {
      console.error(`test-app request failed: ${error.message}`);
      res.destroy();
    });
  });
  server.on('upgrade', (req, socket, head) => handleUpgrade(req, socket, head, failUntil));
  trackSockets(server);
  server.listen(port, () => {
    console.log(`test-app listening port=${port} pid=${process.pid} container=${hostname()} boot_delay_ms=${bootDelayMs}`);
  });
}

main().catch((error) => {
  console.error(`test-app failed to start: ${error.message}`);
  process.exit(1);
});
