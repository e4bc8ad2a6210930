import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet, RecordType, SrvAnswer } from 'dns-packet';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isLumaError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { DnsServer } from '../../src/dns/server.js';

const ZONE = 'unit1.luma.internal';
const API_SRV = `_http._tcp.api.${ZONE}`;
const REPLICA_A = { replicaId: 'aaaaaaaaaaaa0123456789', ip: '172.18.0.5', port: 8080 };
const REPLICA_B = { replicaId: 'bbbbbbbbbbbb0123456789', ip: 'fd00::7', port: 9000 };
const NO_REPLY_WAIT_MS = 300;

let server: DnsServer;
let port: number;

beforeEach(async () => {
  server = new DnsServer({ instanceId: 'unit1', logger: silentLogger() });
  ({ port } = await server.listen('127.0.0.1:0'));
  server.setWakeAddress('127.0.0.1', 7000);
  server.setService('api', [REPLICA_A, REPLICA_B]);
  server.setService('idle', []);
});

afterEach(async () => {
  await server.close();
});

function query(name: string, type: RecordType | 'ANY', extra: Partial<Packet> = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: type as RecordType, name }],
    ...extra,
  });
}

/** Sends one UDP packet and resolves with the decoded reply, or undefined after 300 ms. */
function udpExchange(packet: Buffer): Promise<DecodedPacket | undefined> {
  const socket = dgram.createSocket('udp4');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      resolve(undefined);
    }, NO_REPLY_WAIT_MS);
    socket.on('message', (message) => {
      clearTimeout(timer);
      socket.close();
      resolve(dnsPacket.decode(message));
    });
    socket.on('error', reject);
    socket.send(packet, port, '127.0.0.1');
  });
}

/** Writes `frames` (already length-prefixed) on one TCP connection and collects `count` replies. */
function tcpExchange(frames: Buffer, count: number): Promise<{ replies: DecodedPacket[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const replies: DecodedPacket[] = [];
    let buffered = Buffer.alloc(0);
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ replies, closed });
    };
    const timer = setTimeout(() => finish(false), 2_000);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const length = buffered.readUInt16BE(0);
        replies.push(dnsPacket.decode(buffered.subarray(2, 2 + length)));
        buffered = buffered.subarray(2 + length);
      }
      if (replies.length >= count) finish(false);
    });
    socket.on('close', () => finish(true));
    socket.on('error', reject);
    socket.write(frames);
  });
}

function frame(packet: Buffer): Buffer {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(packet.length);
  return Buffer.concat([prefix, packet]);
}

function srvData(reply: DecodedPacket | undefined): Array<{ target: string; port: number }> {
  return (reply?.answers ?? [])
    .filter((answer): answer is SrvAnswer => answer.type === 'SRV')
    .map((answer) => ({ target: answer.data.target, port: answer.data.port }));
}

function rcodeOf(reply: DecodedPacket | undefined): string | undefined {
  return (reply as (DecodedPacket & { rcode: string }) | undefined)?.rcode;
}

describe('DnsServer over UDP', () => {
  it('answers SRV with every replica', async () => {
    const reply = await udpExchange(query(API_SRV, 'SRV'));

    expect(rcodeOf(reply)).toBe('NOERROR');
    expect(reply?.id).toBe(4242);
    expect(reply?.flag_aa).toBe(true);
    expect(reply?.flag_rd).toBe(true);
    expect(srvData(reply)).toEqual([
      { target: `aaaaaaaaaaaa.api.${ZONE}`, port: 8080 },
      { target: `bbbbbbbbbbbb.api.${ZONE}`, port: 9000 },
    ]);
    expect(reply?.answers?.[0]).toMatchObject({ ttl: 1, class: 'IN' });
  });

  it.each([
    { name: `aaaaaaaaaaaa.api.${ZONE}`, type: 'A', data: ['172.18.0.5'] },
    { name: `aaaaaaaaaaaa.api.${ZONE}`, type: 'AAAA', data: [] },
    { name: `bbbbbbbbbbbb.api.${ZONE}`, type: 'AAAA', data: ['fd00::7'] },
    { name: `bbbbbbbbbbbb.api.${ZONE}`, type: 'A', data: [] },
    { name: `AAAAAAAAAAAA.API.${ZONE.toUpperCase()}`, type: 'A', data: ['172.18.0.5'] },
    { name: `wake.idle.${ZONE}`, type: 'A', data: ['127.0.0.1'] },
    { name: `wake.idle.${ZONE}`, type: 'AAAA', data: [] },
    { name: `aaaaaaaaaaaa.api.${ZONE}`, type: 'TXT', data: [] },
    { name: `api.${ZONE}`, type: 'A', data: [] },
    { name: `_tcp.api.${ZONE}`, type: 'SRV', data: [] },
  ] as const)('answers $type $name with $data', async ({ name, type, data }) => {
    const reply = await udpExchange(query(name, type));

    expect(rcodeOf(reply)).toBe('NOERROR');
    expect(reply?.flag_aa).toBe(true);
    expect(reply?.answers?.map((answer) => (answer as { data: unknown }).data)).toEqual(data);
    if (data.length === 0) expect(reply?.authorities?.[0]?.type).toBe('SOA');
  });

  it('points an idle service at wake', async () => {
    const reply = await udpExchange(query(`_http._tcp.idle.${ZONE}`, 'SRV'));

    expect(srvData(reply)).toEqual([{ target: `wake.idle.${ZONE}`, port: 7000 }]);
  });

  it('returns SERVFAIL without wake address', async () => {
    const other = new DnsServer({ instanceId: 'unit1', logger: silentLogger() });
    const { port: otherPort } = await other.listen('127.0.0.1:0');
    other.setService('idle', []);
    const previousPort = port;
    port = otherPort;
    try {
      expect(rcodeOf(await udpExchange(query(`_http._tcp.idle.${ZONE}`, 'SRV')))).toBe('SERVFAIL');
      expect(rcodeOf(await udpExchange(query(`wake.idle.${ZONE}`, 'A')))).toBe('SERVFAIL');
    } finally {
      port = previousPort;
      await other.close();
    }
  });

  it.each([
    { name: `unknown.${ZONE}`, type: 'A' },
    { name: `_http._tcp.unknown.${ZONE}`, type: 'SRV' },
    { name: `cccccccccccc.api.${ZONE}`, type: 'A' },
    { name: `wake.unknown.${ZONE}`, type: 'A' },
  ] as const)('returns NXDOMAIN for $name', async ({ name, type }) => {
    const reply = await udpExchange(query(name, type));

    expect(rcodeOf(reply)).toBe('NXDOMAIN');
    expect(reply?.flag_aa).toBe(true);
    expect(reply?.answers).toEqual([]);
    expect(reply?.authorities?.[0]).toMatchObject({ type: 'SOA', name: ZONE });
  });

  it.each(['example.com', 'luma.internal', 'other.luma.internal'])('refuses other zone %s', async (name) => {
    const reply = await udpExchange(query(name, 'A'));

    expect(rcodeOf(reply)).toBe('REFUSED');
    expect(reply?.flag_aa).toBe(false);
  });

  it('answers SOA at the zone apex', async () => {
    const reply = await udpExchange(query(ZONE, 'SOA'));

    expect(reply?.answers?.[0]).toMatchObject({ type: 'SOA', name: ZONE });
  });

  it('follows setService and removeService', async () => {
    server.setService('api', [REPLICA_B]);
    expect(srvData(await udpExchange(query(API_SRV, 'SRV')))).toEqual([
      { target: `bbbbbbbbbbbb.api.${ZONE}`, port: 9000 },
    ]);
    // A replica left out of the SRV answer keeps resolving while Caddy may still dial it.
    expect((await udpExchange(query(`aaaaaaaaaaaa.api.${ZONE}`, 'A')))?.answers?.length).toBe(1);

    server.removeService('api');
    expect(rcodeOf(await udpExchange(query(API_SRV, 'SRV')))).toBe('NXDOMAIN');
    expect((await udpExchange(query(`bbbbbbbbbbbb.api.${ZONE}`, 'AAAA')))?.answers?.length).toBe(1);
  });

  it('expires retired replica names', async () => {
    const other = new DnsServer({ instanceId: 'unit1', logger: silentLogger(), retiredHostTtlMs: 0 });
    const { port: otherPort } = await other.listen('127.0.0.1:0');
    other.setService('api', [REPLICA_A]);
    other.setService('api', []);
    const previousPort = port;
    port = otherPort;
    try {
      expect(rcodeOf(await udpExchange(query(`aaaaaaaaaaaa.api.${ZONE}`, 'A')))).toBe('NXDOMAIN');
    } finally {
      port = previousPort;
      await other.close();
    }
  });

  it('truncates answers over 512 bytes', async () => {
    const replicas = Array.from({ length: 30 }, (_, index) => ({
      replicaId: `${index.toString(16).padStart(12, '0')}ff`,
      ip: '172.18.0.9',
      port: 8000 + index,
    }));
    server.setService('big', replicas);

    const plain = await udpExchange(query(`_http._tcp.big.${ZONE}`, 'SRV'));
    expect(plain?.flag_tc).toBe(true);
    expect(plain?.answers).toEqual([]);

    const { replies } = await tcpExchange(frame(query(`_http._tcp.big.${ZONE}`, 'SRV')), 1);
    expect(replies[0]?.flag_tc).toBe(false);
    expect(srvData(replies[0])).toHaveLength(30);
    expect(server.stats().truncated).toBe(1);
  });

  it('uses the EDNS payload size', async () => {
    const replicas = Array.from({ length: 8 }, (_, index) => ({
      replicaId: `${index.toString(16).padStart(12, '0')}ff`,
      ip: '172.18.0.9',
      port: 8000 + index,
    }));
    server.setService('mid', replicas);
    const opt = { type: 'OPT' as const, name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };

    const reply = await udpExchange(query(`_http._tcp.mid.${ZONE}`, 'SRV', { additionals: [opt] }));

    expect(reply?.flag_tc).toBe(false);
    expect(srvData(reply)).toHaveLength(8);
    expect(reply?.additionals?.[0]).toMatchObject({ type: 'OPT', udpPayloadSize: 1232 });
  });

  it.each([
    { case: 'too short for a header', packet: Buffer.from([1, 2, 3]) },
    { case: 'a response', packet: dnsPacket.encode({ type: 'response', id: 9, questions: [{ type: 'A', name: `x.${ZONE}` }] }) },
  ])('drops a packet that is $case', async ({ packet }) => {
    expect(await udpExchange(packet)).toBeUndefined();
    expect(rcodeOf(await udpExchange(query(API_SRV, 'SRV')))).toBe('NOERROR');
  });

  it.each([
    { case: 'a header announcing a missing question', packet: Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]) },
    { case: 'a name with a forward pointer', packet: Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x20, 0, 1, 0, 1]) },
    { case: 'a label past the end', packet: Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 40, 0x61]) },
  ])('returns FORMERR for $case', async ({ packet }) => {
    const reply = await udpExchange(packet);

    expect(rcodeOf(reply)).toBe('FORMERR');
    expect(reply?.id).toBe(0x1234);
    expect(server.stats().malformed).toBe(1);
  });

  it('returns FORMERR for two questions', async () => {
    const packet = dnsPacket.encode({
      type: 'query',
      id: 5,
      questions: [
        { type: 'A', name: `wake.idle.${ZONE}` },
        { type: 'SRV', name: API_SRV },
      ],
    });

    expect(rcodeOf(await udpExchange(packet))).toBe('FORMERR');
  });

  it('returns NOTIMP for a non-query opcode', async () => {
    // Opcode 2 (STATUS) sits in bits 11-14 of the flags.
    const packet = dnsPacket.encode({ type: 'query', id: 6, flags: 2 << 11, questions: [{ type: 'A', name: `wake.idle.${ZONE}` }] });

    expect(rcodeOf(await udpExchange(packet))).toBe('NOTIMP');
  });

  it('counts queries and responses', async () => {
    await udpExchange(query(API_SRV, 'SRV'));
    await udpExchange(query(`unknown.${ZONE}`, 'A'));
    await udpExchange(query('example.com', 'A'));

    expect(server.stats()).toMatchObject({
      queries: { udp: 3, tcp: 0 },
      responses: { NOERROR: 1, NXDOMAIN: 1, REFUSED: 1 },
      malformed: 0,
    });
  });
});

describe('DnsServer over TCP', () => {
  it('answers pipelined queries in order', async () => {
    const frames = Buffer.concat([frame(query(API_SRV, 'SRV')), frame(query(`wake.idle.${ZONE}`, 'A'))]);

    const { replies } = await tcpExchange(frames, 2);

    expect(replies).toHaveLength(2);
    expect(srvData(replies[0])).toHaveLength(2);
    expect(replies[1]?.answers?.[0]).toMatchObject({ type: 'A', data: '127.0.0.1' });
    expect(server.stats().queries.tcp).toBe(2);
  });

  it('reassembles a query split across writes', async () => {
    const whole = frame(query(API_SRV, 'SRV'));
    const socket = net.connect(port, '127.0.0.1');
    const reply = new Promise<DecodedPacket>((resolve) => {
      socket.once('data', (chunk: Buffer) => resolve(dnsPacket.decode(chunk.subarray(2))));
    });

    socket.write(whole.subarray(0, 1));
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.write(whole.subarray(1, 10));
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.write(whole.subarray(10));

    expect(srvData(await reply)).toHaveLength(2);
    socket.destroy();
  });

  it('returns FORMERR for an unreadable message', async () => {
    const packet = Buffer.from([0x43, 0x21, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 40, 0x61]);

    const { replies } = await tcpExchange(Buffer.concat([frame(packet), frame(query(API_SRV, 'SRV'))]), 2);

    expect(rcodeOf(replies[0])).toBe('FORMERR');
    expect(replies[0]?.id).toBe(0x4321);
    expect(rcodeOf(replies[1])).toBe('NOERROR');
  });

  it('closes on a zero-length frame', async () => {
    const { replies, closed } = await tcpExchange(Buffer.from([0, 0]), 1);

    expect(replies).toEqual([]);
    expect(closed).toBe(true);
  });

  it('closes idle connections', async () => {
    await server.close();
    server = new DnsServer({ instanceId: 'unit1', logger: silentLogger(), tcpIdleTimeoutMs: 100 });
    ({ port } = await server.listen('127.0.0.1:0'));

    const started = Date.now();
    const { closed } = await tcpExchange(Buffer.alloc(0), 1);

    expect(closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_500);
  });
});

describe('DnsServer setup', () => {
  it('binds UDP and TCP to one port', async () => {
    expect(port).toBeGreaterThan(0);
    const { replies } = await tcpExchange(frame(query(API_SRV, 'SRV')), 1);
    expect(rcodeOf(replies[0])).toBe('NOERROR');
    expect(rcodeOf(await udpExchange(query(API_SRV, 'SRV')))).toBe('NOERROR');
  });

  it.each(['localhost:53', '127.0.0.1', '127.0.0.1:99999', '[::1]', ''])('rejects listen address %j', async (address) => {
    const other = new DnsServer({ instanceId: 'unit1', logger: silentLogger() });

    await expect(other.listen(address)).rejects.toSatisfy((error) => isLumaError(error, 'invalid_setting'));
  });

  it('rejects a port already in use', async () => {
    const other = new DnsServer({ instanceId: 'unit1', logger: silentLogger() });

    await expect(other.listen(`127.0.0.1:${port}`)).rejects.toSatisfy((error) => isLumaError(error, 'invalid_setting'));
  });

  it.each([
    { case: 'an invalid IP', service: 'api', target: { replicaId: 'aaaaaaaaaaaa', ip: 'not-an-ip', port: 80 } },
    { case: 'port 0', service: 'api', target: { replicaId: 'aaaaaaaaaaaa', ip: '10.0.0.1', port: 0 } },
    { case: 'a replica id that is no label', service: 'api', target: { replicaId: 'a_b', ip: '10.0.0.1', port: 80 } },
    { case: 'the reserved replica id wake', service: 'api', target: { replicaId: 'wake', ip: '10.0.0.1', port: 80 } },
    { case: 'a service that is no label', service: 'my.api', target: { replicaId: 'aaaaaaaaaaaa', ip: '10.0.0.1', port: 80 } },
  ])('rejects setService with $case', ({ service, target }) => {
    expect(() => server.setService(service, [target])).toThrow(expect.objectContaining({ code: 'invalid_input' }));
  });

  it('keeps the old answer after a rejected setService', async () => {
    expect(() => server.setService('api', [{ replicaId: 'cccccccccccc', ip: 'bad', port: 80 }])).toThrow();

    expect(srvData(await udpExchange(query(API_SRV, 'SRV')))).toHaveLength(2);
  });
});
