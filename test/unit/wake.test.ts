import { describe, expect, it } from 'vitest';
import { LumaError, SettingError } from '../../src/errors.js';
import { RepeatLimiter } from '../../src/wake/failure-log.js';
import { WakeGate } from '../../src/wake/gate.js';
import { parseListenAddress } from '../../src/wake/handler.js';
import { forwardedRequestHeaders, forwardedResponseHeaders, upgradeRequestHead } from '../../src/wake/headers.js';
import { isConnectError } from '../../src/wake/replay.js';
import { replyForWakeError } from '../../src/wake/replies.js';
import { hostName } from '../../src/host-name.js';
import { splitAddress } from '../../src/wake/tunnel.js';

describe('forwardedRequestHeaders', () => {
  it('drops hop-by-hop and listed headers', () => {
    const raw = [
      'Host', 'api.example.test',
      'Connection', 'keep-alive, X-Hop',
      'X-Hop', 'dropped',
      'Keep-Alive', 'timeout=5',
      'Proxy-Connection', 'keep-alive',
      'Transfer-Encoding', 'chunked',
      'TE', 'trailers',
      'Trailer', 'X-Checksum',
      'Upgrade', 'h2c',
      'Expect', '100-continue',
      'X-Forwarded-For', '203.0.113.7',
      'Cookie', 'a=1',
      'Cookie', 'b=2',
    ];

    expect(forwardedRequestHeaders(raw)).toEqual([
      'Host', 'api.example.test',
      'X-Forwarded-For', '203.0.113.7',
      'Cookie', 'a=1',
      'Cookie', 'b=2',
    ]);
  });

  it('reads tokens from every Connection header', () => {
    const raw = ['Connection', 'X-A', 'connection', ' x-b ,', 'X-A', '1', 'x-b', '2', 'X-C', '3'];

    expect(forwardedRequestHeaders(raw)).toEqual(['X-C', '3']);
  });
});

describe('forwardedResponseHeaders', () => {
  it('keeps repeated cookies and drops hops', () => {
    const headers = {
      'set-cookie': ['a=1', 'b=2'],
      location: '/next',
      connection: 'close, x-internal',
      'x-internal': 'secret',
      'transfer-encoding': 'chunked',
      'keep-alive': 'timeout=5',
      'content-length': '0',
    };

    expect(forwardedResponseHeaders(headers)).toEqual({
      'set-cookie': ['a=1', 'b=2'],
      location: '/next',
      'content-length': '0',
    });
  });
});

describe('upgradeRequestHead', () => {
  it('keeps Connection and Upgrade only', () => {
    const raw = [
      'Host', 'a',
      'Connection', 'Upgrade, X-Hop',
      'Upgrade', 'websocket',
      'X-Hop', '1',
      'Keep-Alive', '5',
      'Sec-WebSocket-Key', 'abc',
    ];

    const head = upgradeRequestHead('GET', '/chat?x=%20', raw).toString('latin1');

    expect(head).toBe(
      'GET /chat?x=%20 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-Hop\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Key: abc\r\n\r\n',
    );
  });
});

describe('WakeGate', () => {
  it('bounds per service and total', () => {
    const gate = new WakeGate(2, 3);

    expect(gate.tryEnter('a')).toBe(true);
    expect(gate.tryEnter('a')).toBe(true);
    expect(gate.tryEnter('a')).toBe(false);
    expect(gate.tryEnter('b')).toBe(true);
    expect(gate.tryEnter('b')).toBe(false);
    expect(gate.waiting('a')).toBe(2);
    expect(gate.total).toBe(3);
    expect(gate.byService()).toEqual({ a: 2, b: 1 });
  });

  it('leave frees slots and ignores extras', () => {
    const gate = new WakeGate(1, 1);
    gate.tryEnter('a');

    gate.leave('a');
    gate.leave('a');

    expect(gate.total).toBe(0);
    expect(gate.waiting('a')).toBe(0);
    expect(gate.byService()).toEqual({});
    expect(gate.tryEnter('b')).toBe(true);
  });
});

describe('hostName', () => {
  it.each([
    ['App.Example.test', 'app.example.test'],
    ['app.example.test:8443', 'app.example.test'],
    ['app.example.test.', 'app.example.test'],
    ['[::1]:8080', '::1'],
    ['[::1]', '::1'],
    ['  spaced.test  ', 'spaced.test'],
  ])('hostName of %s', (host, expected) => {
    expect(hostName(host)).toBe(expected);
  });
});

describe('parseListenAddress', () => {
  it.each([
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['127.0.0.1:8090', { host: '127.0.0.1', port: 8090 }],
    ['[::1]:9000', { host: '::1', port: 9000 }],
    ['localhost:1', { host: 'localhost', port: 1 }],
  ])('accepts %s', (address, expected) => {
    expect(parseListenAddress(address)).toEqual(expected);
  });

  it.each(['127.0.0.1', ':8080', '127.0.0.1:70000', 'example.test:80', '[nope]:80', '::1:80'])('rejects %s', (address) => {
    expect(() => parseListenAddress(address)).toThrow(SettingError);
  });
});

describe('splitAddress', () => {
  it.each([
    ['172.18.0.5:8080', { host: '172.18.0.5', port: 8080 }],
    ['[fd00::5]:8080', { host: 'fd00::5', port: 8080 }],
  ])('splits %s', (address, expected) => {
    expect(splitAddress(address)).toEqual(expected);
  });
});

describe('isConnectError', () => {
  it.each([
    ['ECONNREFUSED', true],
    ['UND_ERR_CONNECT_TIMEOUT', true],
    ['UND_ERR_INVALID_ARG', false],
    [undefined, false],
  ])('code %s gives %s', (code, expected) => {
    expect(isConnectError(Object.assign(new Error('x'), { code }))).toBe(expected);
  });
});

describe('replyForWakeError', () => {
  it.each([
    {
      error: new LumaError('image_not_found', 'image "x" not found'),
      reply: { status: 502, message: 'service "api" failed to start: image "x" not found', retryAfterSeconds: 5 },
    },
    {
      error: new LumaError('wake_queue_full', 'too many requests are waiting for a replica'),
      reply: { status: 503, message: 'service "api" is unavailable: too many requests are waiting for a replica', retryAfterSeconds: 5 },
    },
    {
      error: new LumaError('wake_backoff', 'service "api" failed to start recently: boom', { details: { retryAfterMs: 1 } }),
      reply: { status: 503, message: 'service "api" failed to start recently: boom', retryAfterSeconds: 1 },
    },
    {
      error: new LumaError('startup_timeout', 'not ready within 30s', { details: { retryAfterMs: 30_001 } }),
      reply: { status: 504, message: 'service "api" failed to start: not ready within 30s', retryAfterSeconds: 31 },
    },
    {
      error: new LumaError('service_deleted', 'service "api" was deleted'),
      reply: { status: 404, message: 'service "api" not found' },
    },
    {
      error: new TypeError('cannot read properties of undefined'),
      reply: { status: 502, message: 'service "api" failed to start: internal error', retryAfterSeconds: 5 },
    },
  ])('reply for $error.message', ({ error, reply }) => {
    expect(replyForWakeError('api', error, 5)).toEqual(reply);
  });
});

describe('RepeatLimiter', () => {
  it('admits once per interval and counts repeats', () => {
    let now = 0;
    const limiter = new RepeatLimiter(1_000, () => now);

    expect(limiter.admit('a')).toBe(0);
    expect(limiter.admit('a')).toBeUndefined();
    expect(limiter.admit('b')).toBe(0);
    now = 500;
    expect(limiter.admit('a')).toBeUndefined();
    now = 1_000;
    expect(limiter.admit('a')).toBe(2);
    expect(limiter.admit('a')).toBeUndefined();
  });
});
