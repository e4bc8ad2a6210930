import type Dockerode from 'dockerode';
import { describe, expect, it } from 'vitest';
import { buildCreateOptions, summaryFromInspect, summaryFromListEntry } from '../../src/docker/containers.js';
import { LABELS, type ServiceSpec } from '../../src/model.js';

function spec(overrides: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    name: 'hello',
    image: 'luma-test-app:latest',
    port: 8080,
    minReplicas: 0,
    maxReplicas: 3,
    env: {},
    hosts: [],
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    generation: 4,
    ...overrides,
  };
}

const context = { instanceId: 'instance-1', network: 'luma-net' };

describe('buildCreateOptions', () => {
  it('sets labels, init, network and restart policy', () => {
    const options = buildCreateOptions({ spec: spec(), specHash: 'abc123' }, context);

    expect(options.Labels).toEqual({
      [LABELS.instance]: 'instance-1',
      [LABELS.service]: 'hello',
      [LABELS.generation]: '4',
      [LABELS.specHash]: 'abc123',
    });
    expect(options.Image).toBe('luma-test-app:latest');
    expect(options.HostConfig?.Init).toBe(true);
    expect(options.HostConfig?.RestartPolicy).toEqual({ Name: 'no' });
    expect(options.HostConfig?.NetworkMode).toBe('luma-net');
    expect(options.NetworkingConfig?.EndpointsConfig).toEqual({ 'luma-net': {} });
    expect(options.StopSignal).toBeUndefined();
    expect(options.Cmd).toBeUndefined();
    expect(options.name).toMatch(/^luma-hello-[0-9a-f]{8}$/);
  });

  it('adds extra labels below own', () => {
    const options = buildCreateOptions(
      { spec: spec(), specHash: 'h' },
      { ...context, extraLabels: { team: 'web', [LABELS.instance]: 'spoofed' } },
    );
    expect(options.Labels?.team).toBe('web');
    expect(options.Labels?.[LABELS.instance]).toBe('instance-1');
  });

  it('forces PORT from the spec', () => {
    const options = buildCreateOptions({ spec: spec({ port: 3000, env: { PORT: '9999', GREETING: 'a=b' } }), specHash: 'h' }, context);
    expect(options.Env).toEqual(['GREETING=a=b', 'PORT=3000']);
  });

  it.each([
    { resources: undefined, memory: undefined, nanoCpus: undefined },
    { resources: { memoryBytes: 128 * 1024 * 1024 }, memory: 128 * 1024 * 1024, nanoCpus: undefined },
    { resources: { cpus: 0.5 }, memory: undefined, nanoCpus: 500_000_000 },
    { resources: { memoryBytes: 64 * 1024 * 1024, cpus: 1.25 }, memory: 64 * 1024 * 1024, nanoCpus: 1_250_000_000 },
  ])('maps resources $resources', ({ resources, memory, nanoCpus }) => {
    const options = buildCreateOptions({ spec: spec({ resources }), specHash: 'h' }, context);
    expect(options.HostConfig?.Memory).toBe(memory);
    expect(options.HostConfig?.MemorySwap).toBe(memory);
    expect(options.HostConfig?.NanoCpus).toBe(nanoCpus);
  });

  it.each([
    { stopGracePeriodMs: undefined, stopTimeout: 10 },
    { stopGracePeriodMs: 0, stopTimeout: 0 },
    { stopGracePeriodMs: 1, stopTimeout: 1 },
    { stopGracePeriodMs: 2500, stopTimeout: 3 },
  ])('rounds grace $stopGracePeriodMs ms up', ({ stopGracePeriodMs, stopTimeout }) => {
    const options = buildCreateOptions({ spec: spec(), specHash: 'h', stopGracePeriodMs }, context);
    expect(options.StopTimeout).toBe(stopTimeout);
  });

  it('uses command as Cmd', () => {
    const options = buildCreateOptions({ spec: spec({ command: ['node', 'other.js'] }), specHash: 'h' }, context);
    expect(options.Cmd).toEqual(['node', 'other.js']);
  });
});

function inspectInfo(state: Partial<Dockerode.ContainerInspectInfo['State']>): Dockerode.ContainerInspectInfo {
  return {
    Id: 'c1',
    Name: '/luma-hello-0011aabb',
    Created: '2026-01-02T03:04:05.123456789Z',
    State: {
      Status: 'running',
      Running: true,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: 10,
      ExitCode: 0,
      Error: '',
      StartedAt: '2026-01-02T03:04:06Z',
      FinishedAt: '0001-01-01T00:00:00Z',
      ...state,
    },
    Config: { Labels: { [LABELS.service]: 'hello', [LABELS.generation]: '7', [LABELS.specHash]: 'h7' } },
    NetworkSettings: { Networks: { 'luma-net': { IPAddress: '172.20.0.5' }, bridge: { IPAddress: '172.17.0.2' } } },
  } as unknown as Dockerode.ContainerInspectInfo;
}

describe('summaryFromInspect', () => {
  it.each([
    { name: 'running', state: {}, running: true, exitCode: null, ip: '172.20.0.5' },
    { name: 'created, never started', state: { Status: 'created', Running: false, Pid: 0 }, running: false, exitCode: null, ip: null },
    {
      name: 'exited with code 3',
      state: { Status: 'exited', Running: false, ExitCode: 3, FinishedAt: '2026-01-02T03:04:07Z' },
      running: false,
      exitCode: 3,
      ip: null,
    },
    {
      name: 'exited with code 0',
      state: { Status: 'exited', Running: false, ExitCode: 0, FinishedAt: '2026-01-02T03:04:07Z' },
      running: false,
      exitCode: 0,
      ip: null,
    },
    { name: 'failed to start', state: { Status: 'created', Running: false, ExitCode: 127 }, running: false, exitCode: 127, ip: null },
  ])('reads $name container', ({ state, running, exitCode, ip }) => {
    const summary = summaryFromInspect(inspectInfo(state), 'luma-net');
    expect(summary.running).toBe(running);
    expect(summary.exitCode).toBe(exitCode);
    expect(summary.ip).toBe(ip);
  });

  it('reads labels, name and creation time', () => {
    const summary = summaryFromInspect(inspectInfo({ OOMKilled: true }), 'luma-net');
    expect(summary).toMatchObject({
      id: 'c1',
      name: 'luma-hello-0011aabb',
      service: 'hello',
      generation: 7,
      specHash: 'h7',
      state: 'running',
      oomKilled: true,
      createdAt: '2026-01-02T03:04:05.123Z',
    });
  });

  it('returns null ip off the network', () => {
    expect(summaryFromInspect(inspectInfo({}), 'other-net').ip).toBeNull();
  });
});

describe('summaryFromListEntry', () => {
  it('reads a running entry', () => {
    const entry = {
      Id: 'c2',
      Names: ['/luma-hello-ffff0000'],
      Created: 1_767_225_600,
      State: 'running',
      Labels: { [LABELS.service]: 'hello', [LABELS.generation]: 'x' },
      NetworkSettings: { Networks: { 'luma-net': { IPAddress: '172.20.0.9' } } },
    } as unknown as Dockerode.ContainerInfo;

    expect(summaryFromListEntry(entry, 'luma-net')).toEqual({
      id: 'c2',
      name: 'luma-hello-ffff0000',
      service: 'hello',
      generation: 0,
      specHash: '',
      state: 'running',
      running: true,
      exitCode: null,
      oomKilled: false,
      ip: '172.20.0.9',
      createdAt: '2026-01-01T00:00:00.000Z',
    });
  });
});
