/**
 * Reads a Docker JSON-lines stream (events, pull progress) and calls `onLine` for every
 * non-empty line, including a last line without a trailing newline. Aborting `signal` destroys
 * the stream, which ends the loop with the stream's error.
 */
export async function forEachStreamLine(
  stream: NodeJS.ReadableStream,
  signal: AbortSignal,
  onLine: (line: string) => void,
): Promise<void> {
  const destroy = () => (stream as NodeJS.ReadableStream & { destroy?: (error?: Error) => void }).destroy?.();
  signal.addEventListener('abort', destroy, { once: true });

  try {
    let pending = '';
    for await (const chunk of stream) {
      pending += chunk.toString();
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line !== '') onLine(line);
      }
    }
    if (pending.trim() !== '') onLine(pending.trim());
  } finally {
    signal.removeEventListener('abort', destroy);
  }
}
