import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { LumaError } from '../errors.js';
import type { Logger } from '../log.js';
import type { FailureLog } from './failure-log.js';
import type { LeaseQueue } from './lease-queue.js';
import type { ReplicaProvider } from './types.js';

/** Counters since start, shown by `WakeHandler.stats()`. */
export interface WakeCounters {
  /** Replays whose response was sent in full, and tunnels opened. */
  replayed: number;
  /** Replays sent again with a new lease after connecting to the replica failed. */
  retried: number;
  /** Requests that got the handler's own error reply or were cut off. */
  failed: number;
}

/** Settings, counters and services that the HTTP and upgrade paths share with their WakeHandler. */
export interface WakeContext {
  logger: Logger;
  failures: FailureLog;
  provider: ReplicaProvider;
  queue: LeaseQueue;
  dispatcher: Dispatcher;
  counters: WakeCounters;
  maxBodyBytes: number;
  retryAfterSeconds: number;
  /** Returns false once `close()` began. */
  accepting(): boolean;
  /** Aborts of requests being replayed or tunnels being opened; `close()` aborts them at its deadline. */
  running: Set<AbortController>;
  /** Client sockets of open tunnels; `close()` destroys them at its deadline. */
  tunnels: Set<Duplex>;
}

export function shuttingDownError(): LumaError {
  return new LumaError('shutting_down', 'luma is shutting down');
}

/** Creates the abort reason for a client that closed its connection. */
export function clientClosedError(): Error {
  return new Error('client closed the connection');
}
