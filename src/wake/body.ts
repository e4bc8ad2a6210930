import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { LumaError } from '../errors.js';

/**
 * A readable stream of a client's request body that undici sends to the replica.
 *
 * undici destroys the body stream it was given when the request ends or fails, and destroying
 * an IncomingMessage that was not read to the end destroys the client's socket, which would make
 * a 413 or 502 reply impossible. Destroying this relay instead detaches it from the request and
 * leaves the socket alone. It reads from the request only when undici pulls,
 * so a slow replica slows the client down (backpressure), and nothing is read before undici writes
 * the request, so a request that failed to connect can be sent again with a new relay.
 *
 * When more than `maxBytes` arrive the relay fails with a `body_too_large` LumaError and sets
 * `exceeded`. When the client closes before the body ended, it fails with an ordinary error.
 */
export class RequestBodyRelay extends Readable {
  /** Bytes read from the client so far. */
  bytesRead = 0;
  exceeded = false;

  constructor(
    private readonly source: IncomingMessage,
    private readonly maxBytes: number,
  ) {
    super();
    // An explicit pause before adding a 'data' listener keeps the request from flowing at once.
    source.pause();
    source.on('data', this.onSourceData);
    source.on('end', this.onSourceEnd);
    source.on('error', this.onSourceError);
    source.on('close', this.onSourceClose);
  }

  override _read(): void {
    this.source.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.detach();
    callback(error);
  }

  private readonly onSourceData = (chunk: Buffer): void => {
    this.bytesRead += chunk.length;
    if (this.bytesRead > this.maxBytes) {
      this.exceeded = true;
      this.destroy(
        new LumaError('body_too_large', `request body exceeds the limit of ${this.maxBytes} bytes`, {
          details: { maxBytes: this.maxBytes },
        }),
      );
      return;
    }
    if (!this.push(chunk)) this.source.pause();
  };

  private readonly onSourceEnd = (): void => {
    this.push(null);
  };

  private readonly onSourceError = (error: Error): void => {
    this.destroy(error);
  };

  private readonly onSourceClose = (): void => {
    if (!this.source.complete) this.destroy(new Error('client closed the connection before the request body ended'));
  };

  private detach(): void {
    this.source.off('data', this.onSourceData);
    this.source.off('end', this.onSourceEnd);
    this.source.off('error', this.onSourceError);
    this.source.off('close', this.onSourceClose);
    this.source.pause();
  }
}

/** Returns whether a request carries a body: chunked, or a `Content-Length` above zero. */
export function hasRequestBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && Number(length) > 0;
}
