import {
  describeDefault,
  environmentVariable,
  SETTING_DEFINITIONS,
  type SettingDefinition,
} from './definitions.js';

const definitions = Object.values(SETTING_DEFINITIONS) as Array<SettingDefinition<unknown>>;

const TOKEN_NOTE =
  'The API token is not a flag. Luma reads it from LUMA_API_TOKEN, else from the file api-token in the data directory, ' +
  'which it creates with a random token on first start.';

/** Returns the `-help` text: usage, every setting with its environment variable and default. */
export function renderHelp(): string {
  const lines = [
    'Usage: luma [flags]',
    '',
    'Luma runs containers on demand behind Caddy: a request wakes a sleeping service, replicas',
    'scale with concurrent requests, and idle services scale to zero.',
    '',
    'Flags (-name=value, -name value, --name value; each flag overrides its environment variable):',
  ];

  for (const definition of definitions) {
    const defaultText = describeDefault(definition);
    lines.push(
      `  -${definition.flag} ${definition.type.placeholder}`,
      ...wrap(definition.description, 90).map((line) => `        ${line}`),
      `        env ${environmentVariable(definition)}, default ${defaultText === '' ? '""' : defaultText}`,
    );
  }

  lines.push(
    '  -help, -h',
    '        Print this help and exit.',
    '  -version',
    '        Print the version and exit.',
    '',
    ...wrap(TOKEN_NOTE, 98),
    '',
  );
  return lines.join('\n');
}

/** Returns the settings as a Markdown table for the README. */
export function renderSettingsTable(): string {
  const rows = [
    '| Flag | Environment variable | Value | Default | Description |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const definition of definitions) {
    const defaultText = describeDefault(definition);
    const cells = [
      `\`-${definition.flag}\``,
      `\`${environmentVariable(definition)}\``,
      definition.type.placeholder.replaceAll('|', ' or '),
      defaultText === '' ? '(empty)' : `\`${defaultText}\``,
      definition.description.replaceAll('|', '\\|'),
    ];
    rows.push(`| ${cells.join(' | ')} |`);
  }
  rows.push('', TOKEN_NOTE);
  return `${rows.join('\n')}\n`;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}
