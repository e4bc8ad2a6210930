/**
 * Domain errors. Each carries a stable `code` that callers branch on, the offending values in
 * `details`, and the underlying `cause`. The API maps them to problem+json in one place
 * (src/api/problem.ts) and the wake-up handler to short plain-text replies with `Retry-After`.
 */

export type ErrorCode =
  | 'invalid_input'
  | 'invalid_setting'
  | 'service_not_found'
  | 'service_exists'
  | 'host_in_use'
  | 'unauthorized'
  | 'image_not_found'
  | 'image_pull_failed'
  | 'replica_exited'
  | 'startup_timeout'
  | 'wake_queue_full'
  | 'wake_backoff'
  | 'service_deleted'
  | 'shutting_down'
  | 'docker_unavailable'
  | 'caddy_unavailable'
  | 'caddy_rejected'
  | 'store_corrupt'
  | 'store_write_failed'
  | 'upstream_failed'
  | 'body_too_large';

/** One invalid field of a request body or setting: a dotted path and what is wrong with it. */
export interface FieldIssue {
  field: string;
  message: string;
}

export class LumaError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LumaError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** Request input that failed validation; `issues` names every invalid field. */
export class ValidationError extends LumaError {
  readonly issues: FieldIssue[];

  constructor(issues: FieldIssue[], message = 'request body is invalid') {
    super('invalid_input', message, { details: { issues } });
    this.name = 'ValidationError';
    this.issues = issues;
  }
}

/** A setting (flag or environment variable) with a bad value; start-up stops on it. */
export class SettingError extends LumaError {
  constructor(setting: string, value: unknown, reason: string) {
    super('invalid_setting', `invalid value ${JSON.stringify(value)} for ${setting}: ${reason}`, {
      details: { setting, value },
    });
    this.name = 'SettingError';
  }
}

export function isLumaError(error: unknown, code?: ErrorCode): error is LumaError {
  return error instanceof LumaError && (code === undefined || error.code === code);
}

/** Returns a one-line description of any thrown value, for logs and plain-text replies. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
