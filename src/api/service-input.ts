import { isIP } from 'node:net';
import { z } from 'zod';

import { isHostName } from '../config/addresses.js';
import { ByteSizeSyntaxError, parseByteSize } from '../config/byte-size.js';
import { DurationSyntaxError, formatDuration, MAX_TIMER_MS, parseDuration } from '../config/duration.js';
import { ValidationError, type FieldIssue } from '../errors.js';
import type { Millis } from '../model.js';
import { findImageReferenceProblem } from './image-reference.js';

/**
 * Request body of POST and PUT /api/services, and the result of a PATCH merged into a service.
 *
 * Optional fields may be omitted or null; both mean "not set", so the global setting applies.
 * Durations are Go-style strings (`90s`, `1m30s`) or numbers of seconds. Memory is a size
 * string (`512Mi`, `1GiB`) or a number of bytes. The read-only fields of responses (`url`,
 * `status`, `effective`, `createdAt`, `updatedAt`, `generation`) are accepted and ignored, so
 * that a fetched service can be edited and sent back. Any other unknown field is rejected.
 *
 * Reserved service names: `api`, because Caddy routes `/api/` to the controller, and `luma` and
 * `luma-*`, kept for Luma's own use.
 */

/** Docker's minimum memory limit: Docker 20.10 rejects less at container create ("Minimum memory limit allowed is 6MB"). */
export const MIN_MEMORY_BYTES = 6 * 1024 * 1024;

/**
 * Docker's minimum CPU limit. With less, Docker 20.10 creates the container but runc fails to
 * start it because the CFS quota is too small.
 * NOTE: more CPUs than the host has pass this check, and Docker rejects them at container create.
 */
export const MIN_CPUS = 0.01;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

export const serviceNameSchema = z.string().check((ctx) => {
  const name = ctx.value;
  if (!DNS_LABEL.test(name)) {
    addIssue(ctx, 'must be a DNS label: 1-63 lower-case letters, digits and "-", starting and ending with a letter or digit');
  } else if (name === 'api' || name === 'luma' || name.startsWith('luma-')) {
    addIssue(ctx, `${JSON.stringify(name)} is reserved; api, luma and names starting with luma- cannot be used`);
  }
});

const imageSchema = z.string().check((ctx) => {
  const problem = findImageReferenceProblem(ctx.value);
  if (problem !== undefined) addIssue(ctx, problem);
});

/**
 * Rejects an `env` key named `__proto__`. JSON.parse keeps it as an own property, but copying the
 * object into a record sets the prototype instead, so the variable would vanish without a word.
 */
const envObjectSchema = z.unknown().check((ctx) => {
  const value = ctx.value;
  if (value !== null && typeof value === 'object' && Object.prototype.hasOwnProperty.call(value, '__proto__')) {
    addIssue(ctx, 'is not allowed as an environment variable name', ['__proto__']);
  }
});

const envSchema = z.record(z.string(), z.string()).check((ctx) => {
  for (const [key, value] of Object.entries(ctx.value)) {
    if (!ENV_NAME.test(key)) {
      addIssue(ctx, 'must be a POSIX environment variable name: letters, digits and "_", not starting with a digit', [key]);
    } else if (key === 'PORT') {
      addIssue(ctx, 'is set by Luma from the port field; set port instead', [key]);
    } else if (value.includes('\u0000')) {
      addIssue(ctx, 'must not contain NUL characters', [key]);
    }
  }
});

const commandSchema = z
  .array(z.string().refine((argument) => !argument.includes('\u0000'), 'must not contain NUL characters'))
  .min(1, 'must contain at least one argument; omit command or set it to null to use the image CMD');

const hostsSchema = z.array(z.string()).transform((hosts, ctx) => {
  const seen = new Map<string, number>();
  return hosts.map((host, index) => {
    const lower = host.toLowerCase();
    if (!isHostName(lower)) {
      addIssue(ctx, 'must be a host name such as app.example.com: labels of letters, digits and inner "-", without port or trailing dot', [index]);
    } else if (isIP(lower) !== 0 || lower === 'localhost') {
      // Host routes come before path routes, so such a host would capture every other service's
      // path route for clients that reach Luma by that address.
      addIssue(ctx, 'must be a name of this service, not an IP address or localhost, which reach every service', [index]);
    }
    const earlier = seen.get(lower);
    if (earlier !== undefined) addIssue(ctx, `duplicates hosts.${earlier}`, [index]);
    seen.set(lower, index);
    return lower;
  });
});

const healthPathSchema = z.string().check((ctx) => {
  if (!ctx.value.startsWith('/')) addIssue(ctx, 'must start with "/", for example /healthz');
  else if (CONTROL_CHARACTERS.test(ctx.value) || ctx.value.includes(' ')) addIssue(ctx, 'must not contain spaces or control characters');
});

/** Returns the schema of a duration field: a Go-style string or a number of seconds, read as whole milliseconds in (0, MAX_TIMER_MS]. */
function durationSchema() {
  return z
    .unknown()
    .transform((value, ctx): Millis | undefined => {
      if (value === null || value === undefined) return undefined;
      const ms = toMillis(value, (message) => addIssue(ctx, message));
      if (ms === undefined) return undefined;
      if (ms <= 0) addIssue(ctx, 'must be greater than 0');
      else if (!Number.isInteger(ms)) addIssue(ctx, 'must be a whole number of milliseconds');
      else if (ms > MAX_TIMER_MS) addIssue(ctx, `must be at most ${formatDuration(MAX_TIMER_MS)}, the maximum Node.js timer delay`);
      return ms;
    })
    .optional();
}

function toMillis(value: unknown, report: (message: string) => void): Millis | undefined {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) report('must be a finite number of seconds');
    else if (value < 0) report('must not be negative');
    else return value * 1000;
    return undefined;
  }
  if (typeof value !== 'string') {
    report('must be a duration such as "90s" or "1m30s", or a number of seconds');
    return undefined;
  }
  try {
    return parseDuration(value);
  } catch (error) {
    if (!(error instanceof DurationSyntaxError)) throw error;
    report(error.message);
    return undefined;
  }
}

const memorySchema = z
  .unknown()
  .transform((value, ctx): number | undefined => {
    if (value === null || value === undefined) return undefined;
    let bytes: number;
    if (typeof value === 'number') {
      bytes = value;
      if (!Number.isSafeInteger(bytes)) addIssue(ctx, 'must be a whole number of bytes');
    } else if (typeof value === 'string') {
      try {
        bytes = parseByteSize(value);
      } catch (error) {
        if (!(error instanceof ByteSizeSyntaxError)) throw error;
        addIssue(ctx, error.message);
        return undefined;
      }
    } else {
      addIssue(ctx, 'must be a size such as "512Mi" or "1GiB", or a number of bytes');
      return undefined;
    }
    if (bytes < MIN_MEMORY_BYTES) addIssue(ctx, 'must be at least 6Mi (6291456 bytes), the minimum Docker accepts');
    return bytes;
  })
  .optional();

const count = (min: number) => z.int().min(min).nullish();

/** Read-only fields of responses; see the module comment. */
const ignored = z.unknown().optional();

export const serviceInputSchema = z.strictObject({
  name: serviceNameSchema.nullish(),
  image: imageSchema,
  port: z.int().min(1).max(65535).nullish(),
  minReplicas: count(0),
  maxReplicas: count(1),
  env: envObjectSchema.pipe(envSchema.nullish()).optional(),
  command: commandSchema.nullish(),
  hosts: hostsSchema.nullish(),
  healthCheck: z.strictObject({ path: healthPathSchema, timeout: durationSchema() }).nullish(),
  startupTimeout: durationSchema(),
  inactivityTimeout: durationSchema(),
  concurrency: count(1),
  maxConcurrency: count(1),
  resources: z
    .strictObject({
      memory: memorySchema,
      cpus: z.number().min(MIN_CPUS, `must be at least ${MIN_CPUS}, the minimum Docker accepts`).nullish(),
    })
    .nullish(),
  url: ignored,
  status: ignored,
  effective: ignored,
  createdAt: ignored,
  updatedAt: ignored,
  generation: ignored,
});

/** Validated request body, before defaults are applied. Absent and null fields are undefined or null. */
export type ServiceInput = z.output<typeof serviceInputSchema>;

/** Validates a parsed JSON body. Throws ValidationError naming every invalid or unknown field. */
export function parseServiceInput(body: unknown): ServiceInput {
  const result = serviceInputSchema.safeParse(body, { error: describeIssue });
  if (result.success) return result.data;
  throw new ValidationError(toFieldIssues(result.error.issues));
}

const READ_ONLY_FIELDS = new Set(['url', 'status', 'effective', 'createdAt', 'updatedAt', 'generation']);

/** Writable fields of each object in the body, by dotted path, for the hint on unknown fields. */
const OBJECT_FIELDS: Record<string, readonly string[]> = {
  '': Object.keys(serviceInputSchema.shape).filter((field) => !READ_ONLY_FIELDS.has(field)),
  healthCheck: ['path', 'timeout'],
  resources: ['memory', 'cpus'],
};

/** Converts zod issues to one FieldIssue per field (the first problem found) and per unknown field. */
export function toFieldIssues(issues: readonly z.core.$ZodIssue[]): FieldIssue[] {
  const byField = new Map<string, string>();
  for (const issue of issues) {
    const parent = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      const allowed = OBJECT_FIELDS[parent];
      const hint = allowed === undefined ? '' : `; known fields are ${allowed.join(', ')}`;
      for (const key of issue.keys) {
        const field = parent === '' ? key : `${parent}.${key}`;
        if (!byField.has(field)) byField.set(field, `unknown field${hint}`);
      }
      continue;
    }
    const field = parent === '' ? 'body' : parent;
    if (!byField.has(field)) byField.set(field, issue.message);
  }
  return [...byField].map(([field, message]) => ({ field, message }));
}

/** Error map for zod's built-in checks; custom checks carry their own messages. */
function describeIssue(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      if (issue.path === undefined || issue.path.length === 0) return 'request body must be a JSON object';
      return `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
    case 'too_small':
      if (issue.origin === 'array') return `must contain at least ${String(issue.minimum)} items`;
      return `must be at least ${String(issue.minimum)}`;
    case 'too_big':
      if (issue.origin === 'int' && issue.maximum === Number.MAX_SAFE_INTEGER) return 'is too large';
      return `must be at most ${String(issue.maximum)}`;
    default:
      return undefined;
  }
}

const TYPE_NAMES: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  object: 'a JSON object',
  record: 'a JSON object',
  array: 'an array',
};

function addIssue(ctx: { value: unknown; issues: z.core.$ZodRawIssue[] }, message: string, path: PropertyKey[] = []): void {
  ctx.issues.push({ code: 'custom', message, input: ctx.value, path });
}
