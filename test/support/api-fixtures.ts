import type { ServiceDefaults, ServiceStatus } from '../../src/api/backend.js';

/** Global defaults for API tests: the built-in values, with a max-replicas limit of 20. */
export const DEFAULTS: ServiceDefaults = {
  port: 8080,
  minReplicas: 0,
  maxReplicas: 10,
  maxReplicasLimit: 20,
  startupTimeoutMs: 60_000,
  inactivityTimeoutMs: 600_000,
  concurrency: 80,
};

/** Status of a service without replicas that never failed. */
export const STATUS: ServiceStatus = {
  state: 'sleeping',
  desiredReplicas: 0,
  readyReplicas: 0,
  replicas: [],
  concurrency: 0,
  lastRequestAt: null,
  lastError: null,
  retryAt: null,
  lastScaling: null,
};
