import { rdataCodec } from './dns-packet-api.js';

/** The record types the engine understands; anything else is cached as opaque data. */
export type RecordType = 'A' | 'AAAA' | 'PTR' | 'SRV' | 'TXT' | 'NSEC' | 'ANY' | string;

export interface SrvData {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

/** A resource record as the engine handles it (dns-packet's Answer shape, narrowed). */
export interface MdnsRecord {
  name: string;
  type: RecordType;
  class?: string;
  ttl: number;
  /** Cache-flush bit (RFC 6762 §10.2): set on unique records in responses. */
  flush?: boolean;
  data: unknown;
}

/** A record we publish, and whether it is unique to us (cache-flush bit, probed) or shared (PTR). */
export interface OwnedRecord {
  record: MdnsRecord;
  unique: boolean;
}

export interface MdnsQuestion {
  name: string;
  type: RecordType;
  /** Unicast-response bit (RFC 6762 §5.4). */
  qu?: boolean;
}

/** Lower-case ASCII only, as DNS compares names (RFC 1035 §2.3.3); no trailing dot. */
export function normalizeName(name: string): string {
  let n = name.endsWith('.') ? name.slice(0, -1) : name;
  n = n.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return n;
}

export function sameName(a: string, b: string): boolean {
  return normalizeName(a) === normalizeName(b);
}

/** Key for an RRset: owner name + type. */
export function rrsetKey(name: string, type: string): string {
  return `${normalizeName(name)}|${type}`;
}

/** Canonical bytes of a record's rdata, used for equality and RFC 6762 §8.2 tie-breaking. */
export function rdataBytes(r: { type: string; data: unknown }): Buffer {
  try {
    const enc = rdataCodec(r.type);
    // Names inside rdata compare case-insensitively: canonicalise before encoding.
    let data = r.data;
    if (r.type === 'PTR' && typeof data === 'string') data = normalizeName(data);
    if (r.type === 'SRV' && data && typeof data === 'object') {
      const s = data as SrvData;
      data = { ...s, target: normalizeName(s.target) };
    }
    // dns-packet's encoders write the 2-byte rdlength first: the rdata is what follows.
    return Buffer.from(enc.encode(data)).subarray(2);
  } catch {
    return Buffer.from(JSON.stringify(r.data ?? null));
  }
}

/** Keys already computed, per record object (records are never mutated once built). */
const keys = new WeakMap<object, string>();

/** Identity of one record: name, type and rdata (not TTL, not flush). */
export function recordKey(r: { name: string; type: string; data: unknown }): string {
  let k = keys.get(r);
  if (k === undefined) {
    k = `${rrsetKey(r.name, r.type)}|${rdataBytes(r).toString('base64')}`;
    keys.set(r, k);
  }
  return k;
}

export function sameRecord(
  a: { name: string; type: string; data: unknown },
  b: { name: string; type: string; data: unknown },
): boolean {
  return recordKey(a) === recordKey(b);
}

/** TXT key/value map → DNS-SD TXT strings (RFC 6763 §6). An empty TXT is one empty string. */
export function encodeTxt(txt: Record<string, string>): Buffer[] {
  const entries = Object.entries(txt);
  if (entries.length === 0) return [Buffer.alloc(0)];
  return entries.map(([k, v]) => Buffer.from(v === '' ? `${k}=` : `${k}=${v}`));
}

/** DNS-SD TXT strings → map. Keys are case-insensitive; the first occurrence wins (§6.4). */
export function decodeTxt(data: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const items = Array.isArray(data) ? data : data === undefined ? [] : [data];
  for (const item of items) {
    const s = Buffer.isBuffer(item) ? item.toString('utf8') : String(item);
    if (s.length === 0) continue;
    const eq = s.indexOf('=');
    const key = (eq < 0 ? s : s.slice(0, eq)).toLowerCase();
    if (key.length === 0 || key in out) continue;
    out[key] = eq < 0 ? '' : s.slice(eq + 1);
  }
  return out;
}

/** `redis` | `_redis._tcp` | `_redis._tcp.local` → `_redis._tcp.local`. */
export function serviceType(name: string, protocol: 'tcp' | 'udp' = 'tcp', domain = 'local'): string {
  if (name.startsWith('_')) {
    return name.includes('.' + domain) ? normalizeName(name) : `${normalizeName(name)}.${domain}`;
  }
  return `_${name.toLowerCase()}._${protocol}.${domain}`;
}

/** The instance label of `My Redis._redis._tcp.local` given its type. */
export function instanceLabel(fullName: string, type: string): string {
  const suffix = '.' + normalizeName(type);
  return normalizeName(fullName).endsWith(suffix) ? fullName.slice(0, fullName.length - suffix.length) : fullName;
}

export const SERVICES_ENUMERATION = '_services._dns-sd._udp.local';
