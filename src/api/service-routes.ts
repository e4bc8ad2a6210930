import type { Context, Hono } from 'hono';

import { LumaError, ValidationError } from '../errors.js';
import type { ServiceSpec } from '../model.js';
import type { ApiBindings } from './auth.js';
import type { ServiceBackend, ServiceDefaults, ServiceStatus } from './backend.js';
import { applyMergePatch } from './merge-patch.js';
import { HttpProblemError } from './problem.js';
import {
  buildServiceSpec,
  haveSameSettings,
  toServiceView,
  toSettingsDocument,
  type ServiceView,
} from './service-document.js';
import { parseServiceInput } from './service-input.js';

export interface ServiceRoutesOptions {
  backend: ServiceBackend;
  defaults: ServiceDefaults;
  now: () => Date;
}

type ApiContext = Context<{ Bindings: ApiBindings }>;

const JSON_TYPES = ['application/json'] as const;
const PATCH_TYPES = ['application/merge-patch+json', 'application/json'] as const;

/**
 * Adds the /api/services routes. PUT replaces all settings (omitted fields return to their
 * defaults) and PATCH takes a JSON merge patch (RFC 7396) of the settings document, so null
 * resets a field. Neither creates a service. A PUT or PATCH that changes nothing returns the
 * service without calling the backend and keeps its generation.
 */
export function addServiceRoutes(app: Hono<{ Bindings: ApiBindings }>, options: ServiceRoutesOptions): void {
  const { backend, defaults, now } = options;
  const view = (entry: { spec: ServiceSpec; status: ServiceStatus }): ServiceView =>
    toServiceView(entry.spec, entry.status, defaults);
  const serialise = perServiceLock();

  app.get('/api/services', (c) => {
    const services = backend.list().sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    return c.json(services.map(view));
  });

  app.post('/api/services', async (c) => {
    const input = parseServiceInput(await readJsonBody(c, JSON_TYPES));
    if (input.name == null) throw new ValidationError([{ field: 'name', message: 'is required' }]);

    const spec = buildServiceSpec(input, { name: input.name, defaults, now: now() });
    const created = await backend.create(spec);
    return c.json(view(created), 201, { location: `/api/services/${spec.name}` });
  });

  app.get('/api/services/:name', (c) => c.json(view(findService(backend, c.req.param('name')))));

  app.put('/api/services/:name', async (c) => {
    const name = c.req.param('name');
    findService(backend, name);
    const input = parseServiceInput(await readJsonBody(c, JSON_TYPES));

    const updated = await serialise(name, async () => {
      const current = findService(backend, name);
      const spec = buildServiceSpec(input, { name, defaults, previous: current.spec, now: now() });
      return replaceSpec(backend, current, spec);
    });
    return c.json(view(updated));
  });

  app.patch('/api/services/:name', async (c) => {
    const name = c.req.param('name');
    findService(backend, name);
    const patch = await readJsonBody(c, PATCH_TYPES);
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
      throw new ValidationError([{ field: 'body', message: 'must be a JSON object (a JSON merge patch of the service settings)' }]);
    }

    const updated = await serialise(name, async () => {
      const latest = findService(backend, name);
      const input = parseServiceInput(applyMergePatch(toSettingsDocument(latest.spec), patch));
      const spec = buildServiceSpec(input, { name, defaults, previous: latest.spec, now: now() });
      return replaceSpec(backend, latest, spec);
    });
    return c.json(view(updated));
  });

  app.delete('/api/services/:name', async (c) => {
    const name = c.req.param('name');
    findService(backend, name);
    await backend.delete(name);
    return c.body(null, 204);
  });
}

/**
 * Runs the read-modify-write of each service one at a time, so that of two concurrent PUT or
 * PATCH requests the second applies to the settings the first stored.
 */
function perServiceLock(): <T>(name: string, task: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>();
  return (name, task) => {
    const run = (tails.get(name) ?? Promise.resolve()).then(task, task);
    const tail = run.catch(() => undefined);
    tails.set(name, tail);
    void tail.then(() => {
      if (tails.get(name) === tail) tails.delete(name);
    });
    return run;
  };
}

function findService(backend: ServiceBackend, name: string): { spec: ServiceSpec; status: ServiceStatus } {
  const entry = backend.get(name);
  if (entry === undefined) {
    throw new LumaError('service_not_found', `service ${JSON.stringify(name)} not found`, { details: { service: name } });
  }
  return entry;
}

async function replaceSpec(
  backend: ServiceBackend,
  current: { spec: ServiceSpec; status: ServiceStatus },
  spec: ServiceSpec,
): Promise<{ spec: ServiceSpec; status: ServiceStatus }> {
  if (haveSameSettings(spec, current.spec)) return current;
  return backend.update(spec.name, spec);
}

/**
 * Reads the request body as JSON. Throws HttpProblemError `unsupported_media_type` for another
 * Content-Type and ValidationError for an empty or malformed body.
 */
async function readJsonBody(c: ApiContext, accepted: readonly string[]): Promise<unknown> {
  const contentType = c.req.header('content-type');
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  if (mediaType === undefined || !accepted.includes(mediaType)) {
    const headers: Record<string, string> = c.req.method === 'PATCH' ? { 'accept-patch': accepted.join(', ') } : {};
    throw new HttpProblemError(
      'unsupported_media_type',
      `Content-Type must be ${accepted.join(' or ')}, got ${contentType === undefined ? 'none' : JSON.stringify(contentType)}`,
      headers,
    );
  }

  const text = await c.req.text();
  if (text.trim() === '') {
    throw new ValidationError([{ field: 'body', message: 'is empty; send a JSON object' }], 'request body is empty');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ValidationError([{ field: 'body', message: `is not valid JSON: ${reason}` }], 'request body is not valid JSON');
  }
}
