/**
 * DockerRuntime and the readiness probe against the real engine, with the test app image built
 * by scripts/build-image.sh. Every container and network is labelled with a unique instance id
 * (and the test labels) and removed in afterAll. Registries used for pull errors run on 127.0.0.1.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect as connectSocket, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { promisify } from 'node:util';
import Dockerode from 'dockerode';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeUntilReady } from '../../src/controller/readiness.js';
import { DockerRuntime, type ReplicaEvent } from '../../src/docker/index.js';
import { isLumaError, type LumaError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { LABELS, type ServiceSpec } from '../../src/model.js';
import { startFakeRegistry, type FakeRegistry } from '../support/fake-registry.js';
import { testLabels } from '../support/labels.js';
import { waitFor } from '../support/ports.js';

const execFileAsync = promisify(execFile);

const IMAGE = 'luma-test-app:latest';
const SUFFIX = randomBytes(4).toString('hex');
const INSTANCE_ID = `docker-test-${SUFFIX}`;
const NETWORK = `luma-docker-test-${SUFFIX}`;
const CREATED_NETWORK = `luma-docker-test-created-${SUFFIX}`;

const docker = new Dockerode({ socketPath: '/var/run/docker.sock' });
let runtime: DockerRuntime;
/** Containers this file created outside the runtime (no Luma instance label of ours). */
const foreignContainers: string[] = [];
const registries: FakeRegistry[] = [];

function spec(name: string, overrides: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    name,
    image: IMAGE,
    port: 8080,
    minReplicas: 0,
    maxReplicas: 1,
    env: {},
    hosts: [],
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    generation: 1,
    ...overrides,
  };
}

/** Creates and starts a replica; returns its id and, when it started, its address. */
async function startReplica(service: ServiceSpec): Promise<{ id: string; address?: string; startError?: LumaError }> {
  const { id } = await runtime.createReplica({ spec: service, specHash: 'test-hash' });
  try {
    const { ip } = await runtime.startReplica(id);
    return { id, address: `${ip}:${service.port}` };
  } catch (error) {
    if (!isLumaError(error)) throw error;
    return { id, startError: error };
  }
}

function exitOf(id: string): () => Promise<{ exitCode: number | null } | undefined> {
  return async () => {
    const summary = await runtime.inspectReplica(id);
    if (summary === undefined) return { exitCode: null };
    return summary.running ? undefined : { exitCode: summary.exitCode };
  };
}

async function removeQuietly(id: string): Promise<void> {
  await docker
    .getContainer(id)
    .remove({ force: true })
    .catch(() => undefined);
}

beforeAll(async () => {
  await execFileAsync('bash', ['scripts/build-image.sh', IMAGE, 'test/app'], { timeout: 120_000 });
  await docker.createNetwork({ Name: NETWORK, Driver: 'bridge', Labels: testLabels() });

  runtime = new DockerRuntime({ logger: silentLogger(), instanceId: INSTANCE_ID, network: NETWORK, containerLabels: testLabels() });
  await runtime.connect();
  await runtime.ensureNetwork();
});

afterAll(async () => {
  if (runtime !== undefined) {
    const replicas = await runtime.listReplicas().catch(() => []);
    await Promise.all(replicas.map((replica) => removeQuietly(replica.id)));
  }
  await Promise.all(foreignContainers.map((id) => removeQuietly(id)));
  for (const name of [NETWORK, CREATED_NETWORK]) {
    await docker
      .getNetwork(name)
      .remove()
      .catch(() => undefined);
  }
  await Promise.all(registries.map((registry) => registry.close()));
});

describe('DockerRuntime', () => {
  it('connect reports engine version', async () => {
    const version = await runtime.connect();
    expect(version.version).toMatch(/^\d+\.\d+/);
    expect(version.apiVersion).toMatch(/^1\.\d+$/);
  });

  it('connect to missing socket fails', async () => {
    const broken = new DockerRuntime({
      logger: silentLogger(),
      instanceId: INSTANCE_ID,
      network: NETWORK,
      dockerHost: `unix:///tmp/luma-missing-${SUFFIX}.sock`,
    });
    const error = await broken.connect().catch((caught: unknown) => caught);
    expect(isLumaError(error, 'docker_unavailable')).toBe(true);
    expect((error as Error).message).toContain('start the Docker engine');
  });

  it('ensureNetwork creates labelled network', async () => {
    const other = new DockerRuntime({ logger: silentLogger(), instanceId: INSTANCE_ID, network: CREATED_NETWORK, containerLabels: testLabels() });
    await other.ensureNetwork();
    await other.ensureNetwork();

    const info = (await docker.getNetwork(CREATED_NETWORK).inspect()) as { Driver: string; Labels: Record<string, string> };
    expect(info.Driver).toBe('bridge');
    expect(info.Labels).toEqual({ ...testLabels(), [LABELS.instance]: INSTANCE_ID });
    await docker.getNetwork(CREATED_NETWORK).remove();
  });

  it('createReplica applies container settings', async () => {
    const service = spec('settings', {
      env: { PORT: '9999', GREETING: 'hello world' },
      command: ['node', '/app/server.js'],
      resources: { memoryBytes: 128 * 1024 * 1024, cpus: 0.5 },
      generation: 7,
    });
    const { id, name } = await runtime.createReplica({ spec: service, specHash: 'hash-7', stopGracePeriodMs: 2500 });
    const info = await docker.getContainer(id).inspect();

    expect(name).toMatch(/^luma-settings-[0-9a-f]{8}$/);
    expect(info.Name).toBe(`/${name}`);
    // Labels of the image (here dev.luma.build-hash) are inherited, so only ours are compared.
    expect(info.Config.Labels).toMatchObject({
      ...testLabels(),
      [LABELS.instance]: INSTANCE_ID,
      [LABELS.service]: 'settings',
      [LABELS.generation]: '7',
      [LABELS.specHash]: 'hash-7',
    });
    expect(info.Config.Env).toContain('PORT=8080');
    expect(info.Config.Env).toContain('GREETING=hello world');
    expect(info.Config.Env).not.toContain('PORT=9999');
    expect(info.Config.Cmd).toEqual(['node', '/app/server.js']);
    expect((info.Config as { StopTimeout?: number }).StopTimeout).toBe(3);
    expect(info.HostConfig.Init).toBe(true);
    expect(info.HostConfig.RestartPolicy?.Name).toBe('no');
    expect(info.HostConfig.Memory).toBe(128 * 1024 * 1024);
    expect(info.HostConfig.NanoCpus).toBe(500_000_000);
    expect(Object.keys(info.NetworkSettings.Networks)).toEqual([NETWORK]);

    await runtime.removeReplica(id);
  });

  it('createReplica rejects missing image', async () => {
    const error = await runtime
      .createReplica({ spec: spec('noimage', { image: `luma-missing-${SUFFIX}:latest` }), specHash: 'h' })
      .catch((caught: unknown) => caught);
    expect(isLumaError(error, 'image_not_found')).toBe(true);
  });

  it('createReplica rejects tiny memory limit', async () => {
    const error = await runtime
      .createReplica({ spec: spec('tinymemory', { resources: { memoryBytes: 4 * 1024 * 1024 } }), specHash: 'h' })
      .catch((caught: unknown) => caught);
    expect(isLumaError(error, 'replica_exited')).toBe(true);
    expect((error as Error).message).toContain('Minimum memory limit');
  });

  it('replica starts, answers and stops fast', async () => {
    const service = spec('lifecycle');
    const { id, address, startError } = await startReplica(service);
    expect(startError).toBeUndefined();
    if (address === undefined) throw new Error('replica has no address');

    const ready = await probeUntilReady({ address, timeoutMs: 10_000, hasExited: exitOf(id) });
    console.log(`docker test: replica ready ${ready.elapsedMs} ms after start returned (${ready.attempts} probes)`);
    const response = await request(`http://${address}/lifecycle/echo?x=1`, { method: 'POST', body: 'hello', reset: true });
    const echo = (await response.body.json()) as { path: string; bodyLength: number; containerId: string };
    expect(response.statusCode).toBe(200);
    expect(echo.path).toBe('/lifecycle/echo');
    expect(echo.bodyLength).toBe(5);
    expect(id.startsWith(echo.containerId)).toBe(true);

    const running = await runtime.inspectReplica(id);
    expect(running).toMatchObject({ id, service: 'lifecycle', running: true, exitCode: null, ip: address.split(':')[0] });

    const stopStartedAt = Date.now();
    await runtime.stopReplica(id, 10_000);
    const stopMs = Date.now() - stopStartedAt;
    console.log(`docker test: SIGTERM stop took ${stopMs} ms`);
    expect(stopMs).toBeLessThan(1000);

    const stopped = await runtime.inspectReplica(id);
    expect(stopped).toMatchObject({ running: false, exitCode: 0, oomKilled: false, ip: null, state: 'exited' });
    await runtime.stopReplica(id, 1000);

    await runtime.removeReplica(id);
    expect(await runtime.inspectReplica(id)).toBeUndefined();
    await runtime.removeReplica(id);
    await runtime.stopReplica(id, 1000);
  });

  it('stopReplica kills after grace period', async () => {
    const service = spec('stubborn', {
      command: ['node', '-e', "process.on('SIGTERM', () => {}); console.log('ignoring SIGTERM'); setInterval(() => {}, 1000)"],
    });
    const { id, startError } = await startReplica(service);
    expect(startError).toBeUndefined();
    // A SIGTERM before node installs its handler would end it at once.
    await waitFor('handler installed', async () => ((await runtime.tailLogs(id, 1))[0] === 'ignoring SIGTERM' ? true : undefined), 10_000, 20);

    const stopStartedAt = Date.now();
    await runtime.stopReplica(id, 1000);
    const stopMs = Date.now() - stopStartedAt;

    expect(stopMs).toBeGreaterThanOrEqual(900);
    expect(stopMs).toBeLessThan(3000);
    expect(await runtime.inspectReplica(id)).toMatchObject({ running: false, exitCode: 137 });
    await runtime.removeReplica(id);
  });

  it('reports missing executable exit 127', async () => {
    const { id, address, startError } = await startReplica(spec('noexec', { command: ['/luma-missing-binary'] }));

    // docker-init starts, then fails to run the command. Whether the container has already
    // exited when startReplica inspects it for its address depends on timing, so the exit shows
    // up either there or in the readiness probe.
    let failure = startError;
    if (failure === undefined) {
      expect(address).toBeDefined();
      failure = await probeUntilReady({ address: address!, timeoutMs: 10_000, hasExited: exitOf(id) }).then(
        () => undefined,
        (error: unknown) => (isLumaError(error) ? error : undefined),
      );
    }
    expect(failure?.code).toBe('replica_exited');
    expect(failure?.details.exitCode).toBe(127);
    await runtime.removeReplica(id);
  });

  it('labels decide replica ownership', async () => {
    const { id: own } = await runtime.createReplica({ spec: spec('owned'), specHash: 'h' });
    const otherInstance = await docker.createContainer({
      name: `luma-owned-${randomBytes(4).toString('hex')}`,
      Image: IMAGE,
      Labels: { ...testLabels(), [LABELS.instance]: `other-${SUFFIX}`, [LABELS.service]: 'owned' },
    });
    const unlabelled = await docker.createContainer({
      name: `luma-owned-${randomBytes(4).toString('hex')}`,
      Image: IMAGE,
      Labels: testLabels(),
    });
    foreignContainers.push(otherInstance.id, unlabelled.id);

    const ids = (await runtime.listReplicas()).map((replica) => replica.id);
    expect(ids).toContain(own);
    expect(ids).not.toContain(otherInstance.id);
    expect(ids).not.toContain(unlabelled.id);

    const other = new DockerRuntime({ logger: silentLogger(), instanceId: `other-${SUFFIX}`, network: NETWORK });
    expect((await other.listReplicas()).map((replica) => replica.id)).toEqual([otherInstance.id]);

    const listed = (await runtime.listReplicas()).find((replica) => replica.id === own);
    expect(listed).toMatchObject({ service: 'owned', generation: 1, specHash: 'h', state: 'created', running: false, exitCode: null });
    await runtime.removeReplica(own);
  });

  it('events report start die oom destroy', async () => {
    const events: ReplicaEvent[] = [];
    const subscription = runtime.watchEvents((event) => events.push(event));
    try {
      await waitFor('event stream connected', () => (events.some((event) => event.kind === 'connected') ? true : undefined));

      const exiting = await startReplica(spec('exits', { command: ['node', '-e', 'setTimeout(() => process.exit(3), 300)'] }));
      // 96 MiB: node itself needs about 40 MiB, then the filled buffers pass the limit.
      const hungry = await startReplica(
        spec('hungry', {
          command: ['node', '-e', 'const kept = []; setInterval(() => kept.push(Buffer.alloc(16 * 1024 * 1024, 1)), 10)'],
          resources: { memoryBytes: 96 * 1024 * 1024 },
        }),
      );

      const find = (kind: string, id: string) => events.find((event) => event.kind === kind && 'id' in event && event.id === id);
      await waitFor('die of exiting replica', () => find('die', exiting.id), 10_000, 50);
      await waitFor('oom of hungry replica', () => find('oom', hungry.id), 10_000, 50);
      await waitFor('die of hungry replica', () => find('die', hungry.id), 10_000, 50);

      expect(find('start', exiting.id)).toEqual({ kind: 'start', id: exiting.id, service: 'exits' });
      expect(find('die', exiting.id)).toEqual({ kind: 'die', id: exiting.id, service: 'exits', exitCode: 3 });
      expect(find('die', hungry.id)).toMatchObject({ service: 'hungry', exitCode: 137 });
      expect(await runtime.inspectReplica(hungry.id)).toMatchObject({ running: false, oomKilled: true, exitCode: 137 });

      await runtime.removeReplica(exiting.id);
      await runtime.removeReplica(hungry.id);
      await waitFor('destroy events', () => (find('destroy', exiting.id) && find('destroy', hungry.id) ? true : undefined), 10_000, 50);
      expect(events.every((event) => !('service' in event) || ['exits', 'hungry'].includes(event.service))).toBe(true);
    } finally {
      subscription.close();
    }
  });

  it('events reconnect after connection loss', async () => {
    // A TCP proxy to the engine's socket, whose connections the test cuts to simulate a restart.
    const proxied = new Set<Socket>();
    const proxy = createTcpServer((client) => {
      const engine = connectSocket('/var/run/docker.sock');
      for (const socket of [client, engine]) {
        proxied.add(socket);
        socket.on('close', () => proxied.delete(socket));
        socket.on('error', () => undefined);
      }
      client.pipe(engine).pipe(client);
      client.on('close', () => engine.destroy());
      engine.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const viaProxy = new DockerRuntime({
      logger: silentLogger(),
      instanceId: INSTANCE_ID,
      network: NETWORK,
      dockerHost: `tcp://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    });

    const events: ReplicaEvent[] = [];
    const subscription = viaProxy.watchEvents((event) => events.push(event));
    const count = (kind: string) => events.filter((event) => event.kind === kind).length;
    try {
      await waitFor('first connection', () => (count('connected') === 1 ? true : undefined), 10_000, 20);
      for (const socket of proxied) socket.destroy();
      await waitFor('disconnect', () => (count('disconnected') === 1 ? true : undefined), 10_000, 20);
      await waitFor('reconnection', () => (count('connected') === 2 ? true : undefined), 10_000, 20);

      const { id } = await startReplica(spec('reconnected'));
      await waitFor('start event after reconnection', () => events.find((event) => event.kind === 'start' && event.id === id), 10_000, 20);
      await runtime.removeReplica(id);

      expect(events.map((event) => event.kind).slice(0, 3)).toEqual(['connected', 'disconnected', 'connected']);
    } finally {
      subscription.close();
      for (const socket of proxied) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('tailLogs returns crash output', async () => {
    const { id } = await startReplica(spec('crashing', { env: { CRASH_ON_BOOT: '3' } }));
    await waitFor('crashed replica', async () => ((await runtime.inspectReplica(id))?.running === false ? true : undefined), 10_000, 50);

    expect(await runtime.inspectReplica(id)).toMatchObject({ running: false, exitCode: 3 });
    // Docker copies stdout and stderr separately, so only the order within one stream is fixed.
    const lines = await runtime.tailLogs(id, 10);
    expect(lines).toHaveLength(3);
    expect(lines).toContain('test-app crash-on-boot: missing configuration DATABASE_URL');
    expect(lines.filter((line) => !line.includes('DATABASE_URL'))).toEqual([
      'test-app crash-on-boot: starting',
      'test-app crash-on-boot: exiting with code 3',
    ]);
    expect(await runtime.tailLogs(id, 1)).toEqual([lines[2]]);

    await runtime.removeReplica(id);
    expect(await runtime.tailLogs(id, 10)).toEqual([]);
  });
});

interface ReadinessCase {
  name: string;
  env: Record<string, string>;
  healthCheck?: { path: string; timeoutMs: number };
}

describe('readiness against containers', () => {
  it.each<ReadinessCase & { timeoutMs: number; minMs: number }>([
    { name: 'immediate', env: {}, timeoutMs: 10_000, minMs: 0 },
    { name: 'slow boot', env: { BOOT_DELAY_MS: '600' }, timeoutMs: 10_000, minMs: 600 },
    { name: '503 then ready', env: { FAIL_UNTIL_MS: '500' }, timeoutMs: 10_000, minMs: 500 },
    { name: 'health path', env: { FAIL_UNTIL_MS: '300' }, timeoutMs: 10_000, minMs: 300, healthCheck: { path: '/healthz', timeoutMs: 500 } },
  ])('becomes ready: $name', async ({ name, env, timeoutMs, minMs, healthCheck }) => {
    const { id, address, startError } = await startReplica(spec(name.replace(/\W+/g, '-'), { env }));
    expect(startError).toBeUndefined();
    if (address === undefined) throw new Error('replica has no address');

    const result = await probeUntilReady({ address, timeoutMs, healthCheck, hasExited: exitOf(id) });
    console.log(`docker test: ${name} ready after ${result.elapsedMs} ms, ${result.attempts} probes, last probe ${result.probeMs} ms`);
    expect(result.status).toBe(200);
    expect(result.elapsedMs).toBeGreaterThanOrEqual(minMs - 50);
    await runtime.removeReplica(id);
  });

  it.each<ReadinessCase & { code: LumaError['code']; message: string }>([
    { name: 'never answers', env: { NEVER_ANSWER: '1' }, code: 'startup_timeout', message: 'no response within' },
    { name: 'no listener', env: { NO_LISTEN: '1' }, code: 'startup_timeout', message: 'ECONNREFUSED' },
    { name: 'health path 404', env: {}, healthCheck: { path: '/status/404', timeoutMs: 500 }, code: 'startup_timeout', message: 'last: status 404' },
    { name: 'crash on boot', env: { CRASH_ON_BOOT: '4' }, code: 'replica_exited', message: 'exited with code 4' },
  ])('fails: $name', async ({ name, env, healthCheck, code, message }) => {
    const { id, address, startError } = await startReplica(spec(name.replace(/\W+/g, '-'), { env }));
    const startedAt = Date.now();
    // A crash can beat the address lookup in startReplica, which then reports it.
    const error =
      startError ??
      (await probeUntilReady({ address: address ?? '', timeoutMs: 1500, healthCheck, hasExited: exitOf(id) }).catch((caught: unknown) => caught));
    const elapsedMs = Date.now() - startedAt;

    expect(isLumaError(error, code)).toBe(true);
    expect((error as Error).message).toContain(message);
    if (code === 'replica_exited') {
      expect((error as LumaError).details.exitCode).toBe(4);
      expect(elapsedMs).toBeLessThan(1000);
    } else {
      expect(elapsedMs).toBeGreaterThanOrEqual(1500);
      expect(elapsedMs).toBeLessThan(2500);
    }
    await runtime.removeReplica(id);
  });
});

describe('ensureImage', () => {
  it('accepts a present image', async () => {
    await runtime.ensureImage(IMAGE);
  });

  it('reports unreachable registry as pull failure', async () => {
    const error = await runtime.ensureImage('127.0.0.1:1/luma-missing:latest').catch((caught: unknown) => caught);
    expect(isLumaError(error, 'image_pull_failed')).toBe(true);
    expect((error as LumaError).details.image).toBe('127.0.0.1:1/luma-missing:latest');
    expect((error as Error).message).toContain('connection refused');
  });

  it('reports unknown manifest as not found', async () => {
    const registry = await startFakeRegistry('manifest-unknown');
    registries.push(registry);
    const image = `${registry.host}/luma-missing:latest`;

    const results = await Promise.all([runtime.ensureImage(image), runtime.ensureImage(image)].map((pull) => pull.catch((caught: unknown) => caught)));

    for (const error of results) {
      expect(isLumaError(error, 'image_not_found')).toBe(true);
      expect((error as Error).message).toContain('manifest unknown');
    }
    // Both callers shared one pull.
    expect(registry.requests.filter((line) => line.includes('/manifests/'))).toHaveLength(2);
  });

  it('detects errors inside pull stream', async () => {
    const registry = await startFakeRegistry('layer-missing');
    registries.push(registry);

    const error = await runtime.ensureImage(`${registry.host}/luma-broken:latest`).catch((caught: unknown) => caught);

    expect(isLumaError(error, 'image_pull_failed')).toBe(true);
    expect((error as Error).message).toContain('unknown blob');
  });

  it('aborts a hanging pull', async () => {
    const registry = await startFakeRegistry('hang');
    registries.push(registry);
    const controller = new AbortController();
    const reason = new Error('wake cancelled');
    setTimeout(() => controller.abort(reason), 300);
    const startedAt = Date.now();

    await expect(runtime.ensureImage(`${registry.host}/luma-slow:latest`, controller.signal)).rejects.toBe(reason);
    expect(Date.now() - startedAt).toBeLessThan(1000);
  });
});
