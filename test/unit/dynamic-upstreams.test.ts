import { describe, expect, it } from 'vitest';
import { buildSrvUpstreams, srvChangeDelayMs } from '../../src/caddy/dynamic-upstreams.js';

const SRV_NAME = '_http._tcp.api.inst1.luma.internal.';

describe('buildSrvUpstreams', () => {
  it('builds SRV source with TCP resolver', () => {
    expect(buildSrvUpstreams({ srvName: SRV_NAME, dnsAddress: '127.0.0.1:5353' })).toEqual({
      dynamic_upstreams: {
        source: 'srv',
        name: SRV_NAME,
        refresh: '1000ms',
        resolver: { addresses: ['tcp/127.0.0.1:5353'] },
        dial_timeout: '1000ms',
      },
      transport: { protocol: 'http', resolver: { addresses: ['tcp/127.0.0.1:5353'] } },
    });
  });

  it('adds request limit, fallback and timings', () => {
    const fields = buildSrvUpstreams({
      srvName: SRV_NAME,
      dnsAddress: '[::1]:5353',
      refreshMs: 250,
      dnsDialTimeoutMs: 500,
      maxConcurrency: 4,
      fallbackDial: '127.0.0.1:7000',
    });

    expect(fields.dynamic_upstreams.refresh).toBe('250ms');
    expect(fields.dynamic_upstreams.dial_timeout).toBe('500ms');
    expect(fields.transport.resolver.addresses).toEqual(['tcp/[::1]:5353']);
    expect(fields.upstreams).toEqual([{ dial: '127.0.0.1:7000' }]);
    expect(fields.health_checks).toEqual({ passive: { unhealthy_request_count: 4, max_fails: 1 } });
  });

  it.each([
    { case: 'refresh below 250 ms', options: { srvName: SRV_NAME, refreshMs: 100 }, code: 'invalid_setting' },
    { case: 'fractional refresh', options: { srvName: SRV_NAME, refreshMs: 500.5 }, code: 'invalid_setting' },
    { case: 'relative SRV name', options: { srvName: SRV_NAME.slice(0, -1) }, code: 'invalid_input' },
  ])('rejects $case', ({ options, code }) => {
    expect(() => buildSrvUpstreams({ dnsAddress: '127.0.0.1:5353', ...options })).toThrow(
      expect.objectContaining({ code }),
    );
  });
});

describe('srvChangeDelayMs', () => {
  it.each([
    { refreshMs: undefined, expected: 2_000 },
    { refreshMs: 250, expected: 1_250 },
  ])('waits refresh plus margin for $refreshMs', ({ refreshMs, expected }) => {
    expect(srvChangeDelayMs(refreshMs)).toBe(expected);
  });
});
