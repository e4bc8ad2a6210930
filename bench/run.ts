/**
 * Luma's benchmarks: `npm run bench` runs every scenario, `npm run bench -- <scenario>...` the
 * named ones. Results are printed as Markdown tables on standard output, progress on standard
 * error. Needs the Docker engine, the caddy binary and permission to use both (root on the
 * reference machine); builds the test image when it is missing.
 */
import { burst } from './burst.js';
import { coldStart } from './cold-start.js';
import { replicaChange } from './replica-change.js';
import { scaleStep } from './scale-step.js';
import { BenchContext, type Scenario } from './support/context.js';
import { describeMachine, loadAverage, prepareEnvironment } from './support/environment.js';
import { print, progress } from './support/report.js';
import { warmPath } from './warm-path.js';

const SCENARIOS: readonly Scenario[] = [coldStart, warmPath, scaleStep, replicaChange, burst];

function usage(): string {
  const lines = SCENARIOS.map((scenario) => `  ${scenario.name.padEnd(16)} ${scenario.description}`);
  return `usage: npm run bench [-- <scenario>...]\n\nscenarios (all when none is named):\n${lines.join('\n')}\n`;
}

function selectScenarios(names: string[]): Scenario[] {
  if (names.length === 0) return [...SCENARIOS];
  const unknown = names.filter((name) => !SCENARIOS.some((scenario) => scenario.name === name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario ${unknown.join(', ')}\n\n${usage()}`);
    process.exit(2);
  }
  return SCENARIOS.filter((scenario) => names.includes(scenario.name));
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(usage());
    return 0;
  }
  const scenarios = selectScenarios(args);
  const context = new BenchContext();

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      progress(`${signal}: removing the containers, networks and processes of this run`);
      context.cleanups
        .runAll()
        .catch(() => undefined)
        .finally(() => process.exit(130));
    });
  }

  progress('check docker and caddy, build the test image if needed');
  const machine = await prepareEnvironment();
  const startedAt = Date.now();
  print(`### Luma benchmarks, ${new Date().toISOString()}\n`);
  print(`${describeMachine(machine)}\n- load average (1, 5, 15 min) at the start: ${await loadAverage()}\n`);

  const failed: string[] = [];
  for (const scenario of scenarios) {
    progress(`scenario ${scenario.name}: ${scenario.description}`);
    const scenarioStartedAt = Date.now();
    try {
      const tables = await scenario.run(context);
      const seconds = ((Date.now() - scenarioStartedAt) / 1000).toFixed(0);
      for (const table of tables) print(table.toString());
      print(`_${scenario.name}: ${seconds} s, load average after: ${await loadAverage()}_\n`);
    } catch (error) {
      failed.push(scenario.name);
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      print(`#### ${scenario.name} failed\n\n\`\`\`\n${message}\n\`\`\`\n`);
    } finally {
      await context.cleanups.runAll();
    }
  }

  print(`_total: ${((Date.now() - startedAt) / 1000).toFixed(0)} s_`);
  if (failed.length > 0) {
    progress(`failed scenarios: ${failed.join(', ')}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
