import { LumaError } from '../errors.js';

/** Error codes of Node's net and http layers that mean the engine could not be reached. */
const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT',
  'EACCES',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
]);

export const START_DOCKERD_HINT =
  'start the Docker engine (for example `systemctl start docker` or `dockerd &`), ' +
  'or point --docker-host / DOCKER_HOST at a running engine';

interface DockerodeError {
  statusCode?: unknown;
  code?: unknown;
  json?: unknown;
  message?: unknown;
}

/** Returns the HTTP status of an error dockerode raised for an engine reply, if any. */
export function dockerStatus(error: unknown): number | undefined {
  const status = (error as DockerodeError | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/**
 * Returns the engine's own message. dockerode formats errors as
 * `(HTTP code 404) no such container - No such container: abc `; the part after ` - ` is Docker's.
 */
export function dockerMessage(error: unknown): string {
  const json = (error as DockerodeError | null)?.json;
  if (json !== null && typeof json === 'object' && typeof (json as { message?: unknown }).message === 'string') {
    return ((json as { message: string }).message).trim();
  }
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
}

/** True when the engine was not reachable at all (socket missing, refused, reset). */
export function isConnectionError(error: unknown): boolean {
  const code = (error as DockerodeError | null)?.code;
  if (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) return true;
  return error instanceof Error && /socket hang up/i.test(error.message);
}

/** True for Docker's "no such container/image/network" replies. */
export function isNotFound(error: unknown): boolean {
  return dockerStatus(error) === 404;
}

/**
 * Wraps an engine failure that has no more specific meaning. Unreachable engines, timeouts and
 * server errors all become `docker_unavailable`, because the caller can only retry later.
 */
export function dockerFailure(operation: string, error: unknown, details: Record<string, unknown> = {}): LumaError {
  if (error instanceof LumaError) return error;

  const status = dockerStatus(error);
  let message = `docker ${operation} failed: ${dockerMessage(error)}`;
  if (isConnectionError(error)) message += `; ${START_DOCKERD_HINT}`;
  return new LumaError('docker_unavailable', message, {
    cause: error,
    details: { operation, ...(status === undefined ? {} : { statusCode: status }), ...details },
  });
}
