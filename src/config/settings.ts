import { describeError, LumaError, SettingError } from '../errors.js';
import {
  environmentVariable,
  SETTING_DEFINITIONS,
  type SettingDefinition,
  type Settings,
} from './definitions.js';
import { parseFlags } from './flags.js';

export { environmentVariable, SETTING_DEFINITIONS, type Settings, type UpstreamMode } from './definitions.js';
export { renderHelp, renderSettingsTable } from './help.js';

/**
 * Command requested on the command line. `warnings` contains the names of environment variables
 * that start with `LUMA_` but match no setting, which are usually typos. `main` should log them.
 */
export type CommandLine =
  | { command: 'run'; settings: Settings; warnings: string[] }
  | { command: 'help' }
  | { command: 'version' };

/** Environment variables read outside the settings table. */
const OTHER_LUMA_VARIABLES = new Set(['LUMA_API_TOKEN']);

const SWITCHES = new Set(['help', 'h', 'version']);

type SettingKey = keyof Settings;
const SETTING_KEYS = Object.keys(SETTING_DEFINITIONS) as SettingKey[];

/**
 * Parses the command line and environment. `-help`, `-h` and `-version` win over everything
 * else, even over invalid settings. Performs no I/O.
 * Throws SettingError (code `invalid_setting`) naming the flag, its environment variable and the
 * bad value, or LumaError `invalid_setting` for an unknown flag or a stray argument.
 */
export function parseCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv): CommandLine {
  const valueFlags = new Set(SETTING_KEYS.map((key) => SETTING_DEFINITIONS[key].flag));
  const flags = parseFlags(argv, { valueFlags, switches: SWITCHES });
  if (flags.switches.has('help') || flags.switches.has('h')) return { command: 'help' };
  if (flags.switches.has('version')) return { command: 'version' };

  const settings = {} as Record<SettingKey, unknown>;
  for (const key of SETTING_KEYS) {
    settings[key] = resolveSetting(SETTING_DEFINITIONS[key] as SettingDefinition<unknown>, flags.values, env);
  }
  const typed = settings as Settings;
  checkRelations(typed);

  return { command: 'run', settings: typed, warnings: unknownVariables(env) };
}

/**
 * Parses settings from flags (`argv` without the node and script paths) and the environment.
 * A flag wins over its `LUMA_*` variable, which wins over the default; an empty variable counts
 * as unset. Rejects `-help` and `-version`, which only `parseCommandLine` handles. Performs no I/O.
 */
export function parseSettings(argv: readonly string[], env: NodeJS.ProcessEnv): Settings {
  const commandLine = parseCommandLine(argv, env);
  if (commandLine.command !== 'run') {
    throw new LumaError('invalid_setting', `-${commandLine.command} is not a setting; handle it with parseCommandLine`);
  }
  return commandLine.settings;
}

/** Returns each setting as flag text, keyed by flag name, for the start-up log line. */
export function formatSettings(settings: Settings): Record<string, string> {
  const formatted: Record<string, string> = {};
  for (const key of SETTING_KEYS) {
    const definition = SETTING_DEFINITIONS[key] as SettingDefinition<unknown>;
    formatted[definition.flag] = definition.type.format(settings[key]);
  }
  return formatted;
}

function resolveSetting(
  definition: SettingDefinition<unknown>,
  flagValues: ReadonlyMap<string, string>,
  env: NodeJS.ProcessEnv,
): unknown {
  const variable = environmentVariable(definition);
  const label = `-${definition.flag} (env ${variable})`;

  let text = flagValues.get(definition.flag);
  let source = label;
  if (text === undefined && env[variable] !== undefined && env[variable] !== '') {
    text = env[variable];
  }
  if (text === undefined) {
    if (typeof definition.defaultValue === 'string') {
      text = definition.defaultValue;
    } else {
      const computed = definition.defaultValue(env);
      text = computed.text;
      if (computed.source !== 'default') source = `${computed.source}, the default of ${label}`;
    }
  }

  try {
    return definition.type.parse(text);
  } catch (error) {
    throw new SettingError(source, text, describeError(error));
  }
}

/** Checks constraints between settings, naming the setting to change. */
function checkRelations(settings: Settings): void {
  if (settings.tlsPort !== 0 && settings.tlsPort === settings.port) {
    throw new SettingError(
      labelOf(SETTING_DEFINITIONS.tlsPort),
      String(settings.tlsPort),
      `must differ from -${SETTING_DEFINITIONS.port.flag} (${settings.port})`,
    );
  }

  const limit = SETTING_DEFINITIONS.maxReplicasLimit;
  if (settings.defaultMaxReplicas > settings.maxReplicasLimit) {
    throw new SettingError(
      labelOf(SETTING_DEFINITIONS.defaultMaxReplicas),
      String(settings.defaultMaxReplicas),
      `must be at most -${limit.flag} (${settings.maxReplicasLimit})`,
    );
  }

  const perService = SETTING_DEFINITIONS.wakeQueuePerService;
  if (settings.wakeQueueTotal < settings.wakeQueuePerService) {
    throw new SettingError(
      labelOf(SETTING_DEFINITIONS.wakeQueueTotal),
      String(settings.wakeQueueTotal),
      `must be at least -${perService.flag} (${settings.wakeQueuePerService})`,
    );
  }
}

function labelOf(definition: { flag: string }): string {
  return `-${definition.flag} (env ${environmentVariable(definition)})`;
}

function unknownVariables(env: NodeJS.ProcessEnv): string[] {
  const known = new Set(SETTING_KEYS.map((key) => environmentVariable(SETTING_DEFINITIONS[key])));
  return Object.keys(env)
    .filter((name) => name.startsWith('LUMA_') && !known.has(name) && !OTHER_LUMA_VARIABLES.has(name))
    .sort();
}
