/**
 * What the app sees and what the client gets back are the same whether a request wakes the
 * service (replayed by the wake-up handler) or reaches a ready replica through Caddy: path,
 * query, Host, the X-Forwarded-* headers (trusted only from `-trusted-proxies`), redirects and
 * Set-Cookie. Real Caddy, controller process and Docker engine, dns upstream mode.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createService, startLuma, type LumaInstance } from '../support/luma.js';
import { sleep } from '../support/ports.js';
import { sendRaw } from '../support/traffic.js';

const TEST_IMAGE = 'luma-test-app:latest';
/** The proxy in front of Caddy in these tests: a client bound to this loopback address. */
const TRUSTED_PROXY = '127.0.0.2';

interface Echo {
  path: string;
  rawUrl: string;
  query: Record<string, string | string[]>;
  headers: Record<string, string>;
}

interface Reply {
  status: number;
  headers: Dispatcher.ResponseData['headers'];
  text: string;
}

let caddy: CaddyProcess;
let luma: LumaInstance;
let serviceCount = 0;
const fromTrustedProxy = new Agent({ localAddress: TRUSTED_PROXY });

beforeAll(async () => {
  caddy = await startCaddy();
  luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: [`-trusted-proxies=${TRUSTED_PROXY}/32`, '-inactivity-timeout=60s'] });
});

afterAll(async () => {
  await fromTrustedProxy.close();
  await luma?.destroy();
  await caddy?.stop();
});

/**
 * Creates a sleeping service, sends `send` once to wake it (replayed by the wake-up handler),
 * waits past Caddy's SRV cache lifetime (1 s) and sends it again (proxied by Caddy to the
 * replica). Returns both replies.
 */
async function coldAndWarm(send: (service: string) => Promise<Reply>): Promise<{ cold: Reply; warm: Reply }> {
  serviceCount += 1;
  const service = `hdr-${serviceCount}`;
  await createService(luma, { name: service, image: TEST_IMAGE });
  const cold = await send(service);
  await sleep(1_500);
  const warm = await send(service);
  return { cold, warm };
}

/**
 * Sends a GET for `path` (undici resolves dot segments in it) on a new connection: creating a
 * service writes Caddy's config, and Caddy 2.6.2 then closes idle keep-alive connections.
 */
async function get(path: string, headers: Record<string, string> = {}, dispatcher?: Dispatcher): Promise<Reply> {
  // undici's types omit `path` next to an origin, but its runtime accepts it.
  const options = { path, headers, dispatcher, reset: true } as unknown as Parameters<typeof request>[1];
  const response = await request(luma.url, options);
  return { status: response.statusCode, headers: response.headers, text: await response.body.text() };
}

function echoOf(reply: Reply): Echo {
  expect(reply.status).toBe(200);
  return JSON.parse(reply.text) as Echo;
}

describe('request headers and paths', () => {
  it('match between cold and warm', async () => {
    const target = '/a%2Fb//c%20d/./x/../y?q=1&r=%26s&t=%E2%9C%93&empty=&flag';
    // A raw socket, because fetch and undici would resolve the dot segments before sending.
    const { cold, warm } = await coldAndWarm(async (service) => {
      const response = await sendRaw({
        port: luma.port,
        head: [`GET /${service}${target} HTTP/1.1`, `Host: 127.0.0.1:${luma.port}`, 'X-Custom: kept', 'Accept-Encoding: gzip', 'Connection: close'],
      });
      return { status: response.status, headers: response.headers, text: response.body.toString() };
    });
    const coldEcho = echoOf(cold);
    const warmEcho = echoOf(warm);

    expect(coldEcho.rawUrl).toBe(target);
    expect(warmEcho.rawUrl).toBe(target);
    expect(coldEcho.query).toEqual({ q: '1', r: '&s', t: '✓', empty: '', flag: '' });
    // undici 7 always sends `Connection` (keep-alive) on replayed requests; Caddy sends none.
    const names = (echo: Echo) => Object.keys(echo.headers).filter((name) => name !== 'connection').sort();
    expect(names(coldEcho)).toEqual(names(warmEcho));
    expect(coldEcho.headers.connection).toBe('keep-alive');
    for (const name of ['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-prefix', 'x-custom', 'accept-encoding']) {
      expect({ name, value: coldEcho.headers[name] }).toEqual({ name, value: warmEcho.headers[name] });
    }
    expect(coldEcho.headers.host).toBe(`127.0.0.1:${luma.port}`);
    expect(coldEcho.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(coldEcho.headers['x-forwarded-proto']).toBe('http');
    expect(coldEcho.headers['x-forwarded-host']).toBe(`127.0.0.1:${luma.port}`);
  });

  it('replace forwarding headers from clients', async () => {
    const spoofed = {
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'spoofed.example',
      'x-forwarded-prefix': '/spoofed',
    };
    const { cold, warm } = await coldAndWarm((service) => get(`/${service}/who`, spoofed));

    for (const [echo, service] of [[echoOf(cold), 'cold'], [echoOf(warm), 'warm']] as const) {
      expect({ service, value: echo.headers['x-forwarded-for'] }).toEqual({ service, value: '127.0.0.1' });
      expect({ service, value: echo.headers['x-forwarded-proto'] }).toEqual({ service, value: 'http' });
      expect({ service, value: echo.headers['x-forwarded-host'] }).toEqual({ service, value: `127.0.0.1:${luma.port}` });
      expect({ service, value: echo.headers['x-forwarded-prefix'] }).toEqual({ service, value: `/hdr-${serviceCount}` });
    }
  });

  it('keep forwarding headers from trusted proxies', async () => {
    const forwarded = { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example' };
    const { cold, warm } = await coldAndWarm((service) => get(`/${service}/who`, forwarded, fromTrustedProxy));

    for (const [echo, service] of [[echoOf(cold), 'cold'], [echoOf(warm), 'warm']] as const) {
      expect({ service, value: echo.headers['x-forwarded-for'] }).toEqual({ service, value: `203.0.113.9, ${TRUSTED_PROXY}` });
      expect({ service, value: echo.headers['x-forwarded-proto'] }).toEqual({ service, value: 'https' });
      expect({ service, value: echo.headers['x-forwarded-host'] }).toEqual({ service, value: 'public.example' });
    }
  });
});

describe('responses', () => {
  it('pass redirects unchanged', async () => {
    const location = 'https://example.com/next?a=1&b=%2F';
    const { cold, warm } = await coldAndWarm((service) => get(`/${service}/redirect?to=${encodeURIComponent(location)}`));

    for (const reply of [cold, warm]) {
      expect(reply.status).toBe(302);
      expect(reply.headers.location).toBe(location);
    }
  });

  it('pass set-cookie unchanged', async () => {
    const { cold, warm } = await coldAndWarm((service) => get(`/${service}/cookie`));

    for (const reply of [cold, warm]) {
      expect(reply.status).toBe(200);
      expect(reply.headers['set-cookie']).toEqual(['luma_a=1; Path=/', 'luma_b=2; Path=/; HttpOnly']);
    }
  });

  it('pass app status codes unchanged', async () => {
    const { cold, warm } = await coldAndWarm((service) => get(`/${service}/status/503`));

    for (const reply of [cold, warm]) {
      expect(reply.status).toBe(503);
      expect(JSON.parse(reply.text).path).toBe('/status/503');
    }
  });
});
