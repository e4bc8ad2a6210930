import { describe, expect, it } from 'vitest';
import { httpAppPorts, listenFields } from '../../src/caddy/tls.js';
import { isLumaError } from '../../src/errors.js';

describe('listenFields', () => {
  it('plain port only', () => {
    expect(listenFields({ port: 8080, listenHost: '' })).toEqual({ listen: [':8080'], automatic_https: { disable: true } });
    expect(httpAppPorts({ port: 8080, listenHost: '' })).toBeUndefined();
  });

  it('plain and tls ports', () => {
    expect(listenFields({ port: 80, tlsPort: 443, listenHost: '::1' })).toEqual({
      listen: ['[::1]:80', '[::1]:443'],
      tls_connection_policies: [{}],
      automatic_https: { disable_redirects: true },
    });
    expect(httpAppPorts({ port: 80, tlsPort: 443, listenHost: '' })).toEqual({ http_port: 80, https_port: 443 });
  });

  it.each([
    { name: 'port zero', layout: { port: 0, listenHost: '' } },
    { name: 'tls port too large', layout: { port: 80, tlsPort: 70_000, listenHost: '' } },
    { name: 'tls port equals port', layout: { port: 8080, tlsPort: 8080, listenHost: '' } },
  ])('rejects $name', ({ layout }) => {
    let thrown: unknown;
    try {
      listenFields(layout);
    } catch (error) {
      thrown = error;
    }
    expect(isLumaError(thrown, 'invalid_setting')).toBe(true);
  });
});
