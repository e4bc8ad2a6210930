/**
 * Splits Docker's multiplexed log stream (containers without a TTY) into text, in arrival order.
 * Each frame is an 8-byte header (stream type: 0 stdin, 1 stdout, 2 stderr; three zero bytes;
 * payload length as big-endian uint32) followed by the payload. Data that does not start with a
 * valid header is returned as is, because TTY containers send raw output.
 */
export function demultiplexLogs(data: Buffer): string {
  const parts: Buffer[] = [];
  let offset = 0;

  while (offset + 8 <= data.length) {
    const streamType = data[offset];
    const isHeader = (streamType === 0 || streamType === 1 || streamType === 2) && data.readUIntBE(offset + 1, 3) === 0;
    if (!isHeader) break;

    const length = data.readUInt32BE(offset + 4);
    const end = Math.min(offset + 8 + length, data.length);
    parts.push(data.subarray(offset + 8, end));
    offset = end;
  }

  if (offset < data.length) parts.push(data.subarray(offset));
  return Buffer.concat(parts).toString('utf8');
}

/** Returns the last `count` lines of `text`, without line terminators or a final empty line. */
export function lastLines(text: string, count: number): string[] {
  if (count <= 0) return [];
  const lines = text.split('\n').map((line) => line.replace(/\r$/, ''));
  if (lines.at(-1) === '') lines.pop();
  return lines.slice(-count);
}
