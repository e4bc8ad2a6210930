import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';

import { formatByteSize } from '../config/byte-size.js';
import { LumaError } from '../errors.js';
import type { Logger } from '../log.js';
import { requireTokenUnlessLocal, type ApiBindings } from './auth.js';
import type { ServiceBackend, ServiceDefaults } from './backend.js';
import {
  buildProblem,
  HttpProblemError,
  isProblemCode,
  PROBLEM_TYPES,
  problemFromError,
  type Problem,
} from './problem.js';
import { addServiceRoutes } from './service-routes.js';

export interface ApiAppOptions {
  backend: ServiceBackend;
  defaults: ServiceDefaults;
  /** Bearer token required from clients that are not local. */
  token: string;
  logger: Logger;
  /** Header in which Caddy passes the client IP. */
  trustedClientHeader?: string;
  /** Maximum request body; larger requests get 413. */
  maxBodyBytes?: number;
  /** Clock for createdAt and updatedAt. */
  now?: () => Date;
  /** Prometheus text exposition for `GET /api/metrics`; the route is absent when unset. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
}

export type ApiApp = Hono<{ Bindings: ApiBindings }>;

export const DEFAULT_MAX_API_BODY_BYTES = 1024 * 1024;

/**
 * Creates the Hono app of the controller's private API, which Caddy serves under `/api`.
 *
 * Routes: GET/POST /api/services, GET/PUT/PATCH/DELETE /api/services/:name, GET /api/health and
 * GET /api/problems/:code (documentation of problem types). Everything else gets a 404 or 405
 * problem. /api/services requires a bearer token unless the client is local (see auth.ts);
 * health and problem documentation are public because they reveal no service data.
 */
export function createApiApp(options: ApiAppOptions): ApiApp {
  if (options.token === '') throw new LumaError('invalid_setting', 'the API token must not be empty');

  const logger = options.logger.child({ component: 'api' });
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_API_BODY_BYTES;
  const app: ApiApp = new Hono<{ Bindings: ApiBindings }>({ strict: false });

  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    const durationMs = Math.round(performance.now() - started);
    logger.debug({ method: c.req.method, path: c.req.path, status: c.res.status, durationMs }, 'handled api request');
  });

  app.onError((error, c) => {
    const reply = problemFromError(error, c.req.path);
    const fields = { method: c.req.method, path: c.req.path, status: reply.problem.status };
    if (reply.unexpected) logger.error({ ...fields, err: error }, 'failed to handle api request');
    else if (reply.problem.status >= 500) logger.warn({ ...fields, err: error, code: reply.problem.code }, 'api request failed');
    else logger.debug({ ...fields, code: reply.problem.code, detail: reply.problem.detail }, 'rejected api request');
    return problemResponse(c, reply.problem, reply.headers);
  });

  app.notFound((c) => problemResponse(c, buildProblem('not_found', `no API route for ${c.req.path}`, c.req.path)));

  app.get('/api/health', (c) => c.json({ status: 'ok' }));
  app.get('/api/problems/:code', (c) => {
    const code = c.req.param('code');
    if (!isProblemCode(code)) throw new HttpProblemError('not_found', `unknown problem type ${JSON.stringify(code)}`);
    return c.json({ type: `/api/problems/${code}`, code, ...PROBLEM_TYPES[code] });
  });

  const authenticate = requireTokenUnlessLocal({
    token: options.token,
    clientHeader: options.trustedClientHeader ?? 'x-luma-client-ip',
  });
  // In Hono 4, `/api/services/*` also matches `/api/services` itself.
  app.use('/api/services/*', authenticate);

  const metrics = options.metrics;
  if (metrics !== undefined) {
    app.use('/api/metrics', authenticate);
    app.get('/api/metrics', async (c) => {
      const { contentType, body } = await metrics();
      return c.body(body, 200, { 'Content-Type': contentType });
    });
    app.all('/api/metrics', rejectMethod('GET, HEAD'));
  }

  const limitBody = bodyLimit({
    maxSize: maxBodyBytes,
    onError: () => {
      throw new LumaError('body_too_large', `request body exceeds ${formatByteSize(maxBodyBytes)}`, {
        details: { maxBodyBytes },
      });
    },
  });
  app.on(['POST', 'PUT', 'PATCH'], '/api/services/*', limitBody);

  addServiceRoutes(app, { backend: options.backend, defaults: options.defaults, now: options.now ?? (() => new Date()) });

  app.all('/api/services', rejectMethod('GET, HEAD, POST'));
  app.all('/api/services/:name', rejectMethod('GET, HEAD, PUT, PATCH, DELETE'));
  app.all('/api/health', rejectMethod('GET, HEAD'));
  app.all('/api/problems/:code', rejectMethod('GET, HEAD'));
  return app;
}

function rejectMethod(allow: string) {
  return (c: Context): never => {
    throw new HttpProblemError('method_not_allowed', `${c.req.method} is not allowed on ${c.req.path}; use ${allow}`, {
      allow,
    });
  };
}

function problemResponse(c: Context, problem: Problem, headers: Record<string, string> = {}): Response {
  return c.body(JSON.stringify(problem), problem.status as 400, {
    ...headers,
    'content-type': 'application/problem+json',
  });
}
