import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../../base/clock.js';
import type { Family } from '../../base/host-network.js';
import type { LinkAddresses } from '../link/interfaces.js';
import type { Link } from '../link/link.js';
import {
  type MdnsRecord, type OwnedRecord, type SrvData,
  encodeTxt, rdataBytes, recordKey, sameName, SERVICES_ENUMERATION,
} from '../wire/records.js';

export interface TtlConfig {
  /** TTL (s) of records naming a host: A/AAAA, SRV (default 120, as Avahi). */
  host: number;
  /** TTL (s) of TXT records (default 4500: RFC 6762 §10 gives 120 s only to records that name a host). */
  txt: number;
  /** TTL (s) of PTR records (default 4500, as Avahi). */
  ptr: number;
}

export const DEFAULT_TTL: TtlConfig = { host: 120, txt: 4500, ptr: 4500 };

export interface ServiceSpec {
  /** Instance label, e.g. `redis@db1` (may contain spaces; no dots). */
  instance: string;
  /** Full service type, e.g. `_redis._tcp.local`. */
  type: string;
  port: number;
  txt?: Record<string, string>;
  priority?: number;
  weight?: number;
  /** Subtype labels, e.g. `primary` → `_primary._sub._redis._tcp.local`. */
  subtypes?: string[];
}

/**
 * A name we claim: probed before use, defended, renamed on a real conflict (RFC 6762 §8, §9).
 * The host name (its address records) or a service instance (its SRV, TXT and PTRs).
 */
export interface Claim {
  readonly kind: 'host' | 'service';
  /** The owner name claimed now (it changes on rename). */
  name(): string;
  /** Every record of the claim on a link (the host's addresses differ per link). */
  records(link: LinkAddresses): OwnedRecord[];
}

/** This host's name and its address records on each link (RFC 6762 §6.2: the link's own addresses). */
export class HostClaim implements Claim {
  readonly kind = 'host' as const;
  /** Claimed only once something is published: a browse-only engine sends no probes. */
  active = false;

  constructor(
    public label: string,
    private readonly ttl: TtlConfig,
  ) {}

  name(): string {
    return `${this.label}.local`;
  }

  private readonly built = new WeakMap<readonly unknown[], { name: string; v6: readonly unknown[]; records: OwnedRecord[] }>();

  /** The A/AAAA records of a link's addresses (built once per address list and name). */
  records(link: LinkAddresses): OwnedRecord[] {
    const name = this.name();
    const hit = this.built.get(link.ipv4);
    if (hit && hit.name === name && hit.v6 === link.ipv6) return hit.records;
    const records: OwnedRecord[] = [
      ...link.ipv4.map((a) => ({ record: { name, type: 'A', ttl: this.ttl.host, flush: true, data: a.address }, unique: true })),
      ...link.ipv6.map((a) => ({ record: { name, type: 'AAAA', ttl: this.ttl.host, flush: true, data: a.address }, unique: true })),
    ];
    this.built.set(link.ipv4, { name, v6: link.ipv6, records });
    return records;
  }
}

export type RegistrationState = 'probing' | 'announcing' | 'announced' | 'withdrawn';

/**
 * One published service. Events: 'state' (state, reason), 'renamed' (oldInstance, newInstance, reason).
 */
export class Registration extends EventEmitter implements Claim {
  readonly kind = 'service' as const;
  state: RegistrationState = 'probing';
  stateReason = 'starting';
  instance: string;
  conflicts = 0;
  /** @internal a re-probe after a conflict waits here */
  retry?: TimerHandle;

  constructor(
    readonly spec: ServiceSpec,
    private readonly host: HostClaim,
    private readonly ttl: TtlConfig,
  ) {
    super();
    this.instance = spec.instance;
  }

  get fullName(): string {
    return `${this.instance}.${this.spec.type}`;
  }

  name(): string {
    return this.fullName;
  }

  private built?: { key: string; records: OwnedRecord[] };

  /** Its records (built once per instance name and host name). */
  records(): OwnedRecord[] {
    const key = `${this.instance}|${this.host.name()}`;
    if (this.built?.key === key) return this.built.records;
    const records = this.build();
    this.built = { key, records };
    return records;
  }

  private build(): OwnedRecord[] {
    const s = this.spec;
    const full = this.fullName;
    const out: OwnedRecord[] = [
      { record: { name: s.type, type: 'PTR', ttl: this.ttl.ptr, data: full }, unique: false },
      { record: { name: SERVICES_ENUMERATION, type: 'PTR', ttl: this.ttl.ptr, data: s.type }, unique: false },
      {
        record: {
          name: full, type: 'SRV', ttl: this.ttl.host, flush: true,
          data: { priority: s.priority ?? 0, weight: s.weight ?? 0, port: s.port, target: this.host.name() } satisfies SrvData,
        },
        unique: true,
      },
      { record: { name: full, type: 'TXT', ttl: this.ttl.txt, flush: true, data: encodeTxt(s.txt ?? {}) }, unique: true },
    ];
    for (const sub of s.subtypes ?? []) {
      out.push({ record: { name: `_${sub}._sub.${s.type}`, type: 'PTR', ttl: this.ttl.ptr, data: full }, unique: false });
    }
    return out;
  }

  /** @internal */
  setState(state: RegistrationState, reason: string): void {
    if (this.state === state && this.stateReason === reason) return;
    this.state = state;
    this.stateReason = reason;
    this.emit('state', state, reason);
  }
}

/** `name (2)` → `name (3)`; `name` → `name (2)` (RFC 6762 §9, Apple/Avahi convention). */
export function nextInstanceName(name: string): string {
  const m = /^(.*) \((\d+)\)$/.exec(name);
  return m ? `${m[1]} (${Number(m[2]) + 1})` : `${name} (2)`;
}

/** `host` → `host-2`; `host-2` → `host-3` (Avahi's host name rename). */
export function nextHostName(name: string): string {
  const m = /^(.*)-(\d+)$/.exec(name);
  return m ? `${m[1]}-${Number(m[2]) + 1}` : `${name}-2`;
}

/** RFC 6762 §8.2 lexicographic comparison of two record sets; >0 when `a` wins. */
export function compareRecordSets(a: MdnsRecord[], b: MdnsRecord[]): number {
  const typeNum: Record<string, number> = { A: 1, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, NSEC: 47 };
  const sortKey = (r: MdnsRecord) => ({ t: typeNum[r.type] ?? 65535, d: rdataBytes(r) });
  const cmpOne = (x: { t: number; d: Buffer }, y: { t: number; d: Buffer }) => x.t - y.t || Buffer.compare(x.d, y.d);
  const sa = a.map(sortKey).sort(cmpOne);
  const sb = b.map(sortKey).sort(cmpOne);
  for (let i = 0; i < Math.min(sa.length, sb.length); i++) {
    const c = cmpOne(sa[i]!, sb[i]!);
    if (c !== 0) return c;
  }
  return sa.length - sb.length;
}

/**
 * What is published on one link: kept with what we own, not in the Link (the link layer knows
 * how packets leave, not what they publish).
 */
export class LinkPublication {
  /** Probing may start (the link has settled after coming up). */
  ready = false;
  /** Claims (host name, services) probed successfully on this link. */
  readonly established = new Set<Claim>();
  /** Records announced here and not withdrawn, per family, by record key: what needs a goodbye when it stops being ours. */
  readonly announced = new Map<Family, Map<string, OwnedRecord>>();

  /** Records announced on `family` (created on first use). */
  announcedOn(family: Family): Map<string, OwnedRecord> {
    let m = this.announced.get(family);
    if (!m) this.announced.set(family, (m = new Map()));
    return m;
  }
}

/** How long a record we sent counts as ours when it comes back (our own packet, echoed). */
const ECHO_WINDOW_MS = 120_000;

/**
 * What this host publishes: its name and its registrations, what is published on each link
 * (probed there, announced there), and so which records are live on a link. The prober,
 * announcer and responder all read it; none of them owns it.
 */
export class OwnedRecords {
  readonly registrations = new Set<Registration>();
  /** recordKey → until when an echo of it is ours (records we announced, addresses we had). */
  private readonly sent = new Map<string, number>();
  /** Bumped whenever what is live anywhere may have changed (see touch()). */
  private version = 0;
  private readonly liveCache = new WeakMap<Link, { version: number; info: unknown; records: OwnedRecord[] }>();
  private readonly onLinks = new WeakMap<Link, LinkPublication>();

  constructor(
    readonly host: HostClaim,
    private readonly clock: Clock,
  ) {}

  /** What is published on `link` (created on first use; forgotten with the link). */
  at(link: Link): LinkPublication {
    let p = this.onLinks.get(link);
    if (!p) this.onLinks.set(link, (p = new LinkPublication()));
    return p;
  }

  /** Claims in force: the host name (once something is published) and every registration not withdrawn. */
  claims(): Claim[] {
    const out: Claim[] = [];
    if (this.host.active) out.push(this.host);
    for (const r of this.registrations) if (r.state !== 'withdrawn') out.push(r);
    return out;
  }

  /**
   * Records that may be announced and answered on `link`: those of claims probed there, services
   * only once the host name is (their SRV names it). One entry per record.
   */
  live(link: Link): OwnedRecord[] {
    const hit = this.liveCache.get(link);
    if (hit && hit.version === this.version && hit.info === link.info) return hit.records;
    const records = this.compute(link);
    this.liveCache.set(link, { version: this.version, info: link.info, records });
    return records;
  }

  /**
   * What is live changed: a claim was probed or dropped somewhere, a registration came, went or
   * was renamed, the host was renamed. (Address changes are seen from the link itself.)
   */
  touch(): void {
    this.version++;
  }

  private compute(link: Link): OwnedRecord[] {
    const out = new Map<string, OwnedRecord>();
    const { established } = this.at(link);
    if (!established.has(this.host)) return [];
    for (const o of this.host.records(link)) out.set(recordKey(o.record), o);
    for (const reg of this.registrations) {
      if (reg.state === 'withdrawn' || !established.has(reg)) continue;
      for (const o of reg.records()) if (!out.has(recordKey(o.record))) out.set(recordKey(o.record), o);
    }
    return [...out.values()];
  }

  /** Our claim named `name`, if any. */
  claimNamed(name: string): Claim | undefined {
    return this.claims().find((c) => sameName(c.name(), name));
  }

  /** Remember records we sent: for a while, their echo is not a rival claim. */
  remember(records: readonly MdnsRecord[]): void {
    const until = this.clock.now() + ECHO_WINDOW_MS;
    for (const r of records) this.sent.set(recordKey(r), until);
    if (this.sent.size > 10_000) this.prune();
  }

  /** Whether `record` is one we sent recently (our own packet, come back). */
  isEcho(record: MdnsRecord): boolean {
    const until = this.sent.get(recordKey({ ...record }));
    return until !== undefined && until > this.clock.now();
  }

  private prune(): void {
    const now = this.clock.now();
    for (const [k, until] of this.sent) if (until <= now) this.sent.delete(k);
  }
}
