import Dockerode from 'dockerode';
import { parseDockerHost } from '../config/addresses.js';

export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';

/**
 * Creates a client for an endpoint in `DOCKER_HOST` syntax. Every connection field is set
 * explicitly, because docker-modem merges `DOCKER_HOST` from the environment into options it
 * is not given.
 *
 * NOTE: TLS client certificates (`DOCKER_CERT_PATH`) are not loaded; an https endpoint is
 * verified against the system CAs only.
 */
export function createDockerClient(dockerHost: string = DEFAULT_DOCKER_HOST): Dockerode {
  const endpoint = parseDockerHost(dockerHost);
  if (endpoint.kind === 'unix') {
    return new Dockerode({ socketPath: endpoint.path, host: undefined, port: undefined, protocol: 'http' });
  }
  return new Dockerode({ socketPath: undefined, host: endpoint.host, port: endpoint.port, protocol: endpoint.protocol });
}
