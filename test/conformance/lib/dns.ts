// DNS messages as the conformance peer reads and writes them, on dns-packet (the wire library,
// not the engine's own codec: the instrument must not share the measured code's bugs).
//
// dns-packet gets two mDNS details wrong or not at all, so this module does them on the raw
// bytes: the QU bit of questions (the top bit of the question class; dns-packet decodes the class
// as a string and loses it, and cannot encode it) and the TC flag on queries we build.
import { createRequire } from 'node:module';
import type * as DnsPacket from 'dns-packet';

const dns = createRequire(import.meta.url)('dns-packet') as typeof DnsPacket & {
  record(type: string): { encode(data: unknown): Buffer };
  name: { decode: ((buf: Buffer, offset: number) => string) & { bytes: number } };
};

export const MDNS_PORT = 5353;
export const MDNS_GROUP = '224.0.0.251';
export const MDNS_GROUP6 = 'ff02::fb';
const TC = 1 << 9;
const QU = 0x8000;

export interface Question {
  name: string;
  type: string;
  /** Unicast-response bit (RFC 6762 §5.4). */
  qu?: boolean;
}

export interface Rec {
  name: string;
  type: string;
  ttl: number;
  /** Cache-flush bit (RFC 6762 §10.2). */
  flush?: boolean;
  data: unknown;
}

/** A decoded message. `key` of a record: lower-case name, type and canonical rdata (no TTL). */
export interface Msg {
  id: number;
  kind: 'query' | 'response';
  tc: boolean;
  aa: boolean;
  opcode: number;
  rcode: number;
  questions: Question[];
  answers: Rec[];
  authorities: Rec[];
  additionals: Rec[];
}

export interface OutMsg {
  id?: number;
  kind: 'query' | 'response';
  tc?: boolean;
  questions?: Question[];
  answers?: Rec[];
  authorities?: Rec[];
  additionals?: Rec[];
}

export const lower = (name: string): string => name.replace(/\.$/, '').replace(/[A-Z]/g, (c) => c.toLowerCase());

/** Canonical rdata bytes (names lower-cased, uncompressed), for equality and §8.2 comparison. */
export function rdata(r: { type: string; data: unknown }): Buffer {
  let data = r.data;
  if ((r.type === 'PTR' || r.type === 'CNAME') && typeof data === 'string') data = lower(data);
  if (r.type === 'SRV' && data && typeof data === 'object') data = { ...(data as object), target: lower((data as { target: string }).target) };
  try {
    return dns.record(r.type).encode(data).subarray(2); // without the rdlength prefix
  } catch {
    return Buffer.from(JSON.stringify(data ?? null));
  }
}

/** Identity of one record: name, type, rdata. */
export function recKey(r: { name: string; type: string; data: unknown }): string {
  return `${lower(r.name)}|${r.type}|${rdata(r).toString('hex')}`;
}

/** Short human form of a record for the scorecard, e.g. `SRV dut-1._a._tcp.local`. */
export function recLabel(r: { name: string; type: string }): string {
  return `${r.type} ${lower(r.name)}`;
}

export function encode(m: OutMsg): Buffer {
  const questions = m.questions ?? [];
  const buf = dns.encode({
    id: m.id ?? 0,
    type: m.kind,
    flags: (m.kind === 'response' ? dns.AUTHORITATIVE_ANSWER : 0) | (m.tc ? TC : 0),
    questions: questions.map((q) => ({ name: q.name, type: q.type as DnsPacket.RecordType, class: 'IN' as const })),
    answers: (m.answers ?? []) as DnsPacket.Answer[],
    authorities: (m.authorities ?? []) as DnsPacket.Answer[],
    additionals: (m.additionals ?? []) as DnsPacket.Answer[],
  });
  // Set the QU bit in the class of every question that asks for it.
  let off = 12;
  for (const q of questions) {
    dns.name.decode(buf, off);
    off += dns.name.decode.bytes;
    if (q.qu) buf.writeUInt16BE(buf.readUInt16BE(off + 2) | QU, off + 2);
    off += 4;
  }
  return buf;
}

function toRec(a: unknown): Rec {
  const r = a as { name: string; type: string; ttl?: number; flush?: boolean; data?: unknown };
  return { name: r.name, type: r.type, ttl: r.ttl ?? 0, flush: !!r.flush, data: r.data };
}

/** Decodes a message; throws on garbage. */
export function decode(buf: Buffer): Msg {
  const p = dns.decode(buf) as DnsPacket.Packet & { flag_tc?: boolean; flag_aa?: boolean };
  const flags = buf.readUInt16BE(2);
  // QU bits, from the raw question classes.
  const qus: boolean[] = [];
  let off = 12;
  for (let i = 0; i < buf.readUInt16BE(4); i++) {
    dns.name.decode(buf, off);
    off += dns.name.decode.bytes;
    qus.push((buf.readUInt16BE(off + 2) & QU) !== 0);
    off += 4;
  }
  return {
    id: p.id ?? 0,
    kind: flags & 0x8000 ? 'response' : 'query',
    tc: (flags & TC) !== 0,
    aa: (flags & dns.AUTHORITATIVE_ANSWER) !== 0,
    opcode: (flags >> 11) & 0xf,
    rcode: flags & 0xf,
    questions: (p.questions ?? []).map((q, i) => ({ name: q.name, type: q.type, qu: qus[i] ?? false })),
    answers: (p.answers ?? []).map(toRec),
    authorities: (p.authorities ?? []).map(toRec),
    additionals: (p.additionals ?? []).map(toRec),
  };
}

/** Every record of a message, in section order. */
export function allRecords(m: Msg): Rec[] {
  return [...m.answers, ...m.authorities, ...m.additionals];
}

/**
 * RFC 6762 §8.2 comparison of two probe record sets: sorted by class, type, then rdata bytes,
 * compared pairwise; the first difference decides, and a set that runs out first loses.
 * > 0 when `a` is lexicographically later (wins).
 */
export function compareProbeSets(a: Rec[], b: Rec[]): number {
  const TYPE: Record<string, number> = { A: 1, PTR: 12, HINFO: 13, TXT: 16, AAAA: 28, SRV: 33, NSEC: 47 };
  const key = (r: Rec) => ({ t: TYPE[r.type] ?? 65535, d: rdata(r) });
  const cmp = (x: { t: number; d: Buffer }, y: { t: number; d: Buffer }) => x.t - y.t || Buffer.compare(x.d, y.d);
  const sa = a.map(key).sort(cmp);
  const sb = b.map(key).sort(cmp);
  for (let i = 0; i < Math.min(sa.length, sb.length); i++) {
    const c = cmp(sa[i]!, sb[i]!);
    if (c !== 0) return c;
  }
  return sa.length - sb.length;
}

/** Splits records into messages of at most `max` bytes (each alone must fit). */
export function chunkRecords(records: Rec[], max: number, base: (recs: Rec[]) => OutMsg): OutMsg[] {
  const out: OutMsg[] = [];
  let cur: Rec[] = [];
  for (const r of records) {
    if (cur.length && encode(base([...cur, r])).length > max) {
      out.push(base(cur));
      cur = [];
    }
    cur.push(r);
  }
  if (cur.length) out.push(base(cur));
  return out;
}
