import type { Logger } from '../log.js';

export interface CaddyWatchOptions {
  /** Returns whether Luma's server exists in Caddy; rejects when the admin API is unreachable. */
  serverPresent: () => Promise<boolean>;
  /** Rewrites Luma's server and every route. */
  republishAll: () => Promise<void>;
  intervalMs: number;
  logger: Logger;
}

/**
 * Checks Caddy every `intervalMs` and re-installs Luma's server and routes when Caddy lost them
 * (restarted empty) or when its admin API was unreachable since the last check. Caddy restarted
 * with an autosaved or otherwise old config still has Luma's server, but its routes may be stale
 * (writes that failed while it was down are missing), so an outage alone triggers a rewrite.
 *
 * NOTE: a Caddy restart faster than `intervalMs` that loads an old config goes unnoticed unless
 * Luma's server is missing. The reconcile scan still retries per-service writes that failed.
 *
 * Returns a function that stops the watch.
 */
export function watchCaddy(options: CaddyWatchOptions): () => void {
  const { logger } = options;
  let reachable = true;
  let repairFailing = false;
  let running = false;

  const check = async (): Promise<void> => {
    let present: boolean;
    try {
      present = await options.serverPresent();
    } catch (error) {
      if (reachable) logger.warn({ err: error }, 'caddy admin api unreachable; checking again');
      reachable = false;
      return;
    }

    const recovered = !reachable;
    reachable = true;
    if (present && !recovered && !repairFailing) return;

    let reason = 'earlier re-install failed';
    if (!present) reason = 'luma server missing';
    else if (recovered) reason = 'admin api reachable again';
    try {
      await options.republishAll();
      repairFailing = false;
      logger.info({ reason }, 'caddy routes re-installed');
    } catch (error) {
      if (!repairFailing) logger.error({ err: error, reason }, 're-install caddy routes failed; retrying');
      repairFailing = true;
    }
  };

  const timer = setInterval(() => {
    if (running) return;
    running = true;
    check()
      .catch((error: unknown) => logger.error({ err: error }, 'check caddy failed'))
      .finally(() => {
        running = false;
      });
  }, options.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
