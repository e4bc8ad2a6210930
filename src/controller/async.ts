export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Races a shared promise against one waiter's abort signal without cancelling the promise. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Resolves with the value of the first promise that fulfils. Rejects with the error of the
 * promise that rejected last when all of them reject, and at once when `promises` is empty.
 */
export function firstFulfilled<T>(promises: readonly Promise<T>[]): Promise<T> {
  if (promises.length === 0) return Promise.reject(new Error('no promise to wait for'));
  return new Promise<T>((resolve, reject) => {
    let rejected = 0;
    for (const promise of promises) {
      promise.then(resolve, (error: unknown) => {
        rejected += 1;
        if (rejected === promises.length) reject(error);
      });
    }
  });
}

/** Resolves true when `promise` settles within `ms`, false after `ms`. Never rejects. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const settled = promise.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
