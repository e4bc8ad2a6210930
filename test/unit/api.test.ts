import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';

import { createAdaptorServer } from '@hono/node-server';

import { beforeEach, describe, expect, it } from 'vitest';

import { createApiApp, type ApiApp } from '../../src/api/app.js';
import type { ServiceBackend } from '../../src/api/backend.js';
import type { ServiceView } from '../../src/api/service-document.js';
import { LumaError } from '../../src/errors.js';
import { createLogger, silentLogger } from '../../src/log.js';
import type { ServiceSpec } from '../../src/model.js';
import { DEFAULTS, STATUS } from '../support/api-fixtures.js';

const TOKEN = 'test-token-0123456789abcdef';
const LOCAL = { 'x-luma-client-ip': '127.0.0.1' };
const REMOTE = { 'x-luma-client-ip': '203.0.113.7' };
const NOW = new Date('2025-03-01T12:00:00.000Z');


/** In-memory backend with the error behaviour of the ServiceBackend contract. */
class FakeBackend implements ServiceBackend {
  readonly specs = new Map<string, ServiceSpec>();
  readonly calls: string[] = [];
  failWith: unknown;

  list() {
    return [...this.specs.values()].map((spec) => ({ spec, status: STATUS }));
  }

  get(name: string) {
    const spec = this.specs.get(name);
    return spec === undefined ? undefined : { spec, status: STATUS };
  }

  async create(spec: ServiceSpec) {
    this.calls.push(`create ${spec.name}`);
    if (this.failWith !== undefined) throw this.failWith;
    if (this.specs.has(spec.name)) throw new LumaError('service_exists', `service "${spec.name}" already exists`);
    this.specs.set(spec.name, spec);
    return { spec, status: STATUS };
  }

  async update(name: string, spec: ServiceSpec) {
    this.calls.push(`update ${name}`);
    if (this.failWith !== undefined) throw this.failWith;
    if (!this.specs.has(name)) throw new LumaError('service_not_found', `service "${name}" not found`);
    this.specs.set(name, spec);
    return { spec, status: STATUS };
  }

  async delete(name: string) {
    this.calls.push(`delete ${name}`);
    if (this.failWith !== undefined) throw this.failWith;
    this.specs.delete(name);
  }
}

let backend: FakeBackend;
let app: ApiApp;

beforeEach(() => {
  backend = new FakeBackend();
  app = createApiApp({ backend, defaults: DEFAULTS, token: TOKEN, logger: silentLogger(), now: () => NOW });
});

interface SendOptions {
  headers?: Record<string, string>;
  contentType?: string;
  rawBody?: string;
}

function send(method: string, path: string, body?: unknown, options: SendOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...LOCAL, ...options.headers };
  let payload = options.rawBody;
  if (body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  return Promise.resolve(app.request(path, { method, headers, body: payload }));
}

interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: string;
  errors?: Array<{ field: string; message: string }>;
}

async function problemOf(response: Response): Promise<ProblemBody> {
  expect(response.headers.get('content-type')).toBe('application/problem+json');
  return (await response.json()) as ProblemBody;
}

async function fieldErrors(response: Response): Promise<Record<string, string>> {
  expect(response.status).toBe(400);
  const problem = await problemOf(response);
  expect(problem.code).toBe('invalid_input');
  return Object.fromEntries((problem.errors ?? []).map((issue) => [issue.field, issue.message]));
}

const createHello = (extra: Record<string, unknown> = {}) =>
  send('POST', '/api/services', { name: 'hello', image: 'registry.local:5000/team/hello:1.0', ...extra });

describe('POST /api/services', () => {
  it('creates with defaults and Location', async () => {
    const response = await createHello();
    expect(response.status).toBe(201);
    expect(response.headers.get('location')).toBe('/api/services/hello');

    const view = (await response.json()) as ServiceView;
    expect(view).toMatchObject({
      name: 'hello',
      image: 'registry.local:5000/team/hello:1.0',
      port: 8080,
      minReplicas: 0,
      maxReplicas: 10,
      env: {},
      command: null,
      hosts: [],
      healthCheck: null,
      startupTimeout: null,
      url: '/hello/',
      effective: { startupTimeout: '1m', inactivityTimeout: '10m', concurrency: 80, maxConcurrency: null },
      createdAt: NOW.toISOString(),
      generation: 1,
      status: STATUS,
    });
    expect(backend.specs.get('hello')?.port).toBe(8080);
  });

  it('stores every field in model form', async () => {
    const response = await createHello({
      port: 3000,
      minReplicas: 1,
      maxReplicas: 4,
      env: { NODE_ENV: 'production', _A1: '' },
      command: ['node', 'server.js'],
      hosts: ['Hello.Example.com'],
      healthCheck: { path: '/healthz' },
      startupTimeout: 90,
      inactivityTimeout: '1h30m',
      concurrency: 10,
      maxConcurrency: 20,
      resources: { memory: '512Mi', cpus: 0.5 },
    });
    expect(response.status).toBe(201);
    expect(backend.specs.get('hello')).toEqual({
      name: 'hello',
      image: 'registry.local:5000/team/hello:1.0',
      port: 3000,
      minReplicas: 1,
      maxReplicas: 4,
      env: { NODE_ENV: 'production', _A1: '' },
      command: ['node', 'server.js'],
      hosts: ['hello.example.com'],
      healthCheck: { path: '/healthz', timeoutMs: 1000 },
      startupTimeoutMs: 90_000,
      inactivityTimeoutMs: 5_400_000,
      concurrency: 10,
      maxConcurrency: 20,
      resources: { memoryBytes: 536_870_912, cpus: 0.5 },
      createdAt: NOW.toISOString(),
      updatedAt: NOW.toISOString(),
      generation: 1,
    });

    const view = (await response.json()) as ServiceView;
    expect(view.startupTimeout).toBe('1m30s');
    expect(view.inactivityTimeout).toBe('1h30m');
    expect(view.healthCheck).toEqual({ path: '/healthz', timeout: '1s' });
    expect(view.resources).toEqual({ memory: '512MiB', cpus: 0.5 });
  });

  it('raises maxReplicas default to minReplicas', async () => {
    await createHello({ minReplicas: 15 });
    expect(backend.specs.get('hello')?.maxReplicas).toBe(15);
  });

  it('returns 409 for a taken name', async () => {
    await createHello();
    const response = await createHello();
    expect(response.status).toBe(409);
    const problem = await problemOf(response);
    expect(problem).toMatchObject({ code: 'service_exists', title: 'Service already exists', instance: '/api/services' });
    expect(problem.type).toBe('/api/problems/service_exists');
  });

  it.each([
    [{ image: 'nginx' }, 'name', 'is required'],
    [{ name: 'Hello', image: 'nginx' }, 'name', 'must be a DNS label'],
    [{ name: '-hello', image: 'nginx' }, 'name', 'must be a DNS label'],
    [{ name: 'a'.repeat(64), image: 'nginx' }, 'name', 'must be a DNS label'],
    [{ name: 'api', image: 'nginx' }, 'name', 'is reserved'],
    [{ name: 'luma-proxy', image: 'nginx' }, 'name', 'is reserved'],
    [{ name: 'hello' }, 'image', 'is required'],
    [{ name: 'hello', image: 'Nginx' }, 'image', 'invalid repository path component'],
    [{ name: 'hello', image: 'nginx:' }, 'image', 'invalid tag'],
    [{ name: 'hello', image: 'nginx@sha256:abc' }, 'image', 'invalid digest'],
    [{ name: 'hello', image: 'registry:port/app' }, 'image', 'invalid registry port'],
    [{ name: 'hello', image: 'nginx latest' }, 'image', 'must not contain whitespace'],
    [{ name: 'hello', image: 42 }, 'image', 'must be a string'],
    [{ name: 'hello', image: 'nginx', port: 0 }, 'port', 'must be at least 1'],
    [{ name: 'hello', image: 'nginx', port: 65536 }, 'port', 'must be at most 65535'],
    [{ name: 'hello', image: 'nginx', port: 80.5 }, 'port', 'must be an integer'],
    [{ name: 'hello', image: 'nginx', port: '80' }, 'port', 'must be a number'],
    [{ name: 'hello', image: 'nginx', minReplicas: -1 }, 'minReplicas', 'must be at least 0'],
    [{ name: 'hello', image: 'nginx', minReplicas: 21 }, 'minReplicas', 'must be at most 20'],
    [{ name: 'hello', image: 'nginx', maxReplicas: 0 }, 'maxReplicas', 'must be at least 1'],
    [{ name: 'hello', image: 'nginx', minReplicas: 3, maxReplicas: 2 }, 'maxReplicas', 'must be at least minReplicas (3)'],
    [{ name: 'hello', image: 'nginx', maxReplicas: 21 }, 'maxReplicas', 'must be at most 20'],
    [{ name: 'hello', image: 'nginx', env: { '1A': 'x' } }, 'env.1A', 'POSIX environment variable name'],
    [{ name: 'hello', image: 'nginx', env: { PORT: '80' } }, 'env.PORT', 'set port instead'],
    [{ name: 'hello', image: 'nginx', env: { A: 1 } }, 'env.A', 'must be a string'],
    [{ name: 'hello', image: 'nginx', env: ['A=1'] }, 'env', 'must be a JSON object'],
    [{ name: 'hello', image: 'nginx', command: [] }, 'command', 'at least one argument'],
    [{ name: 'hello', image: 'nginx', command: 'node server.js' }, 'command', 'must be an array'],
    [{ name: 'hello', image: 'nginx', hosts: ['bad_host'] }, 'hosts.0', 'must be a host name'],
    [{ name: 'hello', image: 'nginx', hosts: ['a.example.com:80'] }, 'hosts.0', 'must be a host name'],
    [{ name: 'hello', image: 'nginx', hosts: ['a.com', 'A.com'] }, 'hosts.1', 'duplicates hosts.0'],
    [{ name: 'hello', image: 'nginx', hosts: ['127.0.0.1'] }, 'hosts.0', 'not an IP address or localhost'],
    [{ name: 'hello', image: 'nginx', hosts: ['LocalHost'] }, 'hosts.0', 'not an IP address or localhost'],
    [JSON.parse('{"name":"hello","image":"nginx","env":{"__proto__":{"A":"1"}}}'), 'env.__proto__', 'is not allowed'],
    [{ name: 'hello', image: 'nginx', healthCheck: { path: 'healthz' } }, 'healthCheck.path', 'must start with "/"'],
    [{ name: 'hello', image: 'nginx', healthCheck: { timeout: '1s' } }, 'healthCheck.path', 'is required'],
    [{ name: 'hello', image: 'nginx', healthCheck: { path: '/', timeout: '2m' } }, 'healthCheck.timeout', 'at most the startup timeout (1m)'],
    [{ name: 'hello', image: 'nginx', healthCheck: { path: '/', retries: 3 } }, 'healthCheck.retries', 'unknown field; known fields are path, timeout'],
    [{ name: 'hello', image: 'nginx', startupTimeout: '90' }, 'startupTimeout', 'missing unit'],
    [{ name: 'hello', image: 'nginx', startupTimeout: '-5s' }, 'startupTimeout', 'must not be negative'],
    [{ name: 'hello', image: 'nginx', startupTimeout: -5 }, 'startupTimeout', 'must not be negative'],
    [{ name: 'hello', image: 'nginx', startupTimeout: 0 }, 'startupTimeout', 'must be greater than 0'],
    [{ name: 'hello', image: 'nginx', startupTimeout: 0.0001 }, 'startupTimeout', 'whole number of milliseconds'],
    [{ name: 'hello', image: 'nginx', inactivityTimeout: '30 days' }, 'inactivityTimeout', 'unknown unit'],
    [{ name: 'hello', image: 'nginx', inactivityTimeout: '1000h' }, 'inactivityTimeout', 'maximum Node.js timer delay'],
    [{ name: 'hello', image: 'nginx', inactivityTimeout: true }, 'inactivityTimeout', 'must be a duration'],
    [{ name: 'hello', image: 'nginx', concurrency: 0 }, 'concurrency', 'must be at least 1'],
    [{ name: 'hello', image: 'nginx', concurrency: 5, maxConcurrency: 4 }, 'concurrency', 'must be at most maxConcurrency (4)'],
    [{ name: 'hello', image: 'nginx', maxConcurrency: 0 }, 'maxConcurrency', 'must be at least 1'],
    [{ name: 'hello', image: 'nginx', resources: { memory: '4Mi' } }, 'resources.memory', 'at least 6Mi'],
    [{ name: 'hello', image: 'nginx', resources: { memory: '512m' } }, 'resources.memory', 'ambiguous unit'],
    [{ name: 'hello', image: 'nginx', resources: { memory: 1.5e7 + 0.5 } }, 'resources.memory', 'whole number of bytes'],
    [{ name: 'hello', image: 'nginx', resources: { cpus: 0 } }, 'resources.cpus', 'must be at least 0.01'],
    [{ name: 'hello', image: 'nginx', resources: { gpus: 1 } }, 'resources.gpus', 'unknown field'],
    [{ name: 'hello', image: 'nginx', replicas: 3 }, 'replicas', 'unknown field; known fields are name, image'],
  ])('rejects %j naming the field', async (body, field, message) => {
    const errors = await fieldErrors(await send('POST', '/api/services', body));
    expect(Object.keys(errors)).toEqual([field]);
    expect(errors[field]).toContain(message);
    expect(backend.calls).toEqual([]);
  });

  it('reports every invalid field at once', async () => {
    const errors = await fieldErrors(await send('POST', '/api/services', { name: 'X', image: '', port: 0, extra: 1 }));
    expect(Object.keys(errors).sort()).toEqual(['extra', 'image', 'name', 'port']);
  });

  it.each([
    ['not JSON', '{"name":', 'application/json', 400, /is not valid JSON/],
    ['an empty body', '', 'application/json', 400, /is empty/],
    ['an array', '[]', 'application/json', 400, /must be a JSON object/],
    ['text/plain', '{}', 'text/plain', 415, /Content-Type must be application\/json, got "text\/plain"/],
  ])('rejects %s', async (_case, rawBody, contentType, status, detail) => {
    const response = await send('POST', '/api/services', undefined, { rawBody, contentType });
    expect(response.status).toBe(status);
    const problem = await problemOf(response);
    expect([problem.detail, ...(problem.errors ?? []).map((issue) => issue.message)].join('\n')).toMatch(detail);
  });

  it('rejects a missing Content-Type', async () => {
    const response = await app.request('/api/services', { method: 'POST', headers: LOCAL, body: new Blob(['{}']) });
    expect(response.status).toBe(415);
    expect((await problemOf(response)).detail).toMatch(/got none/);
  });

  it('rejects bodies over the limit', async () => {
    const small = createApiApp({ backend, defaults: DEFAULTS, token: TOKEN, logger: silentLogger(), maxBodyBytes: 100 });
    const response = await small.request('/api/services', {
      method: 'POST',
      headers: { ...LOCAL, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'hello', image: 'nginx', env: { A: 'x'.repeat(200) } }),
    });
    expect(response.status).toBe(413);
    const problem = await problemOf(response);
    expect(problem.code).toBe('body_too_large');
    expect(problem.detail).toBe('request body exceeds 100B');
  });
});

describe('GET /api/services', () => {
  it('lists services sorted by name', async () => {
    await send('POST', '/api/services', { name: 'web', image: 'nginx' });
    await send('POST', '/api/services', { name: 'api-v2', image: 'nginx' });
    const response = await send('GET', '/api/services');
    expect(response.status).toBe(200);
    const views = (await response.json()) as ServiceView[];
    expect(views.map((view) => view.name)).toEqual(['api-v2', 'web']);
  });

  it('returns one service or 404', async () => {
    await createHello();
    expect(((await (await send('GET', '/api/services/hello')).json()) as ServiceView).name).toBe('hello');

    const missing = await send('GET', '/api/services/nope');
    expect(missing.status).toBe(404);
    expect(await problemOf(missing)).toMatchObject({ code: 'service_not_found', detail: 'service "nope" not found' });
  });
});

describe('PUT /api/services/:name', () => {
  it('replaces all settings', async () => {
    await createHello({ minReplicas: 2, env: { A: '1' } });
    const later = new Date(NOW.getTime() + 60_000);
    app = createApiApp({ backend, defaults: DEFAULTS, token: TOKEN, logger: silentLogger(), now: () => later });

    const response = await send('PUT', '/api/services/hello', { image: 'nginx:2' });
    expect(response.status).toBe(200);
    const spec = backend.specs.get('hello');
    expect(spec).toMatchObject({ image: 'nginx:2', minReplicas: 0, env: {}, generation: 2 });
    expect(spec?.createdAt).toBe(NOW.toISOString());
    expect(spec?.updatedAt).toBe(later.toISOString());
  });

  it('accepts a fetched service back unchanged', async () => {
    await createHello({ healthCheck: { path: '/ready', timeout: '500ms' }, resources: { memory: 6_291_457 } });
    const fetched = await (await send('GET', '/api/services/hello')).json();

    const response = await send('PUT', '/api/services/hello', fetched);
    expect(response.status).toBe(200);
    expect(backend.calls).toEqual(['create hello']);
    expect(backend.specs.get('hello')?.generation).toBe(1);
  });

  it('rejects a mismatched name', async () => {
    await createHello();
    const errors = await fieldErrors(await send('PUT', '/api/services/hello', { name: 'other', image: 'nginx' }));
    expect(errors).toEqual({ name: 'must match the name in the URL (hello)' });
  });

  it('returns 404 for a missing service', async () => {
    const response = await send('PUT', '/api/services/nope', { image: 'nginx' });
    expect(response.status).toBe(404);
    expect(backend.calls).toEqual([]);
  });
});

describe('PATCH /api/services/:name', () => {
  it('merges changes into settings', async () => {
    await createHello({ env: { A: '1', B: '2' }, hosts: ['a.example.com'], resources: { memory: '1Gi', cpus: 1 } });
    const response = await send(
      'PATCH',
      '/api/services/hello',
      { env: { B: null, C: '3' }, resources: { cpus: 0.5 }, inactivityTimeout: '5m' },
      { contentType: 'application/merge-patch+json' },
    );
    expect(response.status).toBe(200);
    expect(backend.specs.get('hello')).toMatchObject({
      image: 'registry.local:5000/team/hello:1.0',
      env: { A: '1', C: '3' },
      hosts: ['a.example.com'],
      resources: { memoryBytes: 1024 ** 3, cpus: 0.5 },
      inactivityTimeoutMs: 300_000,
      generation: 2,
    });
  });

  it('resets a field with null', async () => {
    await createHello({ startupTimeout: '2m', command: ['serve'] });
    await send('PATCH', '/api/services/hello', { startupTimeout: null, command: null });
    const spec = backend.specs.get('hello');
    expect(spec?.startupTimeoutMs).toBeUndefined();
    expect(spec?.command).toBeUndefined();
  });

  it('validates the merged result', async () => {
    await createHello({ minReplicas: 2, maxReplicas: 4 });
    const errors = await fieldErrors(await send('PATCH', '/api/services/hello', { maxReplicas: 1 }));
    expect(errors).toEqual({ maxReplicas: 'must be at least minReplicas (2)' });
    expect(backend.specs.get('hello')?.maxReplicas).toBe(4);
  });

  it('rejects a patch that is not an object', async () => {
    await createHello();
    const errors = await fieldErrors(await send('PATCH', '/api/services/hello', ['image']));
    expect(errors.body).toMatch(/must be a JSON object/);
  });

  it('rejects a wrong Content-Type with Accept-Patch', async () => {
    await createHello();
    const response = await send('PATCH', '/api/services/hello', { port: 1 }, { contentType: 'application/json-patch+json' });
    expect(response.status).toBe(415);
    expect(response.headers.get('accept-patch')).toBe('application/merge-patch+json, application/json');
  });
});

describe('DELETE /api/services/:name', () => {
  it('deletes and returns 204', async () => {
    await createHello();
    const response = await send('DELETE', '/api/services/hello');
    expect(response.status).toBe(204);
    expect(await response.text()).toBe('');
    expect(backend.specs.has('hello')).toBe(false);
  });

  it('returns 404 for a missing service', async () => {
    const response = await send('DELETE', '/api/services/nope');
    expect(response.status).toBe(404);
    expect(backend.calls).toEqual([]);
  });
});

describe('api routing', () => {
  it('answers health without a token', async () => {
    const response = await app.request('/api/health', { headers: REMOTE });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('documents problem types', async () => {
    const response = await app.request('/api/problems/service_exists');
    expect(await response.json()).toEqual({
      type: '/api/problems/service_exists',
      code: 'service_exists',
      status: 409,
      title: 'Service already exists',
    });
    expect((await app.request('/api/problems/nope')).status).toBe(404);
  });

  it.each([
    ['GET', '/api/unknown', 404, undefined],
    ['GET', '/elsewhere', 404, undefined],
    ['DELETE', '/api/services', 405, 'GET, HEAD, POST'],
    ['POST', '/api/services/hello', 405, 'GET, HEAD, PUT, PATCH, DELETE'],
    ['POST', '/api/health', 405, 'GET, HEAD'],
  ])('answers %s %s with %d', async (method, path, status, allow) => {
    const response = await send(method, path);
    expect(response.status).toBe(status);
    expect(response.headers.get('allow') ?? undefined).toBe(allow);
    expect((await problemOf(response)).status).toBe(status);
  });
});

describe('api authentication', () => {
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  it.each([
    ['loopback header', { 'x-luma-client-ip': '127.0.0.1' }, 200],
    ['other loopback IP', { 'x-luma-client-ip': '127.8.9.10' }, 200],
    ['IPv6 loopback', { 'x-luma-client-ip': '::1' }, 200],
    ['bracketed IPv6 loopback', { 'x-luma-client-ip': '[::1]' }, 200],
    ['IPv4-mapped loopback', { 'x-luma-client-ip': '::ffff:127.0.0.1' }, 200],
    ['remote without token', REMOTE, 401],
    ['remote with token', { ...REMOTE, ...bearer(TOKEN) }, 200],
    ['remote with wrong token', { ...REMOTE, ...bearer(`${TOKEN}x`) }, 401],
    ['remote with lower-case scheme', { ...REMOTE, authorization: `bearer ${TOKEN}` }, 200],
    ['remote with Basic scheme', { ...REMOTE, authorization: `Basic ${TOKEN}` }, 401],
    ['invalid header value', { 'x-luma-client-ip': 'localhost' }, 401],
    ['appended header values', { 'x-luma-client-ip': '127.0.0.1, 203.0.113.7' }, 401],
    ['no header and no socket', {}, 401],
  ])('%s gets %d', async (_case, headers, status) => {
    const response = await app.request('/api/services', { headers });
    expect(response.status).toBe(status);
    if (status === 401) {
      expect(response.headers.get('www-authenticate')).toBe('Bearer realm="luma"');
      expect((await problemOf(response)).code).toBe('unauthorized');
    }
  });

  it.each([
    ['loopback socket', '127.0.0.1', 200],
    ['remote socket', '198.51.100.2', 401],
    ['unix socket', undefined, 200],
  ])('trusts a %s without header', async (_case, remoteAddress, status) => {
    const env = { incoming: { socket: { remoteAddress } } };
    const response = await app.request('/api/services', {}, env as never);
    expect(response.status).toBe(status);
  });

  it('reads the socket through node-server', async () => {
    const directory = await mkdtemp(path.join(tmpdir(), 'luma-h3-api-'));
    const socketPath = path.join(directory, 'api.sock');
    const listenings = [{ host: '127.0.0.1', port: 0 }, { path: socketPath }];
    try {
      for (const listening of listenings) {
        const server = createAdaptorServer({ fetch: app.fetch });
        await new Promise<void>((resolve) => server.listen(listening, resolve));
        const address = server.address();
        const target =
          typeof address === 'object' && address !== null ? { host: '127.0.0.1', port: address.port } : { socketPath };
        const status = await new Promise<number | undefined>((resolve, reject) => {
          request({ ...target, path: '/api/services' }, (response) => {
            response.resume();
            resolve(response.statusCode);
          })
            .on('error', reject)
            .end();
        });
        await new Promise((resolve) => server.close(resolve));
        expect(status, JSON.stringify(listening)).toBe(200);
      }
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('lets the header override the socket', async () => {
    const env = { incoming: { socket: { remoteAddress: '127.0.0.1' } } };
    const response = await app.request('/api/services', { headers: REMOTE }, env as never);
    expect(response.status).toBe(401);
  });

  it('uses the configured client header', async () => {
    const custom = createApiApp({ backend, defaults: DEFAULTS, token: TOKEN, logger: silentLogger(), trustedClientHeader: 'x-real-ip' });
    expect((await custom.request('/api/services', { headers: { 'x-real-ip': '127.0.0.1' } })).status).toBe(200);
    expect((await custom.request('/api/services', { headers: LOCAL })).status).toBe(401);
  });

  it('rejects an empty token', () => {
    expect(() => createApiApp({ backend, defaults: DEFAULTS, token: '', logger: silentLogger() })).toThrow(/must not be empty/);
  });
});

describe('api error mapping', () => {
  function capturingApp(): { app: ApiApp; lines: string[] } {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString());
        callback();
      },
    });
    const logger = createLogger('debug', destination);
    return { app: createApiApp({ backend, defaults: DEFAULTS, token: TOKEN, logger, now: () => NOW }), lines };
  }

  it('hides internals of unknown errors', async () => {
    const { app: logged, lines } = capturingApp();
    backend.failWith = new TypeError('cannot read properties of undefined (reading "secretInternalField")');
    const response = await logged.request('/api/services', {
      method: 'POST',
      headers: { ...REMOTE, authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'hello', image: 'nginx' }),
    });

    expect(response.status).toBe(500);
    const text = await response.text();
    expect(text).not.toContain('secretInternalField');
    expect(text).not.toContain('TypeError');
    expect(JSON.parse(text)).toMatchObject({ code: 'internal_error', status: 500, title: 'Internal server error' });

    const errors = lines.filter((line) => line.includes('"level":50'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('secretInternalField');
    expect(lines.join('')).not.toContain(TOKEN);
  });

  it.each([
    ['docker_unavailable', 503, '5'],
    ['caddy_unavailable', 503, '5'],
    ['host_in_use', 409, null],
    ['store_write_failed', 500, null],
    ['image_not_found', 422, null],
  ] as const)('maps %s to %d', async (code, status, retryAfter) => {
    backend.failWith = new LumaError(code, `failure ${code}`);
    const response = await createHello();
    expect(response.status).toBe(status);
    expect(response.headers.get('retry-after')).toBe(retryAfter);
    expect(await problemOf(response)).toMatchObject({ code, detail: `failure ${code}` });
  });

  it('derives Retry-After from retryAt', async () => {
    backend.failWith = new LumaError('wake_backoff', 'backing off', {
      details: { retryAt: new Date(Date.now() + 30_000).toISOString() },
    });
    const response = await createHello();
    const seconds = Number(response.headers.get('retry-after'));
    expect(seconds).toBeGreaterThanOrEqual(29);
    expect(seconds).toBeLessThanOrEqual(30);
  });
});
