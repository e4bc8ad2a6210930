import { randomBytes } from 'node:crypto';
import type Dockerode from 'dockerode';
import { LABELS } from '../model.js';
import type { ContainerSummary, CreateReplicaInput } from './types.js';

/** Stop grace period stored on containers when the caller gives none. */
const DEFAULT_STOP_GRACE_MS = 10_000;

/**
 * Returns the create options of a replica container.
 *
 * - `PORT` is always `spec.port`. A `PORT` in `spec.env` is dropped, because the app must
 *   listen where Luma probes and routes.
 * - `Init: true` runs docker-init (tini) as PID 1, so the app receives the stop signal even when
 *   it does not handle signals as PID 1. The image's `STOPSIGNAL` applies, because
 *   `StopSignal` is left unset.
 * - The restart policy is `no`: Luma replaces failed replicas itself.
 * - `MemorySwap` equals `Memory`, so the memory limit is not extended by swap.
 */
export function buildCreateOptions(
  input: CreateReplicaInput,
  context: { instanceId: string; network: string; extraLabels?: Record<string, string> },
): Dockerode.ContainerCreateOptions {
  const { spec } = input;
  const env = Object.entries(spec.env)
    .filter(([key]) => key !== 'PORT')
    .map(([key, value]) => `${key}=${value}`);
  env.push(`PORT=${spec.port}`);

  const hostConfig: Dockerode.HostConfig = {
    Init: true,
    RestartPolicy: { Name: 'no' },
    NetworkMode: context.network,
  };
  if (spec.resources?.memoryBytes !== undefined) {
    hostConfig.Memory = spec.resources.memoryBytes;
    hostConfig.MemorySwap = spec.resources.memoryBytes;
  }
  if (spec.resources?.cpus !== undefined) {
    hostConfig.NanoCpus = Math.round(spec.resources.cpus * 1e9);
  }

  const options: Dockerode.ContainerCreateOptions = {
    name: replicaName(spec.name),
    Image: spec.image,
    Env: env,
    Labels: {
      ...context.extraLabels,
      [LABELS.instance]: context.instanceId,
      [LABELS.service]: spec.name,
      [LABELS.generation]: String(spec.generation),
      [LABELS.specHash]: input.specHash,
    },
    StopTimeout: Math.ceil((input.stopGracePeriodMs ?? DEFAULT_STOP_GRACE_MS) / 1000),
    HostConfig: hostConfig,
    NetworkingConfig: { EndpointsConfig: { [context.network]: {} } },
  };
  if (spec.command !== undefined && spec.command.length > 0) options.Cmd = spec.command;
  return options;
}

/** Returns `luma-<service>-<8 hex digits>`. The name is for people; ownership uses labels. */
export function replicaName(service: string): string {
  return `luma-${service}-${randomBytes(4).toString('hex')}`;
}

function parseGeneration(labels: Record<string, string>): number {
  const generation = Number(labels[LABELS.generation]);
  return Number.isInteger(generation) ? generation : 0;
}

/** Docker reports a missing address as an empty string. */
function ipOrNull(address: string | undefined): string | null {
  return address === undefined || address === '' ? null : address;
}

/** Converts `docker inspect` output. */
export function summaryFromInspect(info: Dockerode.ContainerInspectInfo, network: string): ContainerSummary {
  const labels = info.Config.Labels ?? {};
  const running = info.State.Running;
  // Docker reports ExitCode 0 for containers that never started, so only FinishedAt distinguishes them.
  const finished = info.State.FinishedAt !== undefined && !info.State.FinishedAt.startsWith('0001-');
  const failedToStart = info.State.ExitCode !== 0;
  return {
    id: info.Id,
    name: info.Name.replace(/^\//, ''),
    service: labels[LABELS.service] ?? '',
    generation: parseGeneration(labels),
    specHash: labels[LABELS.specHash] ?? '',
    state: info.State.Status,
    running,
    exitCode: running || (!finished && !failedToStart) ? null : info.State.ExitCode,
    oomKilled: info.State.OOMKilled,
    ip: running ? ipOrNull(info.NetworkSettings.Networks[network]?.IPAddress) : null,
    createdAt: new Date(info.Created).toISOString(),
  };
}

/**
 * Converts an entry of `docker ps`. The list has no exit code or OOM flag, so the caller
 * inspects containers that are not running; running ones have neither.
 */
export function summaryFromListEntry(entry: Dockerode.ContainerInfo, network: string): ContainerSummary {
  const labels = entry.Labels ?? {};
  const running = entry.State === 'running';
  return {
    id: entry.Id,
    name: (entry.Names[0] ?? '').replace(/^\//, ''),
    service: labels[LABELS.service] ?? '',
    generation: parseGeneration(labels),
    specHash: labels[LABELS.specHash] ?? '',
    state: entry.State,
    running,
    exitCode: null,
    oomKilled: false,
    ip: running ? ipOrNull(entry.NetworkSettings?.Networks?.[network]?.IPAddress) : null,
    createdAt: new Date(entry.Created * 1000).toISOString(),
  };
}
