import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { isLumaError, LumaError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import type { ServiceSpec } from '../../src/model.js';
import { loadOrCreateApiToken, loadOrCreateInstanceId } from '../../src/store/identity.js';
import { ServiceStore } from '../../src/store/service-store.js';

function spec(name: string, overrides: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    name,
    image: '127.0.0.1:1/app:1',
    port: 8080,
    minReplicas: 0,
    maxReplicas: 10,
    env: { GREETING: 'hello' },
    hosts: [],
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:00:00.000Z',
    generation: 1,
    ...overrides,
  };
}

async function rejection(promise: Promise<unknown>): Promise<LumaError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof LumaError) return error;
    throw error;
  }
  throw new Error('expected a LumaError rejection, but the promise resolved');
}

let dataDir: string;

beforeEach(async () => {
  dataDir = path.join(await mkdtemp(path.join(tmpdir(), 'luma-h3-store-')), 'data');
});

afterEach(async () => {
  await rm(path.dirname(dataDir), { recursive: true, force: true });
});

const newStore = () => new ServiceStore({ dataDir, logger: silentLogger() });

describe('ServiceStore', () => {
  it('starts empty without a file', async () => {
    const store = newStore();
    expect(await store.load()).toEqual([]);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
  });

  it('persists put and remove across loads', async () => {
    const store = newStore();
    await store.load();
    await store.put(spec('web', { command: ['node', 'server.js'], resources: { memoryBytes: 6_291_456 } }));
    await store.put(spec('api-backend'));
    await store.put(spec('web', { generation: 2 }));
    expect(await store.remove('api-backend')).toBe(true);
    expect(await store.remove('missing')).toBe(false);

    const reloaded = newStore();
    const services = await reloaded.load();
    expect(services).toEqual([spec('web', { generation: 2 })]);
    expect(reloaded.get('web')?.generation).toBe(2);
  });

  it('writes a versioned file with mode 0600', async () => {
    const store = newStore();
    await store.load();
    await store.put(spec('web'));

    const file = JSON.parse(await readFile(store.path, 'utf8')) as { version: number; services: ServiceSpec[] };
    expect(file.version).toBe(1);
    expect(file.services.map((service) => service.name)).toEqual(['web']);
    expect((await stat(store.path)).mode & 0o777).toBe(0o600);
  });

  it('returns copies of specs', async () => {
    const store = newStore();
    await store.load();
    const original = spec('web');
    await store.put(original);
    original.env.GREETING = 'changed';
    const fetched = store.get('web');
    if (fetched === undefined) throw new Error('web missing');
    fetched.env.GREETING = 'changed too';
    expect(store.get('web')?.env.GREETING).toBe('hello');
  });

  it('serialises concurrent writes in call order', async () => {
    const store = newStore();
    await store.load();
    const writes = Array.from({ length: 20 }, (_, index) => store.put(spec(`svc-${index}`, { generation: index + 1 })));
    writes.push(store.put(spec('svc-0', { generation: 100 })));
    await Promise.all(writes);

    const reloaded = newStore();
    const services = await reloaded.load();
    expect(services).toHaveLength(20);
    expect(reloaded.get('svc-0')?.generation).toBe(100);
    expect((await readdir(dataDir)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('survives a crash before rename', async () => {
    const store = newStore();
    await store.load();
    await store.put(spec('web'));
    // A crash between writing the temp file and renaming it leaves a partial temp file.
    const leftover = path.join(dataDir, 'services.json.3f9a2c.tmp');
    await writeFile(leftover, '{"version":1,"services":[{"name":"half');

    const reloaded = newStore();
    expect(await reloaded.load()).toEqual([spec('web')]);
    expect(await readdir(dataDir)).not.toContain('services.json.3f9a2c.tmp');
  });

  it('keeps state when a write fails', async () => {
    const store = newStore();
    await store.load();
    await store.put(spec('web'));
    // rename() cannot replace a directory with a file, so the next write fails.
    await rm(store.path);
    await mkdir(store.path);

    const error = await rejection(store.put(spec('db')));
    expect(error.code).toBe('store_write_failed');
    expect(error.details.path).toBe(store.path);
    expect(store.list().map((service) => service.name)).toEqual(['web']);
    expect((await readdir(dataDir)).filter((name) => name.endsWith('.tmp'))).toEqual([]);

    // The queue keeps working after a failure.
    await rm(store.path, { recursive: true });
    await store.put(spec('db'));
    expect(store.list().map((service) => service.name)).toEqual(['db', 'web']);
  });

  it.each([
    ['not JSON', '{"version":1,', /is not valid JSON/],
    ['an empty file', '', /is not valid JSON/],
    ['a wrong shape', '{"version":1,"services":[{"name":"web"}]}', /has invalid content \(services\.0\.image/],
    ['an unknown field', JSON.stringify({ version: 1, services: [{ ...spec('web'), extra: 1 }] }), /has invalid content/],
    ['a newer version', '{"version":2,"services":[]}', /format version 2, written by a newer Luma; .*upgrade Luma/],
    ['a duplicate name', JSON.stringify({ version: 1, services: [spec('web'), spec('web')] }), /lists the service web twice/],
  ])('rejects %s as corrupt', async (_case, content, message) => {
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, 'services.json'), content);

    const error = await rejection(newStore().load());
    expect(error.code).toBe('store_corrupt');
    expect(error.details.path).toBe(path.join(dataDir, 'services.json'));
    expect(error.message).toMatch(message);
    expect(await readFile(path.join(dataDir, 'services.json'), 'utf8')).toBe(content);
  });

  it('says how to recover from corruption', async () => {
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, 'services.json'), '[');
    const error = await rejection(newStore().load());
    expect(error.message).toMatch(/restore the file from a backup, or move it away to start with no services$/);
  });

  it('rejects use before load', async () => {
    const store = newStore();
    expect(() => store.list()).toThrow(/before load/);
    await expect(store.put(spec('web'))).rejects.toThrow(/before load/);
  });
});

describe('loadOrCreateInstanceId', () => {
  it('creates and then reuses the id', async () => {
    const id = await loadOrCreateInstanceId(dataDir);
    expect(id).toMatch(/^[0-9a-f]{12}$/);
    expect(await loadOrCreateInstanceId(dataDir)).toBe(id);
    expect((await readFile(path.join(dataDir, 'instance-id'), 'utf8')).trim()).toBe(id);
  });

  it('returns one id to concurrent callers', async () => {
    const ids = await Promise.all(Array.from({ length: 5 }, () => loadOrCreateInstanceId(dataDir)));
    expect(new Set(ids).size).toBe(1);
  });

  it('rejects a damaged id file', async () => {
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, 'instance-id'), 'not an id!\n');
    const error = await rejection(loadOrCreateInstanceId(dataDir));
    expect(error.code).toBe('store_corrupt');
    expect(error.message).toMatch(/does not contain an instance id/);
  });
});

describe('loadOrCreateApiToken', () => {
  it('prefers LUMA_API_TOKEN', async () => {
    const token = 'a'.repeat(20);
    expect(await loadOrCreateApiToken(dataDir, { LUMA_API_TOKEN: token })).toEqual({
      token,
      source: 'env',
      path: null,
      warnings: [],
    });
  });

  it('rejects a short LUMA_API_TOKEN without echoing it', async () => {
    const error = await rejection(loadOrCreateApiToken(dataDir, { LUMA_API_TOKEN: 'short-secret' }));
    expect(error.code).toBe('invalid_setting');
    expect(error.message).toMatch(/at least 16 characters/);
    expect(error.message).not.toContain('short-secret');
  });

  it('creates a 0600 token file once', async () => {
    const created = await loadOrCreateApiToken(dataDir, { LUMA_API_TOKEN: '' });
    expect(created.source).toBe('created');
    expect(created.token).toMatch(/^[0-9a-f]{64}$/);
    const tokenPath = path.join(dataDir, 'api-token');
    expect(created.path).toBe(tokenPath);
    expect((await stat(tokenPath)).mode & 0o777).toBe(0o600);

    const read = await loadOrCreateApiToken(dataDir, {});
    expect(read).toEqual({ token: created.token, source: 'file', path: tokenPath, warnings: [] });
  });

  it('warns about a readable token file', async () => {
    await mkdir(dataDir, { recursive: true });
    const tokenPath = path.join(dataDir, 'api-token');
    await writeFile(tokenPath, 'b'.repeat(32), { mode: 0o644 });
    const result = await loadOrCreateApiToken(dataDir, {});
    expect(result.token).toBe('b'.repeat(32));
    expect(result.warnings).toEqual([`API token file ${tokenPath} has mode 0644, so other users may read it; run chmod 600 ${tokenPath}`]);
  });

  it('rejects an empty token file', async () => {
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, 'api-token'), '\n', { mode: 0o600 });
    const error = await rejection(loadOrCreateApiToken(dataDir, {}));
    expect(isLumaError(error, 'store_corrupt')).toBe(true);
    expect(error.message).toMatch(/delete it to create a new token/);
  });
});

describe('ServiceStore crash safety', () => {
  it('loads after a writer is killed', async () => {
    const { spawn } = await import('node:child_process');
    const writer = path.join(import.meta.dirname, '../support/store-writer.ts');

    for (let attempt = 0; attempt < 2; attempt += 1) {
      const child = spawn(process.execPath, ['--import', 'tsx', writer, dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('store writer did not become ready in 20 s')), 20_000);
        child.stdout.on('data', () => {
          clearTimeout(timer);
          resolve();
        });
        child.on('exit', (code) => reject(new Error(`store writer exited early with code ${code}`)));
      });
      await new Promise((resolve) => setTimeout(resolve, 30 + attempt * 70));
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));

      const services = await newStore().load();
      expect(services.length).toBeGreaterThan(0);
      expect(services.every((service) => service.env.PADDING?.length === 64 * 1024)).toBe(true);
      expect((await readdir(dataDir)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    }
  }, 60_000);
});
