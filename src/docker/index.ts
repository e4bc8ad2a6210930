export { DEFAULT_DOCKER_HOST, createDockerClient } from './client.js';
export { buildCreateOptions, summaryFromInspect, summaryFromListEntry } from './containers.js';
export { parseContainerEvent } from './events.js';
export { classifyPullError } from './images.js';
export { demultiplexLogs, lastLines } from './logs.js';
export { DockerRuntime } from './runtime.js';
export type { ContainerSummary, CreateReplicaInput, DockerRuntimeOptions, EventSubscription, ReplicaEvent } from './types.js';
