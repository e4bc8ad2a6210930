import { startLuma } from './app.js';
import { describeError, isLumaError } from './errors.js';
import { createLogger } from './log.js';
import { parseCommandLine, renderHelp } from './config/settings.js';

const VERSION = '0.1.0';
/** Time SIGTERM leaves for in-flight wake-ups before the process exits anyway. */
const SHUTDOWN_DEADLINE_MS = 30_000;

async function main(): Promise<void> {
  let commandLine;
  try {
    commandLine = parseCommandLine(process.argv.slice(2), process.env);
  } catch (error) {
    process.stderr.write(`luma: ${describeError(error)}\nRun "luma -help" to list the settings.\n`);
    process.exit(2);
  }
  if (commandLine.command === 'help') {
    process.stdout.write(renderHelp());
    return;
  }
  if (commandLine.command === 'version') {
    process.stdout.write(`luma ${VERSION}\n`);
    return;
  }

  const { settings, warnings } = commandLine;
  const logger = createLogger(settings.logLevel);
  for (const name of warnings) logger.warn({ variable: name }, 'ignoring unknown LUMA_ environment variable');

  let luma;
  try {
    luma = await startLuma(settings, logger);
  } catch (error) {
    const code = isLumaError(error) ? error.code : undefined;
    logger.fatal({ err: error, code }, `luma failed to start: ${describeError(error)}`);
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 100).unref();
    return;
  }

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutdown requested');
    const deadline = setTimeout(() => {
      logger.warn({ deadlineMs: SHUTDOWN_DEADLINE_MS }, 'shutdown deadline passed, exiting');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();
    luma.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`luma: ${describeError(error)}\n`);
  process.exit(1);
});
