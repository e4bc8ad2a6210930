import type Dockerode from 'dockerode';
import PQueue from 'p-queue';
import { LumaError } from '../errors.js';
import type { Logger } from '../log.js';
import { dockerFailure, dockerMessage, dockerStatus, isConnectionError, isNotFound } from './errors.js';
import { forEachStreamLine } from './json-lines.js';
import type { OperationQueue } from './operations.js';

/** Registry replies that mean the image or tag does not exist (Docker Engine 20.10 wording). */
const NOT_FOUND_PATTERN = /manifest unknown|not found|does not exist|no such image|name unknown/i;

interface SharedPull {
  promise: Promise<void>;
  controller: AbortController;
  waiters: number;
}

/** Pull progress line of `POST /images/create`; errors arrive in the stream with status 200. */
interface PullMessage {
  status?: string;
  id?: string;
  error?: string;
  errorDetail?: { message?: string };
}

/**
 * Makes images present: inspects, and pulls when missing. Concurrent requests for the same
 * image share one pull, which is aborted only when every caller has given up.
 */
export class ImagePuller {
  private readonly pulls = new Map<string, SharedPull>();
  private readonly pullQueue: PQueue;

  constructor(
    private readonly docker: Dockerode,
    private readonly operations: OperationQueue,
    private readonly logger: Logger,
    maxConcurrentPulls: number,
  ) {
    this.pullQueue = new PQueue({ concurrency: maxConcurrentPulls });
  }

  /**
   * Resolves when `image` exists locally. Rejects with `image_not_found` when the registry has no
   * such image or tag, `image_pull_failed` for any other pull failure (registry unreachable,
   * authentication, invalid reference), `docker_unavailable` when the engine is unreachable, and
   * with `signal.reason` when `signal` aborts.
   */
  async ensureImage(image: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (await this.hasImage(image)) return;

    let pull = this.pulls.get(image);
    if (pull === undefined) {
      pull = this.startPull(image);
      this.pulls.set(image, pull);
    }

    pull.waiters += 1;
    try {
      await waitOrAbort(pull.promise, signal);
    } finally {
      pull.waiters -= 1;
      if (pull.waiters === 0 && !pull.controller.signal.aborted) {
        // Every caller gave up or the pull settled; aborting a settled pull is harmless.
        pull.controller.abort(new Error('every caller of the pull gave up'));
        if (this.pulls.get(image) === pull) this.pulls.delete(image);
      }
    }
  }

  private async hasImage(image: string): Promise<boolean> {
    try {
      await this.operations.run('image inspect', () => this.docker.getImage(image).inspect());
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw dockerFailure('image inspect', error, { image });
    }
  }

  private startPull(image: string): SharedPull {
    const controller = new AbortController();
    const pull: SharedPull = { controller, waiters: 0, promise: Promise.resolve() };
    pull.promise = this.pullQueue
      .add(() => this.pull(image, controller.signal), { signal: controller.signal })
      .finally(() => {
        if (this.pulls.get(image) === pull) this.pulls.delete(image);
      });
    // Waiters observe the result; this handler only keeps an unobserved rejection quiet.
    pull.promise.catch(() => undefined);
    return pull;
  }

  private async pull(image: string, signal: AbortSignal): Promise<void> {
    const log = this.logger.child({ image });
    const startedAt = Date.now();
    log.info('pull image');

    try {
      const stream = (await this.docker.pull(image, { abortSignal: signal })) as NodeJS.ReadableStream;
      await followPullStream(stream, signal, (message) => log.debug({ status: message.status, layer: message.id }, 'pull progress'));
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      // The caller logs the failure; this line ties it to the pull's duration.
      const failure = classifyPullError(image, error);
      log.debug({ code: failure.code, durationMs: Date.now() - startedAt }, 'pull image failed');
      throw failure;
    }

    log.info({ durationMs: Date.now() - startedAt }, 'pulled image');
  }
}

/**
 * Reads a pull's progress stream to its end. Resolves when the stream ends without an error
 * message; rejects with Docker's message when a line carries `error`, and when the stream fails.
 */
export async function followPullStream(
  stream: NodeJS.ReadableStream,
  signal: AbortSignal,
  onMessage: (message: PullMessage) => void = () => undefined,
): Promise<void> {
  await forEachStreamLine(stream, signal, (line) => handlePullLine(line, onMessage));
  signal.throwIfAborted();
}

function handlePullLine(line: string, onMessage: (message: PullMessage) => void): void {
  let message: PullMessage;
  try {
    message = JSON.parse(line) as PullMessage;
  } catch {
    return;
  }
  if (message.error !== undefined || message.errorDetail?.message !== undefined) {
    throw new Error(message.errorDetail?.message ?? message.error);
  }
  onMessage(message);
}

/** Maps a pull failure to `image_not_found`, `image_pull_failed` or `docker_unavailable`. */
export function classifyPullError(image: string, error: unknown): LumaError {
  if (error instanceof LumaError) return error;
  if (isConnectionError(error)) return dockerFailure('image pull', error, { image });

  const message = dockerMessage(error);
  const status = dockerStatus(error);
  const details = { image, dockerMessage: message, ...(status === undefined ? {} : { statusCode: status }) };
  if (status === 404 || NOT_FOUND_PATTERN.test(message)) {
    return new LumaError('image_not_found', `image ${image} not found: ${message}`, { cause: error, details });
  }
  return new LumaError('image_pull_failed', `pull image ${image} failed: ${message}`, { cause: error, details });
}

/** Waits for `promise`, or rejects with `signal.reason` as soon as `signal` aborts. */
function waitOrAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
