import { z } from 'zod';

import type { ServiceSpec } from '../model.js';

/**
 * Shape of `services.json`. The API checks every field on input; this schema only makes sure
 * that the file contains what Luma wrote, so that a damaged or hand-edited file stops the start
 * instead of producing services with missing fields.
 */

/** Format version that this code writes and reads. Increase it on incompatible changes. */
export const SERVICES_FILE_VERSION = 1;

const count = z.number().int().nonnegative();
const millis = z.number().nonnegative();

const serviceSpecSchema = z.strictObject({
  name: z.string().min(1),
  image: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  minReplicas: count,
  maxReplicas: count,
  env: z.record(z.string(), z.string()),
  command: z.array(z.string()).optional(),
  hosts: z.array(z.string()),
  healthCheck: z.strictObject({ path: z.string(), timeoutMs: millis }).optional(),
  startupTimeoutMs: millis.optional(),
  inactivityTimeoutMs: millis.optional(),
  concurrency: count.optional(),
  maxConcurrency: count.optional(),
  resources: z.strictObject({ memoryBytes: count.optional(), cpus: z.number().positive().optional() }).optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
  generation: count,
});

// Fails to compile when ServiceSpec and the schema drift apart.
const specMatchesModel: z.ZodType<ServiceSpec> = serviceSpecSchema;
void specMatchesModel;

export const servicesFileSchema = z.strictObject({
  version: z.literal(SERVICES_FILE_VERSION),
  services: z.array(serviceSpecSchema),
});

export type ServicesFile = z.infer<typeof servicesFileSchema>;
