import type Dockerode from 'dockerode';
import type { Logger } from '../log.js';
import { LABELS } from '../model.js';
import { forEachStreamLine } from './json-lines.js';
import type { EventSubscription, ReplicaEvent } from './types.js';

const WATCHED_ACTIONS = ['start', 'die', 'oom', 'destroy'] as const;
type WatchedAction = (typeof WATCHED_ACTIONS)[number];

export interface EventWatcherOptions {
  docker: Dockerode;
  instanceId: string;
  logger: Logger;
  onEvent: (event: ReplicaEvent) => void;
  /** First reconnect delay; doubles per failed attempt up to `maxDelayMs`. Default 250 ms. */
  initialDelayMs?: number;
  /** Default 10 s. A connection that lived this long resets the delay to `initialDelayMs`. */
  maxDelayMs?: number;
}

/** A container event as `GET /events` streams it (Docker Engine API 1.41). */
interface RawEvent {
  Type?: string;
  Action?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

/**
 * Converts one raw engine event into a replica event. Returns undefined for other event types,
 * other actions, and containers of another Luma instance.
 */
export function parseContainerEvent(raw: RawEvent, instanceId: string): ReplicaEvent | undefined {
  if (raw.Type !== 'container') return undefined;
  const action = raw.Action as WatchedAction;
  if (!WATCHED_ACTIONS.includes(action)) return undefined;

  const attributes = raw.Actor?.Attributes ?? {};
  if (attributes[LABELS.instance] !== instanceId) return undefined;
  const id = raw.Actor?.ID ?? raw.id;
  if (id === undefined) return undefined;

  const event: ReplicaEvent = { kind: action, id, service: attributes[LABELS.service] ?? '' };
  const exitCode = Number.parseInt(attributes.exitCode ?? '', 10);
  if (action === 'die' && Number.isInteger(exitCode)) event.exitCode = exitCode;
  return event;
}

/**
 * Follows the engine's container events for one Luma instance, filtered by the instance label on
 * the engine side. When the stream fails or ends, it emits `disconnected` once and reconnects with
 * capped exponential backoff; every successful (re)connection emits `connected`. Events that
 * happened while disconnected are not replayed, so the receiver should reconcile on `connected`.
 */
export class EventWatcher implements EventSubscription {
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private delayMs: number;
  private closed = false;
  private connected = false;
  /** Whether `disconnected` was emitted since the last `connected` (or since start). */
  private reportedDisconnect = false;
  private connectedAt = 0;
  private controller: AbortController | undefined;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: EventWatcherOptions) {
    this.initialDelayMs = options.initialDelayMs ?? 250;
    this.maxDelayMs = options.maxDelayMs ?? 10_000;
    this.delayMs = this.initialDelayMs;
  }

  start(): void {
    this.connect();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.controller?.abort();
  }

  private connect(): void {
    if (this.closed) return;
    const controller = new AbortController();
    this.controller = controller;

    this.follow(controller.signal)
      .then(
        () => new Error('docker event stream ended'),
        (error: unknown) => error,
      )
      .then((error) => this.onDisconnected(error))
      .catch((error: unknown) => this.options.logger.error({ err: error }, 'handle docker event stream end failed'));
  }

  private async follow(signal: AbortSignal): Promise<void> {
    const stream = (await this.options.docker.getEvents({
      filters: {
        type: ['container'],
        event: [...WATCHED_ACTIONS],
        label: [`${LABELS.instance}=${this.options.instanceId}`],
      },
      abortSignal: signal,
    })) as NodeJS.ReadableStream;

    this.onConnected();
    await forEachStreamLine(stream, signal, (line) => this.handleLine(line));
  }

  private handleLine(line: string): void {
    let raw: RawEvent;
    try {
      raw = JSON.parse(line) as RawEvent;
    } catch (error) {
      this.options.logger.warn({ err: error, line: line.slice(0, 200) }, 'skip unparsable docker event');
      return;
    }
    const event = parseContainerEvent(raw, this.options.instanceId);
    if (event === undefined) return;
    this.options.logger.debug({ event }, 'docker event');
    this.emit(event);
  }

  private onConnected(): void {
    if (this.closed) return;
    this.connected = true;
    this.reportedDisconnect = false;
    this.connectedAt = Date.now();
    this.options.logger.info('docker event stream connected');
    this.emit({ kind: 'connected' });
  }

  private onDisconnected(error: unknown): void {
    if (this.closed) return;

    if (this.connected && Date.now() - this.connectedAt >= this.maxDelayMs) this.delayMs = this.initialDelayMs;
    this.connected = false;

    const delayMs = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.maxDelayMs);
    if (!this.reportedDisconnect) {
      this.reportedDisconnect = true;
      this.options.logger.warn({ err: error, retryInMs: delayMs }, 'docker event stream disconnected');
      this.emit({ kind: 'disconnected', error });
    } else {
      this.options.logger.debug({ err: error, retryInMs: delayMs }, 'reconnect docker event stream failed');
    }

    this.retryTimer = setTimeout(() => this.connect(), delayMs);
  }

  /** Delivers an event; a throwing receiver is logged and does not stop the stream. */
  private emit(event: ReplicaEvent): void {
    if (this.closed) return;
    try {
      this.options.onEvent(event);
    } catch (error) {
      this.options.logger.error({ err: error, event: event.kind }, 'handle docker event failed');
    }
  }
}
