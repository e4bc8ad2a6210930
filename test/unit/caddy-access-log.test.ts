import { describe, expect, it } from 'vitest';
import { parseAccessLogLine } from '../../src/caddy/access-log.js';

// A line as Caddy 2.6.2 writes it with the encoder from buildAccessLog (headers removed).
const CADDY_LINE =
  '{"level":"info","ts":1796416122.9149535,"logger":"http.log.access.luma_t","msg":"handled request",' +
  '"request":{"remote_ip":"127.0.0.1","remote_port":"39100","proto":"HTTP/1.1","method":"GET",' +
  '"host":"127.0.0.1:23080","uri":"/svc/a%2Fb//c?q=1"},"user_id":"","duration":0.003296727,"size":269,"status":200}';

function line(fields: { ts?: unknown; host?: unknown; uri?: unknown; status?: unknown; duration?: unknown }): string {
  return JSON.stringify({
    ts: fields.ts ?? 1700000000.5,
    request: { host: fields.host ?? 'example.com', uri: fields.uri ?? '/' },
    status: fields.status ?? 200,
    duration: fields.duration ?? 0.25,
  });
}

describe('parseAccessLogLine', () => {
  it('caddy 2.6.2 line', () => {
    expect(parseAccessLogLine(CADDY_LINE)).toEqual({
      host: '127.0.0.1',
      uri: '/svc/a%2Fb//c?q=1',
      status: 200,
      at: new Date(1796416122914.9535),
      durationMs: 3.296727,
    });
  });

  it.each([
    { name: 'upper case with port', host: 'Shop.Example.COM:8080', expected: 'shop.example.com' },
    { name: 'trailing dot', host: 'shop.example.com.', expected: 'shop.example.com' },
    { name: 'ipv6 with port', host: '[::1]:8080', expected: '::1' },
    { name: 'ipv6 without port', host: '[fd00::1]', expected: 'fd00::1' },
  ])('host $name', ({ host, expected }) => {
    expect(parseAccessLogLine(line({ host }))?.host).toBe(expected);
  });

  it('rfc 3339 timestamp', () => {
    expect(parseAccessLogLine(line({ ts: '2026-01-02T03:04:05.5Z' }))?.at.toISOString()).toBe('2026-01-02T03:04:05.500Z');
  });

  it.each([
    { name: 'not json', text: 'handled request' },
    { name: 'json array', text: '[1,2]' },
    { name: 'missing request', text: JSON.stringify({ ts: 1, status: 200 }) },
    { name: 'string status', text: line({ status: '200' }) },
    { name: 'numeric uri', text: line({ uri: 5 }) },
    { name: 'bad timestamp', text: line({ ts: 'yesterday' }) },
  ])('rejects $name', ({ text }) => {
    expect(parseAccessLogLine(text)).toBeUndefined();
  });
});
