import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer, Packet, RecordType } from 'dns-packet';
import type { RecordTable } from './records.js';

/**
 * Turns one DNS query into its response: pure, so the UDP and TCP listeners share it and tests
 * can call it without sockets.
 */

export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED' | 'BADVERS';

/** Response codes as numbers; BADVERS (16) needs the extended rcode of EDNS (RFC 6891). */
const RCODE_VALUES: Record<Rcode, number> = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
};

/** Largest UDP response without EDNS (RFC 1035). */
export const CLASSIC_UDP_SIZE = 512;

/** Largest UDP response this server sends even when a client offers more (DNS Flag Day 2020). */
export const MAX_UDP_SIZE = 1232;

const OPCODE_QUERY = 0;
const FLAG_TRUNCATED = dnsPacket.TRUNCATED_RESPONSE;
const FLAG_AUTHORITATIVE = dnsPacket.AUTHORITATIVE_ANSWER;
const FLAG_RECURSION_DESIRED = dnsPacket.RECURSION_DESIRED;

export interface Reply {
  rcode: Rcode;
  /** Encoded response, without the TCP length prefix. */
  message: Buffer;
  truncated: boolean;
}

/**
 * Builds the response to a decoded `query`. Over UDP a response larger than 512 bytes (or the
 * client's EDNS size, at most 1232) is replaced by an empty one with the TC flag, so the client
 * retries over TCP. Returns undefined for packets that get no response (responses themselves).
 */
export function answerQuery(query: DecodedPacket, table: RecordTable, transport: 'udp' | 'tcp'): Reply | undefined {
  if (query.type === 'response') return undefined;

  const header = {
    id: query.id ?? 0,
    // The opcode sits in bits 11-14 of the flags and is echoed back, as is RD.
    opcode: ((query.flags ?? 0) >> 11) & 0xf,
    recursionDesired: ((query.flags ?? 0) & FLAG_RECURSION_DESIRED) !== 0,
  };
  const questions = query.questions ?? [];
  const opt = (query.additionals ?? []).find((record): record is OptAnswer => record.type === 'OPT');
  const responseOpt = opt === undefined ? undefined : ednsRecord(0);

  if (header.opcode !== OPCODE_QUERY) return encodeReply(header, questions, 'NOTIMP', [], [], responseOpt);
  if (questions.length !== 1) return encodeReply(header, questions, 'FORMERR', [], [], responseOpt);
  if (opt !== undefined && opt.ednsVersion !== 0) {
    return encodeReply(header, questions, 'BADVERS', [], [], responseOpt);
  }

  const question = questions[0]!;
  if (question.class !== undefined && question.class !== 'IN' && question.class !== 'ANY') {
    return encodeReply(header, questions, 'REFUSED', [], [], responseOpt);
  }

  const result = table.lookup(question.name, question.type as RecordType | 'ANY');
  const answers = result.rcode === 'NOERROR' ? result.answers : [];
  const negative = result.rcode === 'NXDOMAIN' || (result.rcode === 'NOERROR' && answers.length === 0);
  const authorities = negative ? [table.soa()] : [];
  const authoritative = result.rcode !== 'REFUSED';

  const reply = encodeReply(header, questions, result.rcode, answers, authorities, responseOpt, authoritative);
  if (transport === 'tcp') return reply;

  const limit = opt === undefined ? CLASSIC_UDP_SIZE : Math.min(Math.max(opt.udpPayloadSize, CLASSIC_UDP_SIZE), MAX_UDP_SIZE);
  if (reply.message.length <= limit) return reply;

  const truncated = encodeReply(header, questions, result.rcode, [], [], responseOpt, authoritative, FLAG_TRUNCATED);
  return { ...truncated, truncated: true };
}

/**
 * Builds a FORMERR response for a packet whose header could be read but whose body could not,
 * or undefined when not even the 12-byte header is there (such packets are dropped).
 */
export function formatErrorReply(packet: Buffer): Reply | undefined {
  if (packet.length < 12) return undefined;

  const id = packet.readUInt16BE(0);
  const flags = packet.readUInt16BE(2);
  if ((flags & 0x8000) !== 0) return undefined;

  const header = { id, opcode: (flags >> 11) & 0xf, recursionDesired: (flags & FLAG_RECURSION_DESIRED) !== 0 };
  return encodeReply(header, [], 'FORMERR', [], [], undefined);
}

function encodeReply(
  header: { id: number; opcode: number; recursionDesired: boolean },
  questions: Packet['questions'] & object,
  rcode: Rcode,
  answers: Answer[],
  authorities: Answer[],
  opt: OptAnswer | undefined,
  authoritative = false,
  extraFlags = 0,
): Reply {
  const value = RCODE_VALUES[rcode];
  let flags = (header.opcode << 11) | (value & 0xf) | extraFlags;
  if (authoritative) flags |= FLAG_AUTHORITATIVE;
  if (header.recursionDesired) flags |= FLAG_RECURSION_DESIRED;

  const additionals: Answer[] = [];
  if (opt !== undefined) additionals.push({ ...opt, extendedRcode: value >> 4 });

  const message = dnsPacket.encode({
    type: 'response',
    id: header.id,
    flags,
    questions,
    answers,
    authorities,
    additionals,
  });
  return { rcode, message, truncated: (extraFlags & FLAG_TRUNCATED) !== 0 };
}

function ednsRecord(extendedRcode: number): OptAnswer {
  return {
    type: 'OPT',
    name: '.',
    udpPayloadSize: MAX_UDP_SIZE,
    extendedRcode,
    ednsVersion: 0,
    flags: 0,
    flag_do: false,
    options: [],
  };
}
