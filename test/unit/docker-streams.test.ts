import type Dockerode from 'dockerode';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseContainerEvent, EventWatcher } from '../../src/docker/events.js';
import { classifyPullError, followPullStream } from '../../src/docker/images.js';
import { demultiplexLogs, lastLines } from '../../src/docker/logs.js';
import type { ReplicaEvent } from '../../src/docker/types.js';
import { silentLogger } from '../../src/log.js';
import { LABELS } from '../../src/model.js';

function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

describe('demultiplexLogs', () => {
  it('joins stdout and stderr in order', () => {
    const data = Buffer.concat([frame(1, 'one\n'), frame(2, 'two\n'), frame(1, 'thr'), frame(1, 'ee\n')]);
    expect(demultiplexLogs(data)).toBe('one\ntwo\nthree\n');
  });

  it('returns raw TTY output unchanged', () => {
    expect(demultiplexLogs(Buffer.from('plain output\nsecond\n'))).toBe('plain output\nsecond\n');
  });

  it('keeps a truncated last frame', () => {
    const data = frame(1, 'complete\n');
    const truncated = Buffer.concat([data, frame(2, 'partial line').subarray(0, 12)]);
    expect(demultiplexLogs(truncated)).toBe('complete\npart');
  });

  it('returns empty text for no data', () => {
    expect(demultiplexLogs(Buffer.alloc(0))).toBe('');
  });
});

describe('lastLines', () => {
  it.each([
    { text: 'a\nb\nc\n', count: 2, lines: ['b', 'c'] },
    { text: 'a\r\nb\r\n', count: 5, lines: ['a', 'b'] },
    { text: 'a\nb', count: 1, lines: ['b'] },
    { text: '', count: 3, lines: [] },
    { text: 'a\n\nb\n', count: 3, lines: ['a', '', 'b'] },
    { text: 'a\n', count: 0, lines: [] },
  ])('takes $count of $text', ({ text, count, lines }) => {
    expect(lastLines(text, count)).toEqual(lines);
  });
});

describe('followPullStream', () => {
  it('resolves at stream end without error', async () => {
    const seen: string[] = [];
    const stream = Readable.from(['{"status":"Pulling from x"}\n{"status":"Downlo', 'ading","id":"abc"}\n', '{"status":"Done"}']);
    await followPullStream(stream, new AbortController().signal, (message) => seen.push(message.status ?? ''));
    expect(seen).toEqual(['Pulling from x', 'Downloading', 'Done']);
  });

  it('rejects on an error line', async () => {
    const stream = Readable.from(['{"status":"Downloading"}\n', '{"errorDetail":{"message":"unknown blob"},"error":"unknown blob"}\n']);
    await expect(followPullStream(stream, new AbortController().signal)).rejects.toThrow('unknown blob');
  });

  it('rejects when aborted mid-stream', async () => {
    const stream = new PassThrough();
    stream.write('{"status":"Downloading"}\n');
    const controller = new AbortController();
    const following = followPullStream(stream, controller.signal);
    controller.abort(new Error('caller left'));
    await expect(following).rejects.toThrow();
    expect(stream.destroyed).toBe(true);
  });
});

describe('classifyPullError', () => {
  function engineError(statusCode: number, message: string): Error {
    return Object.assign(new Error(`(HTTP code ${statusCode}) unexpected - ${message} `), { statusCode });
  }

  it.each([
    { error: engineError(404, 'manifest for r/x:latest not found: manifest unknown: manifest unknown'), code: 'image_not_found' },
    { error: engineError(500, 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'), code: 'image_pull_failed' },
    { error: engineError(500, "pull access denied for x, repository does not exist or may require 'docker login'"), code: 'image_not_found' },
    { error: engineError(400, 'invalid reference format'), code: 'image_pull_failed' },
    { error: new Error('unknown blob'), code: 'image_pull_failed' },
    { error: Object.assign(new Error('connect ENOENT /var/run/docker.sock'), { code: 'ENOENT' }), code: 'docker_unavailable' },
  ])('maps "$error.message" to $code', ({ error, code }) => {
    const classified = classifyPullError('r/x:latest', error);
    expect(classified.code).toBe(code);
    if (code !== 'docker_unavailable') expect(classified.details.image).toBe('r/x:latest');
    expect(classified.cause).toBe(error);
  });

  it('keeps docker message without dockerode prefix', () => {
    const classified = classifyPullError('r/x', engineError(404, 'manifest unknown'));
    expect(classified.message).toBe('image r/x not found: manifest unknown');
  });
});

describe('parseContainerEvent', () => {
  const attributes = { [LABELS.instance]: 'i1', [LABELS.service]: 'hello', exitCode: '3', name: 'luma-hello-1' };

  it.each([
    { raw: { Type: 'container', Action: 'die', Actor: { ID: 'c1', Attributes: attributes } }, event: { kind: 'die', id: 'c1', service: 'hello', exitCode: 3 } },
    { raw: { Type: 'container', Action: 'start', Actor: { ID: 'c1', Attributes: attributes } }, event: { kind: 'start', id: 'c1', service: 'hello' } },
    { raw: { Type: 'container', Action: 'oom', Actor: { ID: 'c1', Attributes: attributes } }, event: { kind: 'oom', id: 'c1', service: 'hello' } },
    { raw: { Type: 'container', Action: 'destroy', id: 'c2', Actor: { Attributes: attributes } }, event: { kind: 'destroy', id: 'c2', service: 'hello' } },
    { raw: { Type: 'container', Action: 'create', Actor: { ID: 'c1', Attributes: attributes } }, event: undefined },
    { raw: { Type: 'network', Action: 'destroy', Actor: { ID: 'n1', Attributes: attributes } }, event: undefined },
    { raw: { Type: 'container', Action: 'die', Actor: { ID: 'c1', Attributes: { ...attributes, [LABELS.instance]: 'other' } } }, event: undefined },
  ])('parses $raw.Type $raw.Action', ({ raw, event }) => {
    expect(parseContainerEvent(raw, 'i1')).toEqual(event);
  });
});

/** Returns a fake engine whose event streams the test controls. Each getEvents call takes the next entry. */
function fakeDocker(connections: Array<PassThrough | Error>): { docker: Dockerode; calls: number[] } {
  const calls: number[] = [];
  const docker = {
    getEvents: async () => {
      calls.push(Date.now());
      const next = connections.shift();
      if (next === undefined) return new PassThrough();
      if (next instanceof Error) throw next;
      return next;
    },
  } as unknown as Dockerode;
  return { docker, calls };
}

async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('EventWatcher', () => {
  it('emits events and reconnects after errors', async () => {
    const first = new PassThrough();
    const { docker, calls } = fakeDocker([first, new Error('connect ECONNREFUSED'), new Error('connect ECONNREFUSED')]);
    const events: ReplicaEvent[] = [];
    const watcher = new EventWatcher({ docker, instanceId: 'i1', logger: silentLogger(), onEvent: (event) => events.push(event), initialDelayMs: 20, maxDelayMs: 1000 });
    watcher.start();

    await until(() => events.length === 1);
    first.write(JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: 'c1', Attributes: { [LABELS.instance]: 'i1', [LABELS.service]: 's', exitCode: '0' } } }) + '\n');
    await until(() => events.length === 2);
    first.end();

    await until(() => events.length === 4);
    watcher.close();

    expect(events.map((event) => event.kind)).toEqual(['connected', 'die', 'disconnected', 'connected']);
    expect(events[1]).toEqual({ kind: 'die', id: 'c1', service: 's', exitCode: 0 });
    expect(calls).toHaveLength(4);
    // Delays of 20, 40 and 80 ms between the four connection attempts.
    const gaps = calls.slice(1).map((at, index) => at - (calls[index] ?? at));
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[1]).toBeGreaterThanOrEqual(38);
    expect(gaps[2]).toBeGreaterThanOrEqual(78);
  });

  it('emits one disconnect for a failed start', async () => {
    const { docker, calls } = fakeDocker([new Error('a'), new Error('b'), new Error('c')]);
    const events: ReplicaEvent[] = [];
    const watcher = new EventWatcher({ docker, instanceId: 'i1', logger: silentLogger(), onEvent: (event) => events.push(event), initialDelayMs: 5, maxDelayMs: 10 });
    watcher.start();

    await until(() => events.some((event) => event.kind === 'connected'));
    watcher.close();

    expect(events.map((event) => event.kind)).toEqual(['disconnected', 'connected']);
    expect(calls).toHaveLength(4);
  });

  it('stops emitting after close', async () => {
    const stream = new PassThrough();
    const { docker, calls } = fakeDocker([stream]);
    const events: ReplicaEvent[] = [];
    const watcher = new EventWatcher({ docker, instanceId: 'i1', logger: silentLogger(), onEvent: (event) => events.push(event), initialDelayMs: 5 });
    watcher.start();
    await until(() => events.length === 1);

    watcher.close();
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect(stream.destroyed).toBe(true);
    expect(events.map((event) => event.kind)).toEqual(['connected']);
    expect(calls).toHaveLength(1);
  });

  it('survives a throwing receiver', async () => {
    const stream = new PassThrough();
    const { docker } = fakeDocker([stream]);
    let calls = 0;
    const watcher = new EventWatcher({
      docker,
      instanceId: 'i1',
      logger: silentLogger(),
      onEvent: () => {
        calls += 1;
        throw new Error('receiver bug');
      },
    });
    watcher.start();
    await until(() => calls === 1);
    stream.write(JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID: 'c1', Attributes: { [LABELS.instance]: 'i1' } } }) + '\n');
    await until(() => calls === 2);
    watcher.close();
    expect(calls).toBe(2);
  });
});
