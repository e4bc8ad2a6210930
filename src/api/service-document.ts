import { formatByteSize } from '../config/byte-size.js';
import { formatDuration } from '../config/duration.js';
import { ValidationError, type FieldIssue } from '../errors.js';
import type { Millis, ServiceSpec } from '../model.js';
import type { ServiceDefaults, ServiceStatus } from './backend.js';
import type { ServiceInput } from './service-input.js';

/** Timeout of one health check probe when the service sets a path but no timeout. */
export const DEFAULT_HEALTH_CHECK_TIMEOUT_MS: Millis = 1000;

/**
 * A service's settings in API form: durations as Go-style strings, memory as a size string, and
 * null for settings the service leaves to the global defaults. Sending it back as a PUT body
 * leaves the service unchanged.
 */
export interface ServiceSettingsDocument {
  name: string;
  image: string;
  port: number;
  minReplicas: number;
  maxReplicas: number;
  env: Record<string, string>;
  command: string[] | null;
  hosts: string[];
  healthCheck: { path: string; timeout: string } | null;
  startupTimeout: string | null;
  inactivityTimeout: string | null;
  concurrency: number | null;
  maxConcurrency: number | null;
  resources: { memory: string | null; cpus: number | null } | null;
}

/** A service in API responses: its settings, the values in effect, and its live status. */
export interface ServiceView extends ServiceSettingsDocument {
  /** Path prefix that routes to the service, `/<name>/`. */
  url: string;
  /** Values in effect after global defaults; `maxConcurrency` null means unlimited. */
  effective: {
    startupTimeout: string;
    inactivityTimeout: string;
    concurrency: number;
    maxConcurrency: number | null;
  };
  createdAt: string;
  updatedAt: string;
  generation: number;
  status: ServiceStatus;
}

export function toSettingsDocument(spec: ServiceSpec): ServiceSettingsDocument {
  return {
    name: spec.name,
    image: spec.image,
    port: spec.port,
    minReplicas: spec.minReplicas,
    maxReplicas: spec.maxReplicas,
    env: { ...spec.env },
    command: spec.command === undefined ? null : [...spec.command],
    hosts: [...spec.hosts],
    healthCheck:
      spec.healthCheck === undefined ? null : { path: spec.healthCheck.path, timeout: formatDuration(spec.healthCheck.timeoutMs) },
    startupTimeout: spec.startupTimeoutMs === undefined ? null : formatDuration(spec.startupTimeoutMs),
    inactivityTimeout: spec.inactivityTimeoutMs === undefined ? null : formatDuration(spec.inactivityTimeoutMs),
    concurrency: spec.concurrency ?? null,
    maxConcurrency: spec.maxConcurrency ?? null,
    resources:
      spec.resources === undefined
        ? null
        : {
            memory: spec.resources.memoryBytes === undefined ? null : formatByteSize(spec.resources.memoryBytes),
            cpus: spec.resources.cpus ?? null,
          },
  };
}

export function toServiceView(spec: ServiceSpec, status: ServiceStatus, defaults: ServiceDefaults): ServiceView {
  return {
    ...toSettingsDocument(spec),
    url: `/${spec.name}/`,
    effective: {
      startupTimeout: formatDuration(spec.startupTimeoutMs ?? defaults.startupTimeoutMs),
      inactivityTimeout: formatDuration(spec.inactivityTimeoutMs ?? defaults.inactivityTimeoutMs),
      concurrency: effectiveConcurrency(spec, defaults),
      maxConcurrency: spec.maxConcurrency ?? null,
    },
    createdAt: spec.createdAt,
    updatedAt: spec.updatedAt,
    generation: spec.generation,
    status,
  };
}

/**
 * Returns the target concurrent requests per replica: the service's `concurrency`, else the
 * global default capped at the service's `maxConcurrency`, because a target above the hard limit
 * would never be reached and the service would never scale out.
 */
export function effectiveConcurrency(spec: ServiceSpec, defaults: ServiceDefaults): number {
  if (spec.concurrency !== undefined) return spec.concurrency;
  return Math.min(defaults.concurrency, spec.maxConcurrency ?? Number.POSITIVE_INFINITY);
}

/** Returns whether two specs have the same settings, ignoring timestamps and generation. */
export function haveSameSettings(a: ServiceSpec, b: ServiceSpec): boolean {
  return JSON.stringify(toSettingsDocument(a)) === JSON.stringify(toSettingsDocument(b));
}

export interface BuildContext {
  /** Name from the URL (PUT, PATCH) or the body (POST). */
  name: string;
  defaults: ServiceDefaults;
  /** Current spec when replacing a service; its createdAt and generation carry over. */
  previous?: ServiceSpec;
  now: Date;
}

/**
 * Builds the spec to store from validated input: fills in defaults and checks the rules that
 * involve several fields or the global limits. Throws ValidationError naming every field.
 */
export function buildServiceSpec(input: ServiceInput, context: BuildContext): ServiceSpec {
  const { defaults } = context;
  const issues: FieldIssue[] = [];
  const report = (field: string, message: string) => issues.push({ field, message });

  if (input.name != null && input.name !== context.name) report('name', `must match the name in the URL (${context.name})`);

  const limit = defaults.maxReplicasLimit;
  const minReplicas = input.minReplicas ?? defaults.minReplicas;
  if (minReplicas > limit) report('minReplicas', `must be at most ${limit}, the -max-replicas-limit setting`);
  const maxReplicas = input.maxReplicas ?? Math.min(limit, Math.max(defaults.maxReplicas, minReplicas));
  if (input.maxReplicas != null) {
    if (maxReplicas < minReplicas) report('maxReplicas', `must be at least minReplicas (${minReplicas})`);
    if (maxReplicas > limit) report('maxReplicas', `must be at most ${limit}, the -max-replicas-limit setting`);
  }

  if (input.concurrency != null && input.maxConcurrency != null && input.concurrency > input.maxConcurrency) {
    report('concurrency', `must be at most maxConcurrency (${input.maxConcurrency})`);
  }

  const startupTimeoutMs = input.startupTimeout ?? defaults.startupTimeoutMs;
  const healthTimeoutMs = input.healthCheck?.timeout ?? DEFAULT_HEALTH_CHECK_TIMEOUT_MS;
  if (input.healthCheck != null && healthTimeoutMs > startupTimeoutMs) {
    report('healthCheck.timeout', `must be at most the startup timeout (${formatDuration(startupTimeoutMs)})`);
  }

  if (issues.length > 0) throw new ValidationError(issues);

  const now = context.now.toISOString();
  const spec: ServiceSpec = {
    name: context.name,
    image: input.image,
    port: input.port ?? defaults.port,
    minReplicas,
    maxReplicas,
    env: sortKeys(input.env ?? {}),
    hosts: input.hosts ?? [],
    createdAt: context.previous?.createdAt ?? now,
    updatedAt: now,
    generation: (context.previous?.generation ?? 0) + 1,
  };
  if (input.command != null) spec.command = input.command;
  if (input.healthCheck != null) spec.healthCheck = { path: input.healthCheck.path, timeoutMs: healthTimeoutMs };
  if (input.startupTimeout !== undefined) spec.startupTimeoutMs = input.startupTimeout;
  if (input.inactivityTimeout !== undefined) spec.inactivityTimeoutMs = input.inactivityTimeout;
  if (input.concurrency != null) spec.concurrency = input.concurrency;
  if (input.maxConcurrency != null) spec.maxConcurrency = input.maxConcurrency;
  const resources = buildResources(input.resources);
  if (resources !== undefined) spec.resources = resources;
  return spec;
}

function buildResources(input: ServiceInput['resources']): ServiceSpec['resources'] {
  if (input == null) return undefined;
  const resources: NonNullable<ServiceSpec['resources']> = {};
  if (input.memory !== undefined) resources.memoryBytes = input.memory;
  if (input.cpus != null) resources.cpus = input.cpus;
  return Object.keys(resources).length === 0 ? undefined : resources;
}

function sortKeys(record: Record<string, string>): Record<string, string> {
  const keys = Object.keys(record).sort();
  return Object.fromEntries(keys.map((key) => [key, record[key] ?? '']));
}
