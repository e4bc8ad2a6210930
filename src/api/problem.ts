import { isLumaError, ValidationError, type ErrorCode, type FieldIssue } from '../errors.js';

/**
 * The one mapping from errors to problem+json responses (RFC 9457). Each problem carries a
 * stable `code`; its `type` is `/api/problems/<code>`, which the API serves as documentation.
 */

/** Problems of the HTTP layer that are not domain errors. */
export type HttpProblemCode = 'not_found' | 'method_not_allowed' | 'unsupported_media_type' | 'internal_error';

export type ProblemCode = ErrorCode | HttpProblemCode;

export interface ProblemType {
  status: number;
  title: string;
  /** Seconds for Retry-After, for temporary failures. */
  retryAfterSeconds?: number;
}

export const PROBLEM_TYPES: { readonly [C in ProblemCode]: ProblemType } = {
  invalid_input: { status: 400, title: 'Invalid input' },
  invalid_setting: { status: 400, title: 'Invalid setting' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  service_not_found: { status: 404, title: 'Service not found' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  service_exists: { status: 409, title: 'Service already exists' },
  host_in_use: { status: 409, title: 'Host name already in use' },
  service_deleted: { status: 409, title: 'Service was deleted' },
  body_too_large: { status: 413, title: 'Request body too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  image_not_found: { status: 422, title: 'Image not found' },
  internal_error: { status: 500, title: 'Internal server error' },
  store_corrupt: { status: 500, title: 'Service store is corrupt' },
  store_write_failed: { status: 500, title: 'Service store write failed' },
  image_pull_failed: { status: 502, title: 'Image pull failed' },
  replica_exited: { status: 502, title: 'Replica exited' },
  upstream_failed: { status: 502, title: 'Upstream failed' },
  caddy_rejected: { status: 502, title: 'Caddy rejected the configuration' },
  docker_unavailable: { status: 503, title: 'Docker engine unavailable', retryAfterSeconds: 5 },
  caddy_unavailable: { status: 503, title: 'Caddy unavailable', retryAfterSeconds: 5 },
  shutting_down: { status: 503, title: 'Luma is shutting down', retryAfterSeconds: 5 },
  wake_queue_full: { status: 503, title: 'Wake queue full', retryAfterSeconds: 1 },
  wake_backoff: { status: 503, title: 'Service start is backing off', retryAfterSeconds: 5 },
  startup_timeout: { status: 504, title: 'Replica startup timed out' },
};

/** An error of the HTTP layer, thrown by the API's own handlers. */
export class HttpProblemError extends Error {
  readonly code: HttpProblemCode;
  readonly headers: Record<string, string>;

  constructor(code: HttpProblemCode, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpProblemError';
    this.code = code;
    this.headers = headers;
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: ProblemCode;
  errors?: FieldIssue[];
}

export interface ProblemReply {
  problem: Problem;
  headers: Record<string, string>;
  /** True for errors that are neither LumaError nor HttpProblemError: bugs, to be logged with their stack. */
  unexpected: boolean;
}

/**
 * Maps any thrown value to a problem. Domain and HTTP errors keep their message as `detail`,
 * because those messages are written for API users. Anything else becomes a 500 whose body
 * contains no internals.
 */
export function problemFromError(error: unknown, instance: string): ProblemReply {
  if (error instanceof HttpProblemError) {
    return { problem: buildProblem(error.code, error.message, instance), headers: { ...error.headers }, unexpected: false };
  }
  if (!isLumaError(error)) {
    const detail = 'the request failed because of an internal error; the controller log has the details';
    return { problem: buildProblem('internal_error', detail, instance), headers: {}, unexpected: true };
  }

  const problem = buildProblem(error.code, error.message, instance);
  if (error instanceof ValidationError) problem.errors = error.issues;

  const headers: Record<string, string> = {};
  const retryAfter = retryAfterSeconds(error.code, error.details);
  if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
  if (error.code === 'unauthorized') headers['www-authenticate'] = 'Bearer realm="luma"';
  return { problem, headers, unexpected: false };
}

export function buildProblem(code: ProblemCode, detail: string, instance: string): Problem {
  const type = PROBLEM_TYPES[code];
  return { type: `/api/problems/${code}`, title: type.title, status: type.status, detail, instance, code };
}

export function isProblemCode(code: string): code is ProblemCode {
  return Object.hasOwn(PROBLEM_TYPES, code);
}

/**
 * Returns Retry-After seconds: from `details.retryAt` (an ISO time) when the error has one,
 * else the code's default, else undefined.
 */
function retryAfterSeconds(code: ErrorCode, details: Record<string, unknown>): number | undefined {
  const retryAt = details.retryAt;
  if (typeof retryAt === 'string' && !Number.isNaN(Date.parse(retryAt))) {
    return Math.max(1, Math.ceil((Date.parse(retryAt) - Date.now()) / 1000));
  }
  return PROBLEM_TYPES[code].retryAfterSeconds;
}
