/**
 * Concurrent writes to one service through the REST API: each PUT or PATCH must apply to the
 * settings that the write before it stored, never to a copy read before that write finished.
 */
import { describe, expect, it } from 'vitest';

import { createApiApp } from '../../src/api/app.js';
import type { ServiceBackend } from '../../src/api/backend.js';
import { silentLogger } from '../../src/log.js';
import type { ServiceSpec } from '../../src/model.js';
import { DEFAULTS, STATUS } from '../support/api-fixtures.js';


/** Returns a backend whose updates take `delayMs`, like a store write with fsync. */
function slowBackend(delayMs: number): ServiceBackend & { specs: Map<string, ServiceSpec> } {
  const specs = new Map<string, ServiceSpec>();
  return {
    specs,
    list: () => [...specs.values()].map((spec) => ({ spec, status: STATUS })),
    get: (name) => {
      const spec = specs.get(name);
      return spec === undefined ? undefined : { spec, status: STATUS };
    },
    create: async (spec) => {
      specs.set(spec.name, spec);
      return { spec, status: STATUS };
    },
    update: async (name, spec) => {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      specs.set(name, spec);
      return { spec, status: STATUS };
    },
    delete: async (name) => {
      specs.delete(name);
    },
  };
}

function send(app: ReturnType<typeof createApiApp>, method: string, path: string, body: unknown, contentType = 'application/json') {
  return app.request(path, {
    method,
    headers: { 'content-type': contentType, 'x-luma-client-ip': '127.0.0.1' },
    body: JSON.stringify(body),
  });
}

describe('concurrent service writes', () => {
  it.each([
    { method: 'PATCH', contentType: 'application/merge-patch+json' },
    { method: 'PUT', contentType: 'application/json' },
  ])('$method writes apply in order', async ({ method, contentType }) => {
    const backend = slowBackend(30);
    const app = createApiApp({ backend, defaults: DEFAULTS, token: 'test-token-0123456789abcdef', logger: silentLogger() });
    expect((await send(app, 'POST', '/api/services', { name: 'svc', image: 'app:1' })).status).toBe(201);

    const bodies = Array.from({ length: 5 }, (_, i) =>
      method === 'PATCH' ? { env: { [`KEY_${i}`]: String(i) } } : { image: 'app:1', env: { KEY: String(i) } },
    );
    const responses = await Promise.all(bodies.map((body) => send(app, method, '/api/services/svc', body, contentType)));

    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const stored = backend.specs.get('svc');
    expect(stored?.generation).toBe(6);
    if (method === 'PATCH') expect(Object.keys(stored?.env ?? {}).sort()).toEqual(['KEY_0', 'KEY_1', 'KEY_2', 'KEY_3', 'KEY_4']);
    const generations = await Promise.all(responses.map(async (r) => ((await r.json()) as { generation: number }).generation));
    expect(generations.sort()).toEqual([2, 3, 4, 5, 6]);
  });
});
