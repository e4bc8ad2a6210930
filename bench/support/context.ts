/** The scenario interface, and the runner's context for scenarios: cleanup tracking and the shared cold-start floor. */
import { DirectStarter, type DirectStartSample } from './direct-start.js';
import { TEST_IMAGE } from './environment.js';
import type { Table } from './report.js';
import { progress } from './report.js';
import { startStack, type Stack, type StackOptions } from './stack.js';

/** Warning and error lines of the controller printed when a scenario fails. */
const LOGGED_PROBLEMS = 20;

export interface Scenario {
  /** Name on the command line, such as `cold-start`. */
  name: string;
  /** One line on what the scenario measures. */
  description: string;
  run(context: BenchContext): Promise<Table[]>;
}

/**
 * Cleanup tasks of resources that are still open, so an interrupted run (SIGINT, SIGTERM) can
 * remove its containers, networks and processes.
 */
export class Cleanups {
  private readonly tasks: Array<() => Promise<void>> = [];

  /** Registers `task`. The returned function runs it at once, unless it already ran, and unregisters it. */
  add(task: () => Promise<void>): () => Promise<void> {
    let ran = false;
    const once = async () => {
      if (ran) return;
      ran = true;
      const index = this.tasks.indexOf(once);
      if (index !== -1) this.tasks.splice(index, 1);
      await task();
    };
    this.tasks.push(once);
    return once;
  }

  /** Runs every registered task, newest first; failures are printed and do not stop the others. */
  async runAll(): Promise<void> {
    for (const task of [...this.tasks].reverse()) {
      await task().catch((error: unknown) => progress(`cleanup failed: ${error instanceof Error ? error.message : String(error)}`));
    }
  }
}

export class BenchContext {
  readonly cleanups = new Cleanups();
  private readonly floorSamples: DirectStartSample[] = [];

  /**
   * Returns at least `count` measurements of the cold-start floor (see DirectStarter), measuring
   * only the ones that earlier scenarios of this run did not already measure. The first container
   * of a run is a warm-up and is not kept, because the engine's first start after a while is slower.
   */
  async startFloor(count: number): Promise<DirectStartSample[]> {
    if (this.floorSamples.length >= count) return this.floorSamples.slice();

    const { starter, close } = this.directStarter();
    try {
      if (this.floorSamples.length === 0) await starter.measure();
      while (this.floorSamples.length < count) {
        this.floorSamples.push(await starter.measure());
        progress(`floor: direct start ${this.floorSamples.length}/${count} took ${Math.round(this.floorSamples.at(-1)?.totalMs ?? 0)} ms`);
      }
    } finally {
      await close();
    }
    return this.floorSamples.slice();
  }

  /** Adds floor measurements made by a scenario itself, for later scenarios to reuse. */
  recordFloor(samples: readonly DirectStartSample[]): void {
    this.floorSamples.push(...samples);
  }

  /** Creates a DirectStarter that is closed at the latest when the scenario ends. */
  directStarter(): { starter: DirectStarter; close: () => Promise<void> } {
    const starter = new DirectStarter(TEST_IMAGE);
    return { starter, close: this.cleanups.add(() => starter.close()) };
  }

  /** Runs `body` with a started Caddy and Luma, and closes them afterwards, also when `body` throws. */
  async withStack<T>(options: StackOptions, body: (stack: Stack) => Promise<T>): Promise<T> {
    progress(`start caddy and luma (${options.mode} mode${options.args?.length ? `, ${options.args.join(' ')}` : ''})`);
    const stack = await startStack(options);
    const close = this.cleanups.add(() => stack.close());
    try {
      return await body(stack);
    } catch (error) {
      const problems = stack.luma
        .output()
        .split('\n')
        .filter((line) => /"level":(40|50|60)/.test(line))
        .slice(-LOGGED_PROBLEMS);
      if (problems.length > 0) progress(`last warnings and errors of the controller:\n${problems.join('\n')}`);
      throw error;
    } finally {
      await close();
    }
  }
}
