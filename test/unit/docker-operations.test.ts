import { describe, expect, it } from 'vitest';
import { OperationQueue } from '../../src/docker/operations.js';
import { isLumaError } from '../../src/errors.js';

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('OperationQueue', () => {
  it('caps calls in flight', async () => {
    const queue = new OperationQueue({ concurrency: 2, timeoutMs: 1000 });
    let running = 0;
    let maxRunning = 0;
    const call = async () => {
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      await delay(10);
      running -= 1;
    };

    await Promise.all(Array.from({ length: 6 }, () => queue.run('test', call)));

    expect(maxRunning).toBe(2);
    expect(queue.pending).toBe(0);
  });

  it('orders calls on one key', async () => {
    const queue = new OperationQueue({ concurrency: 4, timeoutMs: 1000 });
    const order: string[] = [];

    const start = queue.runFor('c1', 'start', async () => {
      await delay(30);
      order.push('start');
    });
    const failing = queue.runFor('c1', 'inspect', async () => {
      order.push('inspect');
      throw new Error('inspect failed');
    });
    const stop = queue.runFor('c1', 'stop', async () => {
      order.push('stop');
    });
    const other = queue.runFor('c2', 'stop', async () => {
      order.push('other');
    });

    await Promise.all([start, failing.catch(() => undefined), stop, other]);

    expect(order).toEqual(['other', 'start', 'inspect', 'stop']);
    await expect(failing).rejects.toThrow('inspect failed');
  });

  it('rejects a call past its time limit', async () => {
    const queue = new OperationQueue({ concurrency: 1, timeoutMs: 20 });
    let aborted = false;
    const startedAt = Date.now();

    const error = await queue
      .run('container start', (signal) => {
        signal.addEventListener('abort', () => (aborted = true));
        return new Promise<void>(() => undefined);
      })
      .catch((caught: unknown) => caught);

    expect(isLumaError(error, 'docker_unavailable')).toBe(true);
    expect((error as Error).message).toBe('docker container start failed: no reply within 20 ms');
    expect(aborted).toBe(true);
    expect(Date.now() - startedAt).toBeLessThan(500);
    // The slot is free again.
    await expect(queue.run('next', async () => 'ok')).resolves.toBe('ok');
  });
});
