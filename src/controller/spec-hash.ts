import { createHash } from 'node:crypto';
import type { ServiceSpec } from '../model.js';

/**
 * Hashes the fields that a running container cannot pick up without being recreated: image,
 * port, env, command and resources. Scaling bounds, timeouts and hosts change without a restart.
 */
export function replicaSpecHash(spec: ServiceSpec): string {
  const envEntries = Object.entries(spec.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const material = JSON.stringify({
    image: spec.image,
    port: spec.port,
    env: envEntries,
    command: spec.command ?? null,
    memoryBytes: spec.resources?.memoryBytes ?? null,
    cpus: spec.resources?.cpus ?? null,
  });
  return createHash('sha256').update(material).digest('hex').slice(0, 16);
}
