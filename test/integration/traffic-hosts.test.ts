/**
 * Host-based routing, cold and warm: on the plain port with a Host header, and on the TLS port
 * (`-tls-port`) over HTTP/1.1 and HTTP/2. Host names end in `.localhost`, for which Caddy's
 * automatic HTTPS issues certificates from its local CA; the clients trust that CA's root.
 * Real Caddy, controller process and Docker engine, dns upstream mode.
 */
import { readFile } from 'node:fs/promises';
import http2 from 'node:http2';
import path from 'node:path';
import { connect as connectTls } from 'node:tls';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createService, startLuma, type LumaInstance } from '../support/luma.js';
import { freePort, sleep, waitFor } from '../support/ports.js';

const TEST_IMAGE = 'luma-test-app:latest';

interface Echo {
  path: string;
  rawUrl: string;
  headers: Record<string, string>;
  containerId: string;
}

interface Reply {
  status: number;
  echo: Echo;
  /** `HTTP/1.1` or `h2`. */
  protocol: string;
}

let caddy: CaddyProcess;
let luma: LumaInstance;
let tlsPort: number;

beforeAll(async () => {
  caddy = await startCaddy();
  // Caddy would otherwise try to install its local CA's root into the system trust store.
  await fetch(`${caddy.adminUrl}/config/apps`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ pki: { certificate_authorities: { local: { install_trust: false } } } }),
  }).then((response) => expect(response.status).toBe(200));

  tlsPort = await freePort();
  luma = await startLuma({ caddyAdminUrl: caddy.adminUrl, args: [`-tls-port=${tlsPort}`, '-inactivity-timeout=60s'] });
});

afterAll(async () => {
  await luma?.destroy();
  await caddy?.stop();
});

/** Creates a sleeping service reached by `<name>.luma-test.localhost` and returns that host name. */
async function createHostedService(name: string): Promise<string> {
  const host = `${name}.luma-test.localhost`;
  await createService(luma, { name, image: TEST_IMAGE, hosts: [host], env: { BOOT_DELAY_MS: '300' } });
  return host;
}

/** Waits until Caddy completes a TLS handshake for `host` with a certificate its local CA signed. */
async function waitForCertificate(host: string): Promise<Buffer> {
  const rootPath = path.join(caddy.dir, 'data', 'pki', 'authorities', 'local', 'root.crt');
  return waitFor(
    `a certificate for ${host}`,
    async () => {
      const ca = await readFile(rootPath);
      await new Promise<void>((resolve, reject) => {
        const socket = connectTls({ host: '127.0.0.1', port: tlsPort, servername: host, ca }, () => {
          socket.end();
          resolve();
        });
        socket.once('error', reject);
      });
      return ca;
    },
    15_000,
    200,
  );
}

/** Sends the request once (cold), waits past Caddy's SRV cache lifetime and sends it again (warm). */
async function coldAndWarm(send: () => Promise<Reply>): Promise<{ cold: Reply; warm: Reply }> {
  const cold = await send();
  await sleep(1_500);
  const warm = await send();
  return { cold, warm };
}

async function getHttp1(origin: string, host: string, dispatcher?: Agent): Promise<Reply> {
  const response = await request(`${origin}/x/y?z=1`, { headers: { host }, dispatcher, reset: true });
  return { status: response.statusCode, echo: (await response.body.json()) as Echo, protocol: 'HTTP/1.1' };
}

function getHttp2(host: string, ca: Buffer): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${tlsPort}`, { servername: host, ca });
    session.once('error', reject);
    const stream = session.request({ ':path': '/x/y?z=1', ':authority': host });
    let status = 0;
    let body = '';
    stream.on('response', (headers) => (status = Number(headers[':status'])));
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => (body += chunk));
    stream.once('error', reject);
    stream.once('end', () => {
      const protocol = session.alpnProtocol ?? 'unknown';
      session.close();
      resolve({ status, echo: JSON.parse(body) as Echo, protocol });
    });
  });
}

function expectHostRouted(reply: Reply, host: string, proto: 'http' | 'https'): void {
  expect(reply.status).toBe(200);
  expect(reply.echo.rawUrl).toBe('/x/y?z=1');
  expect(reply.echo.headers['x-forwarded-prefix']).toBeUndefined();
  expect(reply.echo.headers['x-forwarded-proto']).toBe(proto);
  expect(reply.echo.headers['x-forwarded-host']).toBe(reply.echo.headers.host);
  expect(reply.echo.headers.host?.toLowerCase().split(':')[0]).toBe(host);
}

describe('host routing', () => {
  it('routes plain http cold and warm', async () => {
    const host = await createHostedService('plain-host');
    // Host matching ignores case and port.
    const { cold, warm } = await coldAndWarm(() => getHttp1(luma.url, `PLAIN-Host.luma-test.localhost:${luma.port}`));

    for (const reply of [cold, warm]) {
      expectHostRouted(reply, host, 'http');
      expect(reply.echo.headers.host).toBe(`PLAIN-Host.luma-test.localhost:${luma.port}`);
    }
    expect(warm.echo.containerId).toBe(cold.echo.containerId);
  });

  it('serves http/1.1 over tls cold and warm', async () => {
    const host = await createHostedService('tls-one');
    const ca = await waitForCertificate(host);
    const agent = new Agent({ connect: { servername: host, ca } });

    try {
      const { cold, warm } = await coldAndWarm(() => getHttp1(`https://127.0.0.1:${tlsPort}`, host, agent));
      for (const reply of [cold, warm]) expectHostRouted(reply, host, 'https');
    } finally {
      await agent.close();
    }
  });

  it('serves http/2 over tls cold and warm', async () => {
    const host = await createHostedService('tls-two');
    const ca = await waitForCertificate(host);

    const { cold, warm } = await coldAndWarm(() => getHttp2(host, ca));
    for (const reply of [cold, warm]) {
      expect(reply.protocol).toBe('h2');
      expectHostRouted(reply, host, 'https');
    }
  });
});
