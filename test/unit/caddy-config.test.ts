import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { buildAccessLog, buildServer, type ServerLayout } from '../../src/caddy/config.js';
import { dialAddress, hostRouteId, serverName } from '../../src/caddy/names.js';
import { normalizeRoute } from '../../src/caddy/routes.js';
import type { ServiceRoute } from '../../src/caddy/types.js';
import { isLumaError } from '../../src/errors.js';

// Set UPDATE_GOLDEN=1 to rewrite the golden files from the current builder output, then review
// the diff: it is the change Caddy will see.
const GOLDEN_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'golden');
const UPDATE = process.env.UPDATE_GOLDEN === '1';

async function expectGolden(name: string, value: unknown): Promise<void> {
  const file = path.join(GOLDEN_DIR, name);
  const actual = `${JSON.stringify(value, null, 2)}\n`;
  if (UPDATE) {
    await writeFile(file, actual);
    return;
  }
  const expected = await readFile(file, 'utf8');
  expect(actual).toBe(expected);
}

const LAYOUT: ServerLayout = {
  instanceId: 'a1b2',
  port: 8080,
  listenHost: '',
  apiAddress: '127.0.0.1:8081',
  wakeAddress: '127.0.0.1:8082',
};

const SLEEPING: ServiceRoute = { service: 'hello', hosts: [], upstreams: [] };
const READY: ServiceRoute = {
  service: 'shop',
  hosts: ['Shop.Example.com', 'www.shop.example.com', 'shop.example.com'],
  upstreams: ['172.18.0.3:8080', '172.18.0.2:8080'],
  maxConcurrency: 4,
};

describe('buildServer golden files', () => {
  it.each([
    { name: 'no services', file: 'server-empty.json', layout: LAYOUT, routes: [], parked: [] },
    {
      name: 'sleeping and ready services',
      file: 'server-services.json',
      layout: { ...LAYOUT, listenHost: '127.0.0.1', accessLogAddress: '127.0.0.1:9999', maxBodyBytes: 104_857_600, trustedProxies: ['10.0.0.0/8'] },
      routes: [READY, SLEEPING],
      parked: ['172.18.0.9:8080'],
    },
    {
      name: 'unix socket api and stream delay',
      file: 'server-unix-api.json',
      layout: { ...LAYOUT, listenHost: '::1', apiAddress: '/run/luma/api.sock', streamCloseDelay: '10m', tlsPort: 8443 },
      routes: [{ service: 'hello', hosts: ['hello.test'], upstreams: ['[fd00::2]:8080'] }],
      parked: [],
    },
  ])('server with $name', async ({ file, layout, routes, parked }) => {
    await expectGolden(file, buildServer(layout, routes, parked));
  });

  it('access log entry', async () => {
    await expectGolden('access-log.json', buildAccessLog({ ...LAYOUT, accessLogAddress: '127.0.0.1:9999' }));
  });
});

describe('buildServer', () => {
  it('service order independent', () => {
    expect(buildServer(LAYOUT, [READY, SLEEPING], [])).toEqual(buildServer(LAYOUT, [SLEEPING, READY], []));
  });

  it('no access log without address', () => {
    expect(buildAccessLog(LAYOUT)).toBeUndefined();
    expect(buildServer(LAYOUT, [], [])).not.toHaveProperty('logs');
  });

  it.each([
    { name: 'duplicate service', layout: LAYOUT, routes: [SLEEPING, SLEEPING], code: 'invalid_input' },
    { name: 'dotted service name', layout: LAYOUT, routes: [{ ...SLEEPING, service: 'a.b' }], code: 'invalid_input' },
    { name: 'dotted instance id', layout: { ...LAYOUT, instanceId: 'x.y' }, routes: [], code: 'invalid_input' },
    { name: 'zero max concurrency', layout: LAYOUT, routes: [{ ...READY, maxConcurrency: 0 }], code: 'invalid_input' },
    { name: 'port zero', layout: { ...LAYOUT, port: 0 }, routes: [], code: 'invalid_setting' },
    { name: 'bad upstream address', layout: LAYOUT, routes: [{ ...READY, upstreams: ['nope'] }], code: 'invalid_input' },
  ])('rejects $name', ({ layout, routes, code }) => {
    let thrown: unknown;
    try {
      buildServer(layout, routes, []);
    } catch (error) {
      thrown = error;
    }
    expect(isLumaError(thrown)).toBe(true);
    expect((thrown as { code?: unknown }).code).toBe(code);
  });
});

describe('caddy names', () => {
  it.each([
    { input: '10.0.0.2:8080', expected: '10.0.0.2:8080' },
    { input: '[fd00::2]:8080', expected: '[fd00::2]:8080' },
    { input: 'localhost:8081', expected: 'localhost:8081' },
    { input: '/run/luma/api.sock', expected: 'unix//run/luma/api.sock' },
    { input: 'unix:/run/luma/api.sock', expected: 'unix//run/luma/api.sock' },
    { input: 'unix//run/luma/api.sock', expected: 'unix//run/luma/api.sock' },
  ])('dial address of $input', ({ input, expected }) => {
    expect(dialAddress(input)).toBe(expected);
  });

  it('ids contain instance and service', () => {
    expect(serverName('a1b2')).toBe('luma-a1b2');
    expect(hostRouteId('a1b2', 'shop')).toBe('luma-a1b2.host.shop');
  });
});

describe('normalizeRoute', () => {
  it('lower-cases and sorts hosts', () => {
    expect(normalizeRoute(READY)).toEqual({
      service: 'shop',
      hosts: ['shop.example.com', 'www.shop.example.com'],
      upstreams: ['172.18.0.2:8080', '172.18.0.3:8080'],
      maxConcurrency: 4,
    });
  });
});
