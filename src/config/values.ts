import path from 'node:path';

import { parseByteSize, formatByteSize } from './byte-size.js';
import { formatDuration, MAX_TIMER_MS, parseDuration } from './duration.js';
import type { Millis } from '../model.js';

/**
 * Value types of settings: each parses the text of a flag or environment variable and formats
 * a value back to that text. Parsers throw an Error whose message describes the problem and
 * suits "invalid value X for SETTING: <message>".
 */
export interface ValueType<T> {
  /** Placeholder in help text, such as `duration`. */
  placeholder: string;
  parse(text: string): T;
  format(value: T): string;
}

export function integerValue(min: number, max = Number.MAX_SAFE_INTEGER): ValueType<number> {
  return {
    placeholder: 'integer',
    parse(text) {
      if (!/^\d+$/.test(text)) throw new Error(`must be a whole number between ${min} and ${max}`);
      const value = Number(text);
      if (value < min || value > max) throw new Error(`must be between ${min} and ${max}`);
      return value;
    },
    format: String,
  };
}

/**
 * Returns the type of a Go-style duration of whole milliseconds, at most MAX_TIMER_MS because
 * longer Node.js timer delays fire at once. `wholeSeconds` also requires a whole number of seconds.
 */
export function durationValue(options: { min: Millis; wholeSeconds?: boolean }): ValueType<Millis> {
  return {
    placeholder: 'duration',
    parse(text) {
      const ms = parseDuration(text);
      if (!Number.isInteger(ms)) throw new Error('must be a whole number of milliseconds');
      if (options.wholeSeconds === true && ms % 1000 !== 0) throw new Error('must be a whole number of seconds, such as 10s');
      if (ms < options.min) throw new Error(`must be at least ${formatDuration(options.min)}`);
      if (ms > MAX_TIMER_MS) throw new Error(`must be at most ${formatDuration(MAX_TIMER_MS)}, the maximum Node.js timer delay`);
      return ms;
    },
    format: formatDuration,
  };
}

export function byteSizeValue(min: number): ValueType<number> {
  return {
    placeholder: 'size',
    parse(text) {
      const bytes = parseByteSize(text);
      if (bytes < min) throw new Error(`must be at least ${formatByteSize(min)}`);
      return bytes;
    },
    format: formatByteSize,
  };
}

export function enumValue<T extends string>(choices: readonly T[]): ValueType<T> {
  return {
    placeholder: choices.join('|'),
    parse(text) {
      const choice = choices.find((candidate) => candidate === text);
      if (choice === undefined) throw new Error(`must be one of ${choices.join(', ')}`);
      return choice;
    },
    format: (value) => value,
  };
}

/** A directory path, resolved against the working directory. */
export const directoryValue: ValueType<string> = {
  placeholder: 'path',
  parse(text) {
    if (text.trim() === '') throw new Error('must not be empty');
    return path.resolve(text);
  },
  format: (value) => value,
};

/**
 * A Docker network name. The pattern is the one Docker enforces for container names; `host` and
 * `none` are rejected because replicas need their own IP address on the network.
 */
export const dockerNetworkValue: ValueType<string> = {
  placeholder: 'name',
  parse(text) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]+$/.test(text)) {
      throw new Error('must be 2 or more letters, digits, "_", "." or "-", starting with a letter or digit');
    }
    if (text === 'host' || text === 'none') throw new Error('replicas need their own IP address, so use a bridge network');
    return text;
  },
  format: (value) => value,
};

/** Returns the type of a comma- or space-separated list of `item`. An empty text is an empty list. */
export function listValue<T>(item: ValueType<T>, placeholder: string): ValueType<T[]> {
  return {
    placeholder,
    parse(text) {
      return text
        .split(/[\s,]+/)
        .filter((part) => part !== '')
        .map((part) => item.parse(part));
    },
    format: (values) => values.map((value) => item.format(value)).join(','),
  };
}

/** Wraps a parser whose result is also its text form, such as a checked address. */
export function checkedValue<T>(placeholder: string, parse: (text: string) => T, format: (value: T) => string): ValueType<T> {
  return { placeholder, parse, format };
}
