/**
 * Byte sizes such as `100MiB`, `512Mi` or `1GB`, for flags and the API.
 *
 * Binary units (`Ki`, `Mi`, `Gi`, `Ti`, with or without a trailing `B`) are powers of 1024.
 * Decimal units (`k`/`K`, `M`, `G`, `T`, with or without a trailing `B`) are powers of 1000, as
 * in Kubernetes quantities. A bare number or the unit `B` means bytes. Lower-case `m`, `g` and
 * `t` are rejected because Docker reads `512m` as MiB while Kubernetes reads it as a fraction.
 */

const UNITS: ReadonlyMap<string, number> = new Map([
  ['', 1],
  ['B', 1],
  ['k', 1e3],
  ['K', 1e3],
  ['kB', 1e3],
  ['KB', 1e3],
  ['M', 1e6],
  ['MB', 1e6],
  ['G', 1e9],
  ['GB', 1e9],
  ['T', 1e12],
  ['TB', 1e12],
  ['Ki', 2 ** 10],
  ['KiB', 2 ** 10],
  ['Mi', 2 ** 20],
  ['MiB', 2 ** 20],
  ['Gi', 2 ** 30],
  ['GiB', 2 ** 30],
  ['Ti', 2 ** 40],
  ['TiB', 2 ** 40],
]);

/** Docker's units for MiB, GiB and TiB, which Kubernetes and SI read differently. */
const AMBIGUOUS_UNITS = new Set(['m', 'mb', 'g', 'gb', 't', 'tb']);

/** Units of `formatByteSize`, largest first. */
const FORMAT_UNITS: ReadonlyArray<[string, number]> = [
  ['TiB', 2 ** 40],
  ['GiB', 2 ** 30],
  ['MiB', 2 ** 20],
  ['KiB', 2 ** 10],
  ['TB', 1e12],
  ['GB', 1e9],
  ['MB', 1e6],
  ['kB', 1e3],
];

export class ByteSizeSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ByteSizeSyntaxError';
  }
}

/**
 * Parses a byte size into a whole number of bytes.
 * Throws ByteSizeSyntaxError with a message that suits "invalid value X for Y: <message>".
 */
export function parseByteSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(text.trim());
  if (match === null) {
    const hint = text.trim().startsWith('-') ? 'size must not be negative' : 'invalid size';
    throw new ByteSizeSyntaxError(`${hint}; expected a number with an optional unit, such as 512MiB, 1GB or 1048576`);
  }

  const [, number = '', unit = ''] = match;
  const scale = UNITS.get(unit);
  if (scale === undefined) {
    if (AMBIGUOUS_UNITS.has(unit)) {
      throw new ByteSizeSyntaxError(
        `ambiguous unit ${JSON.stringify(unit)}; use Mi or MiB for powers of 1024, M or MB for powers of 1000 (units are case-sensitive)`,
      );
    }
    throw new ByteSizeSyntaxError(`unknown unit ${JSON.stringify(unit)}; valid units (case-sensitive) are B, kB, MB, GB, TB, KiB, MiB, GiB, TiB`);
  }

  // Exact decimal arithmetic, so that 0.1MB is 100000 bytes rather than 100000.00000000001.
  const [integer = '', fraction = ''] = number.split('.');
  const denominator = 10n ** BigInt(fraction.length);
  const numerator = BigInt(integer + fraction) * BigInt(scale);
  if (numerator % denominator !== 0n) {
    throw new ByteSizeSyntaxError(`size ${JSON.stringify(text)} is not a whole number of bytes`);
  }
  const bytes = numerator / denominator;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new ByteSizeSyntaxError(`size ${JSON.stringify(text)} is too large`);
  return Number(bytes);
}

/**
 * Formats bytes with the largest unit that divides them exactly, preferring binary units:
 * 104857600 is `100MiB`, 1000000000 is `1GB`, 1000 is `1kB`, 1023 is `1023B`.
 */
export function formatByteSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`cannot format ${bytes} as a byte size`);
  if (bytes === 0) return '0B';
  for (const [unit, scale] of FORMAT_UNITS) {
    if (bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return `${bytes}B`;
}
