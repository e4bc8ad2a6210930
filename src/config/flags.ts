import { LumaError } from '../errors.js';

/**
 * Command-line flags in the style of Go's `flag` package, which Luma's original flags used:
 * `-port=9000`, `-port 9000`, `--port 9000` and `--port=9000` are the same. A flag given twice
 * keeps its last value. Switches (`-help`) take no value, or `=true` / `=false`.
 * Arguments after `--` are positional, and Luma takes none.
 */

export interface ParsedFlags {
  /** Value of each value flag given, by flag name without dashes. */
  values: Map<string, string>;
  /** Switches given and set to true, by name without dashes. */
  switches: Set<string>;
}

/** Parses `argv` against the known flag names. Throws LumaError `invalid_setting` naming the bad argument. */
export function parseFlags(
  argv: readonly string[],
  known: { valueFlags: ReadonlySet<string>; switches: ReadonlySet<string> },
): ParsedFlags {
  const values = new Map<string, string>();
  const switches = new Set<string>();

  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index] ?? '';
    if (argument === '--') {
      const rest = argv.slice(index + 1);
      if (rest.length > 0) throw unexpectedArgument(rest[0] ?? '');
      break;
    }
    if (!argument.startsWith('-') || argument === '-') throw unexpectedArgument(argument);

    const body = argument.startsWith('--') ? argument.slice(2) : argument.slice(1);
    const equals = body.indexOf('=');
    const name = equals === -1 ? body : body.slice(0, equals);
    const inlineValue = equals === -1 ? undefined : body.slice(equals + 1);

    if (known.switches.has(name)) {
      if (parseSwitchValue(name, inlineValue)) switches.add(name);
      else switches.delete(name);
      continue;
    }
    if (!known.valueFlags.has(name)) {
      throw new LumaError('invalid_setting', `unknown flag ${argument}; run luma -help for the list of flags`, {
        details: { flag: argument },
      });
    }

    if (inlineValue !== undefined) {
      values.set(name, inlineValue);
      continue;
    }
    const next = argv[index + 1];
    if (next === undefined) {
      throw new LumaError('invalid_setting', `flag -${name} needs a value, for example -${name}=VALUE`, {
        details: { flag: `-${name}` },
      });
    }
    values.set(name, next);
    index += 1;
  }

  return { values, switches };
}

function parseSwitchValue(name: string, value: string | undefined): boolean {
  if (value === undefined || value === 'true') return true;
  if (value === 'false') return false;
  throw new LumaError('invalid_setting', `flag -${name} takes no value or =true/=false, got ${JSON.stringify(value)}`, {
    details: { flag: `-${name}`, value },
  });
}

function unexpectedArgument(argument: string): LumaError {
  return new LumaError(
    'invalid_setting',
    `unexpected argument ${JSON.stringify(argument)}; luma takes only flags, run luma -help for the list`,
    { details: { argument } },
  );
}
