/**
 * A seeded, reproducible generator and mutator of hostile mDNS packets, for fuzz tests and soak
 * runs (test/robustness/mdns-fuzz.test.ts, test/soak/). Not used by the engine itself.
 *
 *   const fuzz = new MdnsFuzzer(seed, { ourInstance: 'redis@alpha._redis._tcp.local', ourHost: 'alpha.local' });
 *   for (let i = 0; i < n; i++) { const c = fuzz.next(); feed(c.buf); }   // c.kind names the family
 *
 * Every case is a pure function of (seed, index): a failure is reproduced with the seed and the
 * case number printed by the test.
 */
import { encodePacket } from '../../src/mdns/wire/codec.js';
import type { MdnsRecord } from '../../src/mdns/wire/records.js';

/** mulberry32: small, fast, good enough for fuzzing; deterministic across platforms. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

// ---- raw wire building (no validation: that is the point) -----------------------------------

export function rawHeader(f: { id?: number; flags?: number; qd?: number; an?: number; ns?: number; ar?: number }): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(f.id ?? 0, 0);
  b.writeUInt16BE(f.flags ?? 0, 2);
  b.writeUInt16BE(f.qd ?? 0, 4);
  b.writeUInt16BE(f.an ?? 0, 6);
  b.writeUInt16BE(f.ns ?? 0, 8);
  b.writeUInt16BE(f.ar ?? 0, 10);
  return b;
}

/** Uncompressed name from dotted text. */
export function rawName(name: string): Buffer {
  const parts = name.split('.').filter((p) => p.length > 0);
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const l = Buffer.from(p, 'utf8');
    chunks.push(Buffer.from([l.length & 0xff]), l);
  }
  chunks.push(Buffer.from([0]));
  return Buffer.concat(chunks);
}

export function rawQuestion(name: Buffer, type: number, cls: number): Buffer {
  const t = Buffer.alloc(4);
  t.writeUInt16BE(type, 0);
  t.writeUInt16BE(cls, 2);
  return Buffer.concat([name, t]);
}

export function rawRecord(name: Buffer, type: number, cls: number, ttl: number, rdata: Buffer, rdlength = rdata.length): Buffer {
  const f = Buffer.alloc(10);
  f.writeUInt16BE(type, 0);
  f.writeUInt16BE(cls, 2);
  f.writeUInt32BE(ttl >>> 0, 4);
  f.writeUInt16BE(rdlength & 0xffff, 8);
  return Buffer.concat([name, f, rdata]);
}

const RESPONSE = 0x8400; // QR + AA

// ---- the fuzzer ---------------------------------------------------------------------------------

export interface FuzzTargets {
  /** Full name of a service instance the engine under test publishes (conflicts, goodbyes). */
  ourInstance?: string;
  /** Its SRV data as published, for spoofed goodbyes of the exact record. */
  ourSrv?: { priority: number; weight: number; port: number; target: string };
  /** Host name (`alpha.local`) and address the engine under test publishes. */
  ourHost?: string;
  ourAddress?: string;
  /** A service type the engine browses: bogus instances are announced under it. */
  browsedType?: string;
}

export type FuzzKind =
  | 'random-bytes' | 'truncated-header' | 'truncated-packet' | 'compression-loop' | 'forward-pointer'
  | 'label-overflow' | 'count-overflow' | 'unknown-type-class' | 'huge-txt' | 'rdlength-mismatch'
  | 'ttl-extremes' | 'bogus-instance' | 'own-conflict' | 'own-goodbye' | 'rogue-probe' | 'mutated';

export const FUZZ_KINDS: readonly FuzzKind[] = [
  'random-bytes', 'truncated-header', 'truncated-packet', 'compression-loop', 'forward-pointer',
  'label-overflow', 'count-overflow', 'unknown-type-class', 'huge-txt', 'rdlength-mismatch',
  'ttl-extremes', 'bogus-instance', 'own-conflict', 'own-goodbye', 'rogue-probe', 'mutated',
];

export interface FuzzCase {
  index: number;
  kind: FuzzKind;
  buf: Buffer;
  /** For 'mutated': what the seed was and which mutations were applied. */
  detail?: string;
}

const WEIGHTS: Array<[FuzzKind, number]> = [
  ['random-bytes', 16], ['truncated-header', 6], ['truncated-packet', 16], ['compression-loop', 10],
  ['forward-pointer', 8], ['label-overflow', 10], ['count-overflow', 12], ['unknown-type-class', 12],
  ['huge-txt', 6], ['rdlength-mismatch', 10], ['ttl-extremes', 8], ['bogus-instance', 8],
  ['own-conflict', 1], ['own-goodbye', 6], ['rogue-probe', 1], ['mutated', 60],
];
const TOTAL_WEIGHT = WEIGHTS.reduce((n, [, w]) => n + w, 0);

export class MdnsFuzzer {
  private index = 0;
  private t: Required<FuzzTargets>;

  constructor(readonly seed: number, targets: FuzzTargets = {}, /** Bogus instance names cycle through this many. */ readonly bogusPool = 64) {
    this.t = {
      ourInstance: targets.ourInstance ?? 'redis@alpha._redis._tcp.local',
      ourSrv: targets.ourSrv ?? { priority: 0, weight: 0, port: 6379, target: 'alpha.local' },
      ourHost: targets.ourHost ?? 'alpha.local',
      ourAddress: targets.ourAddress ?? '127.0.0.1',
      browsedType: targets.browsedType ?? '_redis._tcp.local',
    };
  }

  /** Points later cases at new names (e.g. after the engine under test renamed itself). */
  retarget(targets: FuzzTargets): void {
    this.t = { ...this.t, ...Object.fromEntries(Object.entries(targets).filter(([, v]) => v !== undefined)) };
  }

  /** The case with this index, independent of any other (same seed → same bytes). */
  caseAt(index: number, kind?: FuzzKind): FuzzCase {
    const rng = new Rng((this.seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
    const k = kind ?? this.pickKind(rng);
    const { buf, detail } = this.build(k, rng);
    return { index, kind: k, buf, detail };
  }

  next(kind?: FuzzKind): FuzzCase {
    return this.caseAt(this.index++, kind);
  }

  private pickKind(rng: Rng): FuzzKind {
    let x = rng.int(TOTAL_WEIGHT);
    for (const [k, w] of WEIGHTS) {
      if (x < w) return k;
      x -= w;
    }
    return 'random-bytes';
  }

  /** A well-formed packet to mutate: responses, queries, probes, with various record types. */
  validSeed(rng: Rng): { buf: Buffer; what: string } {
    const t = this.t;
    const bogus = `bogus-${rng.int(this.bogusPool)}`;
    const inst = `${bogus}.${t.browsedType}`;
    const host = `${bogus}.local`;
    const choice = rng.int(6);
    const ttl = rng.pick([0, 1, 120, 4500, 0x7fffffff]);
    const records: MdnsRecord[] = [
      { name: t.browsedType, type: 'PTR', ttl, data: inst },
      { name: inst, type: 'SRV', ttl, flush: true, data: { priority: rng.int(10), weight: rng.int(10), port: rng.range(1, 65535), target: host } },
      { name: inst, type: 'TXT', ttl, flush: true, data: [Buffer.from(`k=${rng.int(1000)}`)] },
      { name: host, type: 'A', ttl, flush: true, data: `127.0.${rng.int(256)}.${rng.range(2, 254)}` },
      { name: host, type: 'AAAA', ttl, flush: true, data: 'fe80::1' },
    ];
    switch (choice) {
      case 0:
        return { buf: encodePacket({ type: 'response', answers: records }), what: 'announcement' };
      case 1:
        return { buf: encodePacket({ type: 'response', answers: records.slice(0, 1), additionals: records.slice(1) }), what: 'answer+additionals' };
      case 2:
        return { buf: encodePacket({ type: 'query', questions: [{ name: t.browsedType, type: 'PTR', qu: rng.bool() }], answers: records.slice(0, 1) }), what: 'query+known-answer' };
      case 3:
        return { buf: encodePacket({ type: 'query', questions: [{ name: inst, type: 'ANY' }], authorities: records.slice(1, 3) }), what: 'probe' };
      case 4:
        return { buf: encodePacket({ type: 'query', questions: [{ name: t.ourInstance, type: 'SRV' }, { name: t.ourHost, type: 'A' }, { name: t.browsedType, type: 'PTR' }] }), what: 'query-for-ours' };
      default:
        return { buf: encodePacket({ type: 'response', answers: [{ name: inst, type: 'NSEC', ttl, data: { nextDomain: inst, rrtypes: ['SRV', 'TXT'] } } as MdnsRecord] }), what: 'nsec' };
    }
  }

  private build(kind: FuzzKind, rng: Rng): { buf: Buffer; detail?: string } {
    const t = this.t;
    switch (kind) {
      case 'random-bytes':
        return { buf: rng.bytes(rng.int(rng.bool(0.8) ? 80 : 1500)) };
      case 'truncated-header':
        return { buf: rng.bytes(rng.int(12)) };
      case 'truncated-packet': {
        const s = this.validSeed(rng).buf;
        return { buf: s.subarray(0, rng.range(12, Math.max(12, s.length - 1))), detail: `cut of ${s.length}` };
      }
      case 'compression-loop': {
        const v = rng.int(4);
        if (v === 0) {
          // A question whose name points at itself.
          return { buf: Buffer.concat([rawHeader({ qd: 1 }), Buffer.from([0xc0, 12, 0, 12, 0, 1])]), detail: 'self pointer' };
        }
        if (v === 1) {
          // Two names pointing at each other (second points back at first, first forward at second).
          return { buf: Buffer.concat([rawHeader({ qd: 2 }), Buffer.from([0xc0, 18, 0, 12, 0, 1, 0xc0, 12, 0, 12, 0, 1])]), detail: 'mutual pointers' };
        }
        if (v === 2) {
          // A label then a pointer back to that label: a → a → a … (bounded only by the decoder).
          return { buf: Buffer.concat([rawHeader({ qd: 1 }), Buffer.from([1, 0x61, 0xc0, 12, 0, 12, 0, 1])]), detail: 'label loop' };
        }
        // A record whose rdata name points into itself.
        const name = rawName(t.browsedType);
        const rdataAt = 12 + name.length + 10;
        return { buf: Buffer.concat([rawHeader({ flags: RESPONSE, an: 1 }), rawRecord(name, 12, 1, 120, Buffer.from([0xc0 | (rdataAt >> 8), rdataAt & 0xff]))]), detail: 'rdata self pointer' };
      }
      case 'forward-pointer': {
        const target = rng.range(13, 4000);
        return {
          buf: Buffer.concat([rawHeader({ qd: 1 }), Buffer.from([0xc0 | ((target >> 8) & 0x3f), target & 0xff, 0, 12, 0, 1]), rawName('x.local')]),
          detail: `pointer to ${target}`,
        };
      }
      case 'label-overflow': {
        const v = rng.int(4);
        let name: Buffer;
        if (v === 0) name = Buffer.concat([Buffer.from([rng.range(41, 63)]), rng.bytes(rng.int(40))]); // length past the end
        else if (v === 1) name = Buffer.concat([Buffer.from([rng.range(0x40, 0xbf)]), rng.bytes(8), Buffer.from([0])]); // reserved label types
        else if (v === 2) name = Buffer.concat([...Array.from({ length: 6 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])), Buffer.from([0])]); // > 255 bytes
        else name = Buffer.concat([Buffer.from([63]), Buffer.alloc(20, 0x62)]); // 63 announced, 20 present, no terminator
        const asRecord = rng.bool();
        return {
          buf: Buffer.concat([
            rawHeader(asRecord ? { flags: RESPONSE, an: 1 } : { qd: 1 }),
            asRecord ? rawRecord(name, 1, 1, 120, Buffer.from([127, 0, 0, 9])) : rawQuestion(name, 12, 1),
          ]),
          detail: `variant ${v}`,
        };
      }
      case 'count-overflow': {
        const s = Buffer.from(this.validSeed(rng).buf);
        const field = rng.pick([4, 6, 8, 10]);
        s.writeUInt16BE(rng.pick([0xffff, 0x8000, 513, s.readUInt16BE(field) + rng.range(1, 20)]), field);
        return { buf: s, detail: `count at ${field} = ${s.readUInt16BE(field)}` };
      }
      case 'unknown-type-class': {
        const type = rng.pick([0, 255, 0xff00, 0xfffe, rng.int(65536)]);
        const cls = rng.pick([0, 3, 4, 254, 255, 0x8001, 0x80fe, rng.int(65536)]);
        const name = rawName(rng.bool() ? t.ourInstance : `odd-${rng.int(100)}.local`);
        const asQuery = rng.bool(0.4);
        const body = asQuery
          ? rawQuestion(name, type, cls)
          : rawRecord(name, type, cls, rng.pick([0, 120, 0xffffffff]), rng.bytes(rng.int(64)));
        return { buf: Buffer.concat([rawHeader(asQuery ? { qd: 1 } : { flags: RESPONSE, an: 1 }), body]), detail: `type ${type} class ${cls}` };
      }
      case 'huge-txt': {
        const strings: Buffer[] = [];
        const n = rng.range(1, 250);
        for (let i = 0; i < n; i++) {
          const len = rng.pick([0, 1, 255, rng.int(256)]);
          strings.push(Buffer.from([len]), Buffer.alloc(len, 0x41 + (i % 26)));
        }
        let rdata = Buffer.concat(strings);
        if (rdata.length > 60000) rdata = rdata.subarray(0, 60000);
        const inst = `bogus-${rng.int(this.bogusPool)}.${t.browsedType}`;
        return {
          buf: Buffer.concat([
            rawHeader({ flags: RESPONSE, an: 2 }),
            rawRecord(rawName(t.browsedType), 12, 1, 120, rawName(inst)),
            rawRecord(rawName(inst), 16, 0x8001, 120, rdata),
          ]),
          detail: `${rdata.length} bytes of TXT`,
        };
      }
      case 'rdlength-mismatch': {
        const type = rng.pick([1, 28, 33, 12, 16, 47]);
        const rdata = rng.bytes(rng.int(30));
        const rdlength = rng.pick([0, 1, rdata.length + rng.range(1, 50), 0xffff, Math.max(0, rdata.length - 1)]);
        return {
          buf: Buffer.concat([rawHeader({ flags: RESPONSE, an: 1 }), rawRecord(rawName(`bogus-${rng.int(this.bogusPool)}.local`), type, 1, 120, rdata, rdlength)]),
          detail: `type ${type} rdlength ${rdlength} for ${rdata.length}`,
        };
      }
      case 'ttl-extremes': {
        const ttl = rng.pick([0, 1, 0x7fffffff, 0x80000000, 0xffffffff]);
        const bogus = `bogus-${rng.int(this.bogusPool)}`;
        const inst = `${bogus}.${t.browsedType}`;
        const buf = Buffer.concat([
          rawHeader({ flags: RESPONSE, an: 3 }),
          rawRecord(rawName(t.browsedType), 12, 1, ttl, rawName(inst)),
          rawRecord(rawName(inst), 33, 0x8001, ttl, Buffer.concat([Buffer.from([0, 0, 0, 0, 0x1f, 0x90]), rawName(`${bogus}.local`)])),
          rawRecord(rawName(`${bogus}.local`), 1, 0x8001, ttl, Buffer.from([127, 0, 1, rng.range(2, 254)])),
        ]);
        return { buf, detail: `ttl ${ttl}` };
      }
      case 'bogus-instance':
        return { buf: this.validSeed(rng).buf };
      case 'own-conflict': {
        // A valid competing claim for one of our unique names.
        const v = rng.int(3);
        let rec: MdnsRecord;
        if (v === 0) rec = { name: t.ourInstance, type: 'SRV', ttl: 120, flush: true, data: { ...t.ourSrv, port: (t.ourSrv.port % 65535) + 1 } };
        else if (v === 1) rec = { name: t.ourInstance, type: 'TXT', ttl: 120, flush: true, data: [Buffer.from(`rogue=${rng.int(100)}`)] };
        else rec = { name: t.ourHost, type: 'A', ttl: 120, flush: true, data: `127.9.${rng.int(256)}.${rng.range(1, 254)}` };
        return { buf: encodePacket({ type: 'response', answers: [rec] }), detail: `${rec.type} for ${rec.name}` };
      }
      case 'own-goodbye': {
        const recs: MdnsRecord[] = [
          { name: t.ourInstance, type: 'SRV', ttl: 0, flush: true, data: t.ourSrv },
          { name: t.ourHost, type: 'A', ttl: 0, flush: true, data: t.ourAddress },
          { name: t.ourInstance.slice(t.ourInstance.indexOf('._') + 1), type: 'PTR', ttl: 0, data: t.ourInstance },
        ];
        return { buf: encodePacket({ type: 'response', answers: [rng.pick(recs)] }), detail: 'spoofed goodbye' };
      }
      case 'rogue-probe': {
        const name = rng.bool() ? t.ourInstance : t.ourHost;
        const auth: MdnsRecord = name === t.ourHost
          ? { name, type: 'A', ttl: 120, data: `127.8.0.${rng.range(1, 254)}` }
          : { name, type: 'SRV', ttl: 120, data: { ...t.ourSrv, port: rng.range(1, 65535) } };
        return { buf: encodePacket({ type: 'query', questions: [{ name, type: 'ANY', qu: true }], authorities: [auth] }), detail: `probe for ${name}` };
      }
      case 'mutated': {
        const seed = this.validSeed(rng);
        let buf = Buffer.from(seed.buf);
        const applied: string[] = [];
        const n = rng.range(1, 4);
        for (let i = 0; i < n; i++) {
          const op = rng.int(8);
          const at = rng.int(Math.max(1, buf.length));
          if (op === 0) {
            buf[at] = buf[at]! ^ (1 << rng.int(8));
            applied.push(`flip@${at}`);
          } else if (op === 1) {
            buf[at] = rng.pick([0x00, 0xff, 0xc0, 0x3f, 0x40, 0x7f, 0x80]);
            applied.push(`set@${at}`);
          } else if (op === 2) {
            buf = Buffer.concat([buf.subarray(0, at), rng.bytes(rng.range(1, 16)), buf.subarray(at)]);
            applied.push(`insert@${at}`);
          } else if (op === 3) {
            buf = Buffer.concat([buf.subarray(0, at), buf.subarray(Math.min(buf.length, at + rng.range(1, 16)))]);
            applied.push(`delete@${at}`);
          } else if (op === 4) {
            const len = rng.range(1, 32);
            buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at, at + len), buf.subarray(at)]);
            applied.push(`dup@${at}`);
          } else if (op === 5 && buf.length >= 12) {
            const f = rng.pick([4, 6, 8, 10]);
            buf.writeUInt16BE(rng.int(8), f);
            applied.push(`count@${f}`);
          } else if (op === 6 && buf.length > 14) {
            // a compression pointer somewhere, anywhere
            const p = rng.int(buf.length + 64);
            buf[at] = 0xc0 | ((p >> 8) & 0x3f);
            if (at + 1 < buf.length) buf[at + 1] = p & 0xff;
            applied.push(`ptr@${at}->${p}`);
          } else {
            buf = buf.subarray(0, at);
            applied.push(`cut@${at}`);
          }
        }
        return { buf, detail: `${seed.what}: ${applied.join(',')}` };
      }
    }
  }
}
