/**
 * Child process for the store crash test: rewrites services.json in a bounded loop until the
 * parent kills it. Prints "ready" after the first write. Usage: store-writer.ts <dataDir>
 */
import { silentLogger } from '../../src/log.js';
import { ServiceStore } from '../../src/store/service-store.js';

const dataDir = process.argv[2];
if (dataDir === undefined) throw new Error('usage: store-writer.ts <dataDir>');

const store = new ServiceStore({ dataDir, logger: silentLogger() });
await store.load();
for (let generation = 1; generation <= 100_000; generation += 1) {
  await store.put({
    name: `svc-${generation % 50}`,
    image: '127.0.0.1:1/app:1',
    port: 8080,
    minReplicas: 0,
    maxReplicas: 10,
    // A large value makes each write take long enough to be interrupted mid-way.
    env: { PADDING: 'x'.repeat(64 * 1024) },
    hosts: [],
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:00:00.000Z',
    generation,
  });
  if (generation === 1) process.stdout.write('ready\n');
}
