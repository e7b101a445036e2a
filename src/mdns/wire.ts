import * as dns from 'dns-packet';
import { isIPv4, isIPv6 } from 'node:net';
import { answerLength, nameLength } from './dns-packet-internals.js';
import type { MdnsQuestion, MdnsRecord } from './records.js';

/**
 * Wire encoding/decoding on top of dns-packet, adding what it lacks for mDNS:
 * the QU bit on questions (dns-packet decodes class 0x8001 as 'UNKNOWN_32769' and cannot
 * encode it) and strict validation so hostile packets are rejected, not half-interpreted.
 */
export interface MdnsPacket {
  id: number;
  type: 'query' | 'response';
  flags: number;
  truncated: boolean;
  questions: MdnsQuestion[];
  answers: MdnsRecord[];
  authorities: MdnsRecord[];
  additionals: MdnsRecord[];
}

export class MalformedPacketError extends Error {}

const QU_CLASS = 'UNKNOWN_32769';
const MAX_RECORDS = 512;

function convertRecords(list: unknown, section: string): MdnsRecord[] {
  if (!Array.isArray(list)) throw new MalformedPacketError(`bad ${section} section`);
  if (list.length > MAX_RECORDS) throw new MalformedPacketError(`too many records in ${section}`);
  const out: MdnsRecord[] = [];
  for (const raw of list as dns.Answer[]) {
    if (!raw || typeof raw !== 'object' || typeof raw.name !== 'string' || typeof raw.type !== 'string') {
      throw new MalformedPacketError(`bad record in ${section}`);
    }
    if (raw.type === 'OPT') continue; // EDNS pseudo-record: not data
    const r = raw as dns.Answer & { ttl?: number; flush?: boolean; class?: string; data?: unknown };
    // mDNS records are class IN; other classes are ignored, not fatal.
    if (r.class !== undefined && r.class !== 'IN') continue;
    if (!validRdata(r.type, r.data)) throw new MalformedPacketError(`bad ${r.type} rdata in ${section}`);
    const ttl = typeof r.ttl === 'number' && Number.isFinite(r.ttl) ? r.ttl : 0;
    out.push({ name: r.name, type: r.type, class: 'IN', ttl, flush: !!r.flush, data: r.data });
  }
  return out;
}

/** dns-packet reads past the end of short rdata (yielding 'undefined' fields): check shapes. */
function validRdata(type: string, data: unknown): boolean {
  switch (type) {
    case 'A':
      return typeof data === 'string' && isIPv4(data);
    case 'AAAA':
      return typeof data === 'string' && isIPv6(data);
    case 'PTR':
      return typeof data === 'string' && data.length > 0;
    case 'SRV': {
      const s = data as { port?: unknown; target?: unknown; priority?: unknown; weight?: unknown } | null;
      return !!s && Number.isInteger(s.port) && Number.isInteger(s.priority) && Number.isInteger(s.weight) && typeof s.target === 'string';
    }
    case 'TXT':
      return Array.isArray(data) && data.every((d) => Buffer.isBuffer(d));
    default:
      return true;
  }
}

export function decodePacket(buf: Buffer): MdnsPacket {
  if (buf.length < 12) throw new MalformedPacketError('shorter than a DNS header');
  // dns-packet sizes its arrays from the header counts before reading anything: reject counts
  // that cannot fit (a question takes ≥ 5 bytes, a record ≥ 11) before it allocates.
  const qd = buf.readUInt16BE(4);
  const rr = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10);
  if (qd * 5 + rr * 11 > buf.length - 12) throw new MalformedPacketError('record counts larger than the packet');
  let p: dns.Packet & { flag_tc?: boolean; flags?: number };
  try {
    p = dns.decode(buf) as typeof p;
  } catch (err) {
    throw new MalformedPacketError((err as Error).message);
  }
  const consumed = (dns.decode as unknown as { bytes: number }).bytes;
  if (consumed > buf.length) throw new MalformedPacketError('records run past the end of the packet');
  // RFC 6762 §18.3: opcode must be 0 (QUERY); RFC 6762 §18.11: rcode must be 0.
  if ((p as { opcode?: string }).opcode && (p as { opcode?: string }).opcode !== 'QUERY') {
    throw new MalformedPacketError('non-zero opcode');
  }
  const questions: MdnsQuestion[] = [];
  for (const q of p.questions ?? []) {
    if (!q || typeof q.name !== 'string') throw new MalformedPacketError('bad question');
    const cls = (q as { class?: string }).class;
    if (cls === QU_CLASS) questions.push({ name: q.name, type: q.type, qu: true });
    else if (cls === 'IN' || cls === 'ANY' || cls === undefined) questions.push({ name: q.name, type: q.type });
  }
  return {
    id: p.id ?? 0,
    type: p.type === 'response' ? 'response' : 'query',
    flags: p.flags ?? 0,
    truncated: !!p.flag_tc,
    questions,
    answers: convertRecords(p.answers ?? [], 'answer'),
    authorities: convertRecords(p.authorities ?? [], 'authority'),
    additionals: convertRecords(p.additionals ?? [], 'additional'),
  };
}

export interface OutgoingPacket {
  id?: number;
  type: 'query' | 'response';
  flags?: number;
  questions?: MdnsQuestion[];
  answers?: MdnsRecord[];
  authorities?: MdnsRecord[];
  additionals?: MdnsRecord[];
}

export function encodePacket(p: OutgoingPacket): Buffer {
  const questions = (p.questions ?? []).map((q) => ({ name: q.name, type: q.type as dns.RecordType, class: 'IN' as const }));
  let flags = p.flags ?? 0;
  if (p.type === 'response') flags |= dns.AUTHORITATIVE_ANSWER;
  const buf = dns.encode({
    id: p.id ?? 0,
    type: p.type,
    flags,
    questions,
    answers: (p.answers ?? []) as dns.Answer[],
    authorities: (p.authorities ?? []) as dns.Answer[],
    additionals: (p.additionals ?? []) as dns.Answer[],
  } as dns.Packet);
  // dns-packet never compresses names, so question offsets can be computed to set QU bits.
  let offset = 12;
  for (const q of p.questions ?? []) {
    offset += nameLength(q.name);
    if (q.qu) buf.writeUInt16BE(buf.readUInt16BE(offset + 2) | 0x8000, offset + 2);
    offset += 4;
  }
  return buf;
}

/** Encoded size of one record, for keeping packets under the interface MTU. */
export function recordLength(r: MdnsRecord): number {
  return answerLength(r);
}
