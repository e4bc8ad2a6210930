/** Prints the settings table of the README: `npx tsx scripts/settings-table.ts`. */
import { renderSettingsTable } from '../src/config/settings.js';

process.stdout.write(renderSettingsTable());
