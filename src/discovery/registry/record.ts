import { isIP } from 'node:net';

/**
 * One registration in etcd or ZooKeeper: what an mDNS announcement carries (SRV, TXT, A/AAAA),
 * as one JSON value under `<prefix>/<service>/<instance key>`. Documented in
 * docs/registry.md; `v` is the schema version: fields may be added without changing it (readers
 * ignore what they do not know), anything else makes a new version, which older readers ignore
 * and count (`ignored`), never misread.
 */
export interface RegistryRecord {
  v: 1;
  /** Service name as in `--advertise NAME=…` (`redis`). */
  service: string;
  /** Instance name, unique per service (`redis@db1`, renamed `redis@db1 (2)` on a clash). */
  instance: string;
  /** The advertiser's host name (its mDNS host label, or the machine's name without mDNS). */
  host: string;
  /** Addresses to dial, likeliest first: --registry-address, else those announced over mDNS. */
  addresses: string[];
  port: number;
  priority: number;
  weight: number;
  /** DNS-SD TXT key/values, `hostprobe`, `relay-to` and `tls` included. */
  txt: Record<string, string>;
}

export const RECORD_VERSION = 1;

const SERVICE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The JSON written to the registry. */
export function encodeRecord(r: Omit<RegistryRecord, 'v'>): string {
  return JSON.stringify({ v: RECORD_VERSION, service: r.service, instance: r.instance, host: r.host,
    addresses: r.addresses, port: r.port, priority: r.priority, weight: r.weight, txt: r.txt });
}

/** The record in `text`, or why it is not one of ours (ignored and counted by the reader). */
export function decodeRecord(text: string): RegistryRecord | string {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return 'not a JSON object';
  const r = o as Record<string, unknown>;
  if (r.v !== RECORD_VERSION) return r.v === undefined ? 'no schema version (v): not an ambassador registration' : `schema version ${JSON.stringify(r.v)}, this ambassador reads ${RECORD_VERSION}`;
  if (typeof r.service !== 'string' || !SERVICE.test(r.service)) return 'bad service';
  if (typeof r.instance !== 'string' || r.instance.length === 0 || r.instance.length > 255) return 'bad instance';
  if (typeof r.host !== 'string' || r.host.length > 255) return 'bad host';
  if (!Array.isArray(r.addresses) || r.addresses.length === 0 || r.addresses.length > 32
    || !r.addresses.every((a) => typeof a === 'string' && isIP(a.replace(/%.*$/, '')) !== 0)) return 'bad addresses (IP literals expected)';
  if (!isInt(r.port, 1, 65535)) return 'bad port';
  if (!isInt(r.priority, 0, 65535) || !isInt(r.weight, 0, 65535)) return 'bad priority or weight';
  if (typeof r.txt !== 'object' || r.txt === null || Array.isArray(r.txt)
    || !Object.values(r.txt).every((v) => typeof v === 'string')) return 'bad txt';
  return {
    v: RECORD_VERSION, service: r.service, instance: r.instance, host: r.host, addresses: r.addresses as string[],
    port: r.port as number, priority: r.priority as number, weight: r.weight as number, txt: { ...(r.txt as Record<string, string>) },
  };
}

function isInt(v: unknown, min: number, max: number): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/**
 * The key of an instance under its service's directory: the instance name, percent-encoded so
 * that it is one path segment in etcd and one znode name in ZooKeeper (no '/', never '.' or '..').
 */
export function instanceKey(instance: string): string {
  return encodeURIComponent(instance).replace(/\./g, '%2E');
}

export function instanceFromKey(key: string): string {
  try {
    return decodeURIComponent(key);
  } catch {
    return key;
  }
}
