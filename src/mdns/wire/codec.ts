import type * as DnsPacket from 'dns-packet';
import { requireCommonJs } from '../../base/commonjs.js';
import { isIPv4, isIPv6 } from 'node:net';
import { answerLength, nameLength, rdataCodec } from './dns-packet-api.js';
import type { MdnsQuestion, MdnsRecord } from './records.js';

const dns = requireCommonJs('dns-packet') as typeof DnsPacket;

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
  /** EDNS option codes of the packet's OPT pseudo-record (RFC 6891), when it has one. */
  optionCodes?: number[];
}

export class MalformedPacketError extends Error {}

const QU_CLASS = 'UNKNOWN_32769';
const MAX_RECORDS = 512;

function convertRecords(list: unknown, section: string): MdnsRecord[] {
  if (!Array.isArray(list)) throw new MalformedPacketError(`bad ${section} section`);
  if (list.length > MAX_RECORDS) throw new MalformedPacketError(`too many records in ${section}`);
  const out: MdnsRecord[] = [];
  for (const raw of list as DnsPacket.Answer[]) {
    if (!raw || typeof raw !== 'object' || typeof raw.name !== 'string' || typeof raw.type !== 'string') {
      throw new MalformedPacketError(`bad record in ${section}`);
    }
    if (raw.type === 'OPT') continue; // EDNS pseudo-record: not data
    const r = raw as DnsPacket.Answer & { ttl?: number; flush?: boolean; class?: string; data?: unknown };
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
    case 'NSEC': {
      const n = data as { nextDomain?: unknown; rrtypes?: unknown } | null;
      return !!n && typeof n.nextDomain === 'string' && Array.isArray(n.rrtypes);
    }
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
  let p: DnsPacket.Packet & { flag_tc?: boolean; flags?: number };
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
    ...optionCodesOf(p.additionals),
  };
}

function optionCodesOf(additionals: unknown): { optionCodes?: number[] } {
  if (!Array.isArray(additionals)) return {};
  const opt = (additionals as Array<{ type?: string; options?: Array<{ code?: unknown }> }>).find((r) => r?.type === 'OPT');
  if (!opt || !Array.isArray(opt.options)) return {};
  return { optionCodes: opt.options.map((o) => o?.code).filter((c): c is number => typeof c === 'number') };
}

export interface OutgoingPacket {
  id?: number;
  type: 'query' | 'response';
  flags?: number;
  questions?: MdnsQuestion[];
  answers?: MdnsRecord[];
  authorities?: MdnsRecord[];
  additionals?: MdnsRecord[];
  /** One EDNS option (RFC 6891) in an OPT pseudo-record after the additionals (no data). */
  optionCode?: number;
}

/** UDP payload size announced in an OPT record: the mDNS packet limit of a 1500-byte link. */
const OPT_PAYLOAD_SIZE = 1440;

const TYPE_CODES: Record<string, number> = { A: 1, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, NSEC: 47, ANY: 255 };

/**
 * Writes DNS messages with name compression (RFC 1035 §4.1.4), which dns-packet's encoder does
 * not do and RFC 6762 §18.14 asks for: in a typical announcement every name ends in the same
 * `._svc._tcp.local`, so compression cuts a packet by a third or more.
 */
class CompressingWriter {
  private buf = Buffer.alloc(1500);
  private off = 0;
  private readonly names = new Map<string, number>();

  private ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(bigger, 0, 0, this.off);
    this.buf = bigger;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf.writeUInt8(v, this.off);
    this.off += 1;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.off);
    this.off += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.off);
    this.off += 4;
  }

  bytes(b: Buffer): void {
    this.ensure(b.length);
    b.copy(this.buf, this.off);
    this.off += b.length;
  }

  name(name: string): void {
    const n = name.replace(/^\.|\.$/g, '');
    const labels = n.length ? n.split('.') : [];
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const at = this.names.get(suffix);
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (this.off < 0x3fff) this.names.set(suffix, this.off);
      const label = Buffer.from(labels[i]!, 'utf8');
      if (label.length === 0 || label.length > 63) throw new Error(`bad label in '${name}'`);
      this.u8(label.length);
      this.bytes(label);
    }
    this.u8(0);
  }

  /** Reserves a 16-bit length, runs `body`, fills the length in. */
  sized(body: () => void): void {
    const at = this.off;
    this.u16(0);
    body();
    this.buf.writeUInt16BE(this.off - at - 2, at);
  }

  get offset(): number {
    return this.off;
  }

  done(): Buffer {
    return this.buf.subarray(0, this.off);
  }
}

function writeRecord(w: CompressingWriter, r: MdnsRecord): void {
  w.name(r.name);
  w.u16(TYPE_CODES[r.type]!);
  w.u16(1 | (r.flush ? 0x8000 : 0));
  w.u32(r.ttl);
  switch (r.type) {
    case 'PTR':
      w.sized(() => w.name(String(r.data)));
      return;
    case 'SRV': {
      const d = r.data as { priority?: number; weight?: number; port: number; target: string };
      w.sized(() => {
        w.u16(d.priority ?? 0);
        w.u16(d.weight ?? 0);
        w.u16(d.port);
        w.name(d.target);
      });
      return;
    }
    case 'NSEC': {
      // RFC 6762 §6.1: the next domain is the record's own name, so compressed it takes two bytes.
      const d = r.data as { nextDomain: string; rrtypes: string[] };
      w.sized(() => {
        w.name(d.nextDomain);
        w.bytes(typeBitmap(d.rrtypes));
      });
      return;
    }
    default:
      // Rdata without names to compress: dns-packet's encoders write length + rdata.
      w.bytes(rdataCodec(r.type).encode(r.data));
  }
}

/** RFC 4034 §4.1.2 type bitmap (window 0 only: the types mDNS uses are all below 256). */
function typeBitmap(types: string[]): Buffer {
  const codes = types.map((t) => TYPE_CODES[t]).filter((c): c is number => c !== undefined && c < 256);
  if (codes.length === 0) return Buffer.alloc(0);
  const len = (Math.max(...codes) >> 3) + 1;
  const b = Buffer.alloc(2 + len);
  b[0] = 0;
  b[1] = len;
  for (const c of codes) b[2 + (c >> 3)] = b[2 + (c >> 3)]! | (0x80 >> (c & 7));
  return b;
}

export function encodePacket(p: OutgoingPacket): Buffer {
  let flags = p.flags ?? 0;
  if (p.type === 'response') flags |= dns.AUTHORITATIVE_ANSWER;
  const sections = [p.answers ?? [], p.authorities ?? [], p.additionals ?? []];
  const questions = p.questions ?? [];
  const known = questions.every((q) => q.type in TYPE_CODES) && sections.every((sec) => sec.every((r) => r.type in TYPE_CODES));
  if (!known) return encodeUncompressed(p, flags);
  const w = new CompressingWriter();
  w.u16(p.id ?? 0);
  w.u16((flags & 0x7fff) | (p.type === 'response' ? 0x8000 : 0));
  w.u16(questions.length);
  w.u16(sections[0]!.length);
  w.u16(sections[1]!.length);
  w.u16(sections[2]!.length + (p.optionCode === undefined ? 0 : 1));
  for (const q of questions) {
    w.name(q.name);
    w.u16(TYPE_CODES[q.type]!);
    w.u16(1 | (q.qu ? 0x8000 : 0));
  }
  for (const sec of sections) for (const r of sec) writeRecord(w, r);
  if (p.optionCode !== undefined) {
    // OPT: root name, type 41, class = UDP payload size, TTL 0, one option of no data.
    w.u8(0);
    w.u16(41);
    w.u16(OPT_PAYLOAD_SIZE);
    w.u32(0);
    w.u16(4);
    w.u16(p.optionCode);
    w.u16(0);
  }
  return Buffer.from(w.done());
}

/** Fallback for record types the compressing writer does not know. */
function encodeUncompressed(p: OutgoingPacket, flags: number): Buffer {
  const questions = (p.questions ?? []).map((q) => ({ name: q.name, type: q.type as DnsPacket.RecordType, class: 'IN' as const }));
  const buf = dns.encode({
    id: p.id ?? 0,
    type: p.type,
    flags,
    questions,
    answers: (p.answers ?? []) as DnsPacket.Answer[],
    authorities: (p.authorities ?? []) as DnsPacket.Answer[],
    additionals: [...(p.additionals ?? []) as DnsPacket.Answer[],
      ...(p.optionCode === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: OPT_PAYLOAD_SIZE, options: [{ code: p.optionCode, data: Buffer.alloc(0) }] } as unknown as DnsPacket.Answer])],
  } as DnsPacket.Packet);
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
