import type { Millis } from '../model.js';

/**
 * Go-style durations (`300ms`, `90s`, `1h30m`, `1.5h`), the format of Luma's flags and API.
 *
 * A duration is a sequence of decimal numbers, each with a unit: `ns`, `us` (or `µs`), `ms`,
 * `s`, `m`, `h`. A bare `0` is the only number allowed without a unit. Negative durations are
 * rejected. Values are computed in whole nanoseconds, as Go does, so `1.1s` is exactly 1100 ms.
 */

const NANOS_PER_UNIT: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1_000n],
  ['µs', 1_000n], // U+00B5 MICRO SIGN
  ['μs', 1_000n], // U+03BC GREEK SMALL LETTER MU
  ['ms', 1_000_000n],
  ['s', 1_000_000_000n],
  ['m', 60_000_000_000n],
  ['h', 3_600_000_000_000n],
]);

const NANOS_PER_MILLI = 1_000_000n;

/** Go's maximum duration (2^63 - 1 ns, about 292 years); longer values are rejected. */
const MAX_NANOS = 2n ** 63n - 1n;

/** Maximum delay of a Node.js timer (2^31 - 1 ms, about 24.8 days); longer delays fire at once. */
export const MAX_TIMER_MS: Millis = 2 ** 31 - 1;

const COMPONENT = /^(\d*)(?:\.(\d*))?([^\d.]*)/;

export class DurationSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DurationSyntaxError';
  }
}

/**
 * Parses a Go-style duration into milliseconds. The result is fractional for durations that
 * are not a whole number of milliseconds (`1500us` is 1.5).
 * Throws DurationSyntaxError with a message that suits "invalid value X for Y: <message>".
 */
export function parseDuration(text: string): Millis {
  if (text === '') throw new DurationSyntaxError('empty duration; write a number and a unit, such as 90s');
  if (text.startsWith('-')) throw new DurationSyntaxError('duration must not be negative');
  if (text === '0') return 0;
  if (/^(\d+\.?\d*|\.\d+)$/.test(text)) {
    throw new DurationSyntaxError(`missing unit; add one of ns, us, ms, s, m, h (for example ${text}s)`);
  }

  let nanos = 0n;
  let rest = text;
  while (rest !== '') {
    const match = COMPONENT.exec(rest);
    const [whole, integer = '', fraction, unit = ''] = match ?? [];
    if (whole === undefined || (integer === '' && (fraction === undefined || fraction === ''))) {
      throw new DurationSyntaxError(`invalid duration ${JSON.stringify(text)}; expected a form such as 300ms, 90s or 1h30m`);
    }
    const scale = NANOS_PER_UNIT.get(unit);
    if (scale === undefined) {
      const problem = unit === '' ? 'missing unit' : `unknown unit ${JSON.stringify(unit)}`;
      throw new DurationSyntaxError(`${problem} in duration ${JSON.stringify(text)}; valid units are ns, us, ms, s, m, h`);
    }

    nanos += BigInt(integer === '' ? '0' : integer) * scale + fractionToNanos(fraction ?? '', scale);
    if (nanos > MAX_NANOS) throw new DurationSyntaxError(`duration ${JSON.stringify(text)} is too large`);
    rest = rest.slice(whole.length);
  }
  return nanosToMillis(nanos);
}

/** Converts the digits after the decimal point to nanoseconds of `scale`, truncating like Go. */
function fractionToNanos(digits: string, scale: bigint): bigint {
  if (digits === '') return 0n;
  return (BigInt(digits) * scale) / 10n ** BigInt(digits.length);
}

function nanosToMillis(nanos: bigint): Millis {
  const whole = nanos / NANOS_PER_MILLI;
  const remainder = nanos % NANOS_PER_MILLI;
  return Number(whole) + Number(remainder) / 1e6;
}

/**
 * Formats milliseconds as the shortest Go-style duration, leaving out zero components:
 * 90000 is `1m30s`, 5400000 is `1h30m`, 1500 is `1.5s`, 0 is `0s`. `parseDuration` reads
 * every result back to the same value, to the nanosecond.
 */
export function formatDuration(ms: Millis): string {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`cannot format ${ms} as a duration`);

  const nanos = BigInt(Math.round(ms * 1e6));
  if (nanos === 0n) return '0s';
  if (nanos < 1_000n) return `${nanos}ns`;
  if (nanos < 1_000_000n) return `${decimal(nanos, 1_000n)}us`;
  if (nanos < 1_000_000_000n) return `${decimal(nanos, 1_000_000n)}ms`;

  const hours = nanos / 3_600_000_000_000n;
  const minutes = (nanos % 3_600_000_000_000n) / 60_000_000_000n;
  const secondNanos = nanos % 60_000_000_000n;
  let text = '';
  if (hours > 0n) text += `${hours}h`;
  if (minutes > 0n) text += `${minutes}m`;
  if (secondNanos > 0n) text += `${decimal(secondNanos, 1_000_000_000n)}s`;
  return text;
}

/** Writes `value / unit` as a decimal number without trailing zeros. */
function decimal(value: bigint, unit: bigint): string {
  const whole = value / unit;
  const fraction = value % unit;
  if (fraction === 0n) return whole.toString();
  const width = unit.toString().length - 1;
  return `${whole}.${fraction.toString().padStart(width, '0').replace(/0+$/, '')}`;
}
