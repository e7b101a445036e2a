import { EventEmitter } from 'node:events';
import type { RemoteInfo } from 'node:dgram';
import type { Clock, TimerHandle } from './clock.js';
import type { NetInterface } from './interfaces.js';
import {
  type MdnsRecord, type MdnsQuestion, type SrvData,
  encodeTxt, normalizeName, rdataBytes, recordKey, sameName, SERVICES_ENUMERATION,
} from './records.js';
import type { Family, MdnsTransport } from './transport.js';
import type { MdnsPacket } from './wire.js';
import { recordLength } from './wire.js';

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

export type RegistrationState = 'probing' | 'announcing' | 'announced' | 'withdrawn';

/**
 * One published service. Events: 'state' (state, reason), 'renamed' (oldInstance, newInstance).
 */
export class Registration extends EventEmitter {
  state: RegistrationState = 'probing';
  stateReason = 'starting';
  instance: string;
  conflicts = 0;
  /** @internal */ timers: TimerHandle[] = [];
  /** @internal */ probeAttempt = 0;

  constructor(readonly spec: ServiceSpec) {
    super();
    this.instance = spec.instance;
  }

  get fullName(): string {
    return `${this.instance}.${this.spec.type}`;
  }

  /** @internal */
  setState(state: RegistrationState, reason: string): void {
    if (this.state === state && this.stateReason === reason) return;
    this.state = state;
    this.stateReason = reason;
    this.emit('state', state, reason);
  }

  /** @internal */
  clearTimers(): void {
    for (const t of this.timers) t.cancel();
    this.timers = [];
  }
}

interface OwnedRecord {
  record: MdnsRecord;
  unique: boolean;
}

export interface ResponderStats {
  queriesAnswered: number;
  legacyQueriesAnswered: number;
  answersSuppressed: number;
  rateLimited: number;
  conflicts: number;
  probesSent: number;
  announcementsSent: number;
  goodbyesSent: number;
  reannouncedAfterSpoofedGoodbye: number;
}

const PROBE_INTERVAL = 250;
const MAX_PACKET = 1400; // stays under a 1500-byte MTU with IP/UDP headers

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
 * The responder (RFC 6762 §6, §8, §9, §10; RFC 6763): probes unique names, announces,
 * answers queries (multicast, QU and legacy unicast), suppresses known answers, rate-limits,
 * defends its names, renames on conflict and says goodbye.
 *
 * Events: 'host-renamed' (old, new).
 */
export class Responder extends EventEmitter {
  readonly stats: ResponderStats = {
    queriesAnswered: 0, legacyQueriesAnswered: 0, answersSuppressed: 0, rateLimited: 0, conflicts: 0,
    probesSent: 0, announcementsSent: 0, goodbyesSent: 0, reannouncedAfterSpoofedGoodbye: 0,
  };
  readonly registrations = new Set<Registration>();
  hostLabel: string;
  private hostState: 'probing' | 'announced' = 'probing';
  private hostTimers: TimerHandle[] = [];
  private hostWaiters: Array<() => void> = [];
  /** recordKey@iface → last multicast time, for the §6 one-second rule. */
  private readonly lastMulticast = new Map<string, number>();
  private readonly pending = new Map<string, { iface: NetInterface; family: Family; answers: Map<string, MdnsRecord>; timer: TimerHandle }>();
  private readonly recentConflicts: number[] = [];
  private stopped = false;

  constructor(
    private readonly transport: MdnsTransport,
    private readonly clock: Clock,
    hostLabel: string,
    private readonly ttl: TtlConfig = DEFAULT_TTL,
  ) {
    super();
    this.hostLabel = hostLabel;
  }

  get hostName(): string {
    return `${this.hostLabel}.local`;
  }

  // ---- records -------------------------------------------------------------------------

  private hostRecords(iface: NetInterface, ttl = this.ttl.host): OwnedRecord[] {
    const out: OwnedRecord[] = [{ record: { name: this.hostName, type: 'A', ttl, flush: true, data: iface.address }, unique: true }];
    if (this.transport.families(iface).includes('IPv6')) {
      for (const v6 of iface.ipv6 ?? []) {
        out.push({ record: { name: this.hostName, type: 'AAAA', ttl, flush: true, data: v6.address.split('%')[0]! }, unique: true });
      }
    }
    return out;
  }

  private serviceRecords(reg: Registration): OwnedRecord[] {
    const s = reg.spec;
    const full = reg.fullName;
    const out: OwnedRecord[] = [
      { record: { name: s.type, type: 'PTR', ttl: this.ttl.ptr, data: full }, unique: false },
      { record: { name: SERVICES_ENUMERATION, type: 'PTR', ttl: this.ttl.ptr, data: s.type }, unique: false },
      {
        record: {
          name: full, type: 'SRV', ttl: this.ttl.host, flush: true,
          data: { priority: s.priority ?? 0, weight: s.weight ?? 0, port: s.port, target: this.hostName } satisfies SrvData,
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

  /** Every record this responder currently answers for on `iface`. */
  private answerable(iface: NetInterface): OwnedRecord[] {
    const out: OwnedRecord[] = [];
    if (this.hostState === 'announced') out.push(...this.hostRecords(iface));
    for (const reg of this.registrations) {
      if (reg.state === 'announced' || reg.state === 'announcing') out.push(...this.serviceRecords(reg));
    }
    return out;
  }

  private ourAddresses(): Set<string> {
    return new Set(this.transport.interfaces.flatMap((i) => [i.address, ...(i.ipv6 ?? []).map((x) => x.address.split('%')[0]!)]));
  }

  // ---- host name ------------------------------------------------------------------------

  /** Probes the host name, then announces its address records. */
  startHost(): void {
    this.hostState = 'probing';
    this.probe(
      () => this.hostName,
      (iface) => this.hostRecords(iface).map((o) => o.record),
      this.hostTimers,
      () => {
        this.hostState = 'announced';
        this.announce((iface) => this.hostRecords(iface), this.hostTimers);
        const waiters = this.hostWaiters;
        this.hostWaiters = [];
        for (const w of waiters) w();
      },
    );
  }

  /** Services probe in parallel with the host name but announce only once it is ours. */
  private afterHostAnnounced(fn: () => void): void {
    if (this.hostState === 'announced') fn();
    else this.hostWaiters.push(fn);
  }

  private renameHost(reason: string): void {
    const old = this.hostLabel;
    this.hostLabel = nextHostName(old);
    this.stats.conflicts++;
    for (const t of this.hostTimers) t.cancel();
    this.hostTimers = [];
    this.emit('host-renamed', old, this.hostLabel, reason);
    // SRV records point at the host name: every service re-probes with the new target.
    for (const reg of this.registrations) {
      if (reg.state !== 'withdrawn') this.restartRegistration(reg, 'host renamed');
    }
    this.conflictBackoff(() => this.startHost());
  }

  // ---- services -------------------------------------------------------------------------

  register(spec: ServiceSpec): Registration {
    const reg = new Registration(spec);
    this.registrations.add(reg);
    // Probed in parallel with the host name (RFC 6762 §8.1 allows probing all unique names
    // at once); a host rename restarts every registration anyway.
    this.startRegistration(reg);
    return reg;
  }

  private startRegistration(reg: Registration): void {
    if (reg.state === 'withdrawn' || this.stopped) return;
    reg.setState('probing', reg.probeAttempt === 0 ? 'starting' : 'conflict');
    reg.probeAttempt++;
    this.probe(
      () => reg.fullName,
      () => this.serviceRecords(reg).filter((o) => o.unique).map((o) => o.record),
      reg.timers,
      () => this.afterHostAnnounced(() => {
        if (reg.state !== 'probing') return;
        reg.setState('announcing', 'probed');
        // The host's address rides along so a browser resolves the instance from one packet.
        this.announce(
          (iface) => [...this.serviceRecords(reg), ...this.hostRecords(iface)],
          reg.timers,
          () => reg.setState('announced', 'announced'),
        );
      }),
    );
  }

  private restartRegistration(reg: Registration, reason: string): void {
    reg.clearTimers();
    reg.setState('probing', reason);
    this.startRegistration(reg);
  }

  /** Withdraws a service: goodbyes (TTL 0) for its records. */
  unregister(reg: Registration, reason = 'withdrawn'): void {
    if (reg.state === 'withdrawn') return;
    const wasPublic = reg.state === 'announced' || reg.state === 'announcing';
    reg.clearTimers();
    reg.setState('withdrawn', reason);
    if (wasPublic) {
      let records = this.serviceRecords(reg).map((o) => o.record);
      // Keep the type enumeration PTR while another live registration still has this type.
      const typeStillPublished = [...this.registrations].some(
        (r) => r !== reg && r.state !== 'withdrawn' && sameName(r.spec.type, reg.spec.type),
      );
      if (typeStillPublished) records = records.filter((r) => !sameName(r.name, SERVICES_ENUMERATION));
      for (const iface of this.transport.interfaces) this.sendGoodbyes(iface, records);
    }
    this.registrations.delete(reg);
  }

  /** Re-publishes `reg` after a withdrawal (health came back). */
  reregister(reg: Registration): void {
    if (this.registrations.has(reg) && reg.state !== 'withdrawn') return;
    reg.state = 'probing';
    reg.probeAttempt = 0;
    this.registrations.add(reg);
    this.startRegistration(reg);
  }

  private sendGoodbyes(iface: NetInterface, records: MdnsRecord[]): void {
    const bye = records.map((r) => ({ ...r, ttl: 0 }));
    this.sendResponse(iface, bye, [], undefined);
    this.stats.goodbyesSent += bye.length;
  }

  // ---- probing & announcing ---------------------------------------------------------------

  private conflictBackoff(fn: () => void): void {
    // RFC 6762 §8.1: after 15 conflicts within 10 s, wait 5 s before each new attempt.
    const now = this.clock.now();
    this.recentConflicts.push(now);
    while (this.recentConflicts.length && this.recentConflicts[0]! < now - 10_000) this.recentConflicts.shift();
    const delay = this.recentConflicts.length >= 15 ? 5000 : 0;
    if (delay) this.clock.setTimeout(fn, delay);
    else fn();
  }

  /** Three probes 250 ms apart (after 0–250 ms), then `done` 250 ms after the last. */
  private probe(name: () => string, proposed: (iface: NetInterface) => MdnsRecord[], timers: TimerHandle[], done: () => void): void {
    const step = (n: number) => {
      if (this.stopped) return;
      if (n === 3) {
        done();
        return;
      }
      for (const iface of this.transport.interfaces) {
        this.transport.send(
          {
            type: 'query',
            questions: [{ name: name(), type: 'ANY', qu: n === 0 }],
            authorities: proposed(iface).map((r) => ({ ...r, flush: false })),
          },
          iface,
        );
      }
      this.stats.probesSent++;
      timers.push(this.clock.setTimeout(() => step(n + 1), PROBE_INTERVAL));
    };
    timers.push(this.clock.setTimeout(() => step(0), this.clock.random() * PROBE_INTERVAL));
  }

  /** Unsolicited responses: immediately, then once more a second later (RFC 6762 §8.3). */
  private announce(records: (iface: NetInterface) => OwnedRecord[], timers: TimerHandle[], afterFirst?: () => void): void {
    const send = (n: number) => {
      if (this.stopped) return;
      for (const iface of this.transport.interfaces) {
        const recs = records(iface).map((o) => o.record);
        this.sendResponse(iface, recs, [], undefined);
        this.noteMulticast(iface, recs);
      }
      this.stats.announcementsSent++;
      if (n === 0) afterFirst?.();
      if (n < 1) timers.push(this.clock.setTimeout(() => send(n + 1), 1000));
    };
    send(0);
  }

  // ---- incoming ------------------------------------------------------------------------------

  handleQuery(packet: MdnsPacket, from: RemoteInfo, iface: NetInterface): void {
    if (this.stopped) return;
    this.checkProbeTiebreak(packet);
    const legacy = from.port !== this.transport.port;
    const owned = this.answerable(iface);
    if (owned.length === 0) return;

    const answers = new Map<string, OwnedRecord>();
    let anyQu = false;
    for (const q of packet.questions) {
      for (const o of owned) {
        if (!questionMatches(q, o.record)) continue;
        answers.set(recordKey(o.record), o);
        if (q.qu) anyQu = true;
      }
    }
    if (answers.size === 0) return;

    // RFC 6762 §7.1 known-answer suppression: skip what the querier already has at ≥ half TTL.
    for (const known of packet.answers) {
      const k = recordKey(known);
      const ours = answers.get(k);
      if (ours && known.ttl * 2 >= ours.record.ttl) {
        answers.delete(k);
        this.stats.answersSuppressed++;
      }
    }
    if (answers.size === 0) return;
    const list = [...answers.values()];
    const additionals = this.additionalsFor(list.map((o) => o.record), owned, answers);

    if (legacy) {
      // RFC 6762 §6.7: unicast to the querier's port, ID and questions echoed, TTL ≤ 10 s,
      // no cache-flush bits (a conventional resolver would not understand them).
      const clip = (r: MdnsRecord): MdnsRecord => ({ ...r, ttl: Math.min(r.ttl, 10), flush: false });
      this.transport.send(
        {
          id: packet.id,
          type: 'response',
          questions: packet.questions.map((q) => ({ name: q.name, type: q.type })),
          answers: list.map((o) => clip(o.record)),
          additionals: additionals.map(clip),
        },
        iface,
        { address: from.address, port: from.port },
      );
      this.stats.legacyQueriesAnswered++;
      return;
    }
    this.stats.queriesAnswered++;

    if (anyQu) {
      // RFC 6762 §5.4: QU gets a unicast answer, unless we have not multicast the record
      // within a quarter of its TTL, in which case everyone benefits from a multicast.
      const now = this.clock.now();
      const fam = from.family === 'IPv6' ? 'IPv6' : 'IPv4';
      const stale = list.some((o) => (this.lastMulticast.get(this.mcastKey(o.record, iface, fam)) ?? -Infinity) < now - (o.record.ttl * 1000) / 4);
      if (!stale) {
        this.sendResponse(iface, list.map((o) => o.record), additionals, { address: from.address, port: from.port });
        return;
      }
    }

    // RFC 6762 §6: unique answers go out at once; shared ones after 20–120 ms
    // (400–500 ms when the query was truncated) so answers from many hosts aggregate.
    const allUnique = list.every((o) => o.unique);
    const isProbe = packet.authorities.length > 0;
    const delay = allUnique ? 0 : packet.truncated ? 400 + this.clock.random() * 100 : 20 + this.clock.random() * 100;
    this.queueMulticast(iface, from.family === 'IPv6' ? 'IPv6' : 'IPv4', list.map((o) => o.record), delay, isProbe ? 250 : 1000);
  }

  handleResponse(packet: MdnsPacket, _from: RemoteInfo, iface: NetInterface): void {
    if (this.stopped) return;
    const records = [...packet.answers, ...packet.additionals];
    const ourAddrs = this.ourAddresses();
    const pend = this.pending.get(`${iface.address}/${_from.family === 'IPv6' ? 'IPv6' : 'IPv4'}`);
    // One conflict per registration per packet: a peer claiming an instance sends its SRV and its
    // TXT together, and the second must not count as a conflict during the re-probe the first
    // started (which would rename at once instead of re-probing, RFC 6762 §9).
    const conflicted = new Set<Registration>();

    for (const r of records) {
      // §7.4 duplicate answer suppression: someone else just multicast what we were about to.
      if (pend) {
        const k = recordKey(r);
        const p = pend.answers.get(k);
        if (p && r.ttl * 2 >= p.ttl) pend.answers.delete(k);
      }

      // Host name.
      if (sameName(r.name, this.hostName) && (r.type === 'A' || r.type === 'AAAA')) {
        const ours = typeof r.data === 'string' && ourAddrs.has(r.data);
        if (!ours && r.ttl > 0) {
          this.renameHost(`another host claims ${this.hostName} (${String(r.data)})`);
          return;
        }
        if (ours && r.ttl === 0 && this.hostState === 'announced') this.reannounce(iface, this.hostRecords(iface));
        continue;
      }

      // A goodbye for one of our live shared records (PTR) from elsewhere: re-announce it too.
      if (r.type === 'PTR' && r.ttl === 0) {
        const k = recordKey(r);
        for (const reg of this.registrations) {
          if (reg.state !== 'announced' && reg.state !== 'announcing') continue;
          const own = this.serviceRecords(reg).filter((o) => !o.unique && recordKey(o.record) === k);
          if (own.length) {
            this.reannounce(iface, own);
            this.stats.reannouncedAfterSpoofedGoodbye++;
            break;
          }
        }
        continue;
      }

      for (const reg of [...this.registrations]) {
        if (reg.state === 'withdrawn' || conflicted.has(reg) || !sameName(r.name, reg.fullName)) continue;
        const mine = this.serviceRecords(reg).filter((o) => o.unique && o.record.type === r.type);
        if (mine.length === 0) continue;
        const identical = mine.some((o) => recordKey(o.record) === recordKey(r));
        if (identical) {
          // RFC 6762 §10.1: a goodbye for our own live record from elsewhere is answered by
          // re-announcing it, so peers don't drop a service that is still here.
          if (r.ttl === 0 && (reg.state === 'announced' || reg.state === 'announcing')) {
            this.reannounce(iface, this.serviceRecords(reg));
            this.stats.reannouncedAfterSpoofedGoodbye++;
          }
          continue;
        }
        if (r.ttl === 0) continue; // a goodbye for someone else's version is no claim
        conflicted.add(reg);
        this.onServiceConflict(reg, `${r.type} record for ${reg.fullName} with other data`);
      }
    }
  }

  private onServiceConflict(reg: Registration, reason: string): void {
    this.stats.conflicts++;
    reg.conflicts++;
    reg.clearTimers();
    const wasPublic = reg.state === 'announced' || reg.state === 'announcing';
    if (wasPublic) {
      // RFC 6762 §9: re-probe; if the other host still claims the name we rename then.
      reg.setState('probing', `conflict after announcing: ${reason}`);
      this.conflictBackoff(() => this.startRegistration(reg));
      return;
    }
    const old = reg.instance;
    reg.instance = nextInstanceName(old);
    reg.emit('renamed', old, reg.instance, reason);
    reg.setState('probing', 'conflict');
    this.conflictBackoff(() => this.startRegistration(reg));
  }

  /** RFC 6762 §8.2 simultaneous probe tiebreaking. */
  private checkProbeTiebreak(packet: MdnsPacket): void {
    if (packet.authorities.length === 0) return;
    for (const q of packet.questions) {
      if (this.hostState === 'probing' && sameName(q.name, this.hostName)) {
        const theirs = packet.authorities.filter((r) => sameName(r.name, q.name));
        const ours = this.transport.interfaces.flatMap((i) => this.hostRecords(i).map((o) => o.record));
        // Any of our addresses equal to theirs means it is (a copy of) our own probe.
        if (theirs.some((t) => ours.some((o) => recordKey(o) === recordKey(t)))) continue;
        if (compareRecordSets(ours, theirs) < 0) {
          for (const t of this.hostTimers) t.cancel();
          this.hostTimers = [];
          this.hostTimers.push(this.clock.setTimeout(() => this.startHost(), 1000));
        }
      }
      for (const reg of this.registrations) {
        if (reg.state !== 'probing' || !sameName(q.name, reg.fullName)) continue;
        const theirs = packet.authorities.filter((r) => sameName(r.name, q.name));
        const ours = this.serviceRecords(reg).filter((o) => o.unique).map((o) => o.record);
        const c = compareRecordSets(ours, theirs);
        if (c < 0) {
          // We lost: the other host's data is later. Defer one second, then probe again.
          reg.clearTimers();
          reg.timers.push(this.clock.setTimeout(() => this.startRegistration(reg), 1000));
        }
      }
    }
  }

  /** Defends records (spoofed goodbye): at most every 250 ms per record, like probe defense. */
  private reannounce(iface: NetInterface, owned: OwnedRecord[]): void {
    const now = this.clock.now();
    const recs = owned.map((o) => o.record).filter((r) =>
      this.transport.families(iface).some((f) => now - (this.lastMulticast.get(this.mcastKey(r, iface, f)) ?? -Infinity) >= 250));
    if (recs.length === 0) {
      this.stats.rateLimited++;
      return;
    }
    this.sendResponse(iface, recs, [], undefined);
    this.noteMulticast(iface, recs);
  }

  /** RFC 6763 §12: PTR answers bring SRV, TXT and addresses; SRV answers bring addresses. */
  private additionalsFor(answers: MdnsRecord[], owned: OwnedRecord[], already: Map<string, OwnedRecord>): MdnsRecord[] {
    const want = new Map<string, MdnsRecord>();
    const add = (name: string, types: string[]) => {
      for (const o of owned) {
        if (types.includes(o.record.type) && sameName(o.record.name, name)) {
          const k = recordKey(o.record);
          if (!already.has(k)) want.set(k, o.record);
        }
      }
    };
    for (const a of answers) {
      if (a.type === 'PTR' && typeof a.data === 'string' && !sameName(a.name, SERVICES_ENUMERATION)) {
        add(a.data, ['SRV', 'TXT']);
        add(this.hostName, ['A', 'AAAA']);
      } else if (a.type === 'SRV') {
        add((a.data as SrvData).target, ['A', 'AAAA']);
      }
    }
    return [...want.values()];
  }

  // ---- sending -------------------------------------------------------------------------------

  private mcastKey(r: MdnsRecord, iface: NetInterface, family: Family): string {
    return `${recordKey(r)}@${iface.address}/${family}`;
  }

  private queueMulticast(iface: NetInterface, family: Family, records: MdnsRecord[], delay: number, minInterval: number): void {
    const now = this.clock.now();
    const pkey = `${iface.address}/${family}`;
    let p = this.pending.get(pkey);
    const fresh: MdnsRecord[] = [];
    for (const r of records) {
      const last = this.lastMulticast.get(this.mcastKey(r, iface, family));
      if (last !== undefined && now - last < minInterval) {
        this.stats.rateLimited++;
        continue;
      }
      fresh.push(r);
    }
    if (fresh.length === 0) return;
    if (!p) {
      const timer = this.clock.setTimeout(() => this.flushPending(pkey), delay);
      p = { iface, family, answers: new Map(), timer };
      this.pending.set(pkey, p);
    } else if (delay === 0) {
      p.timer.cancel();
      p.timer = this.clock.setTimeout(() => this.flushPending(pkey), 0);
    }
    for (const r of fresh) p.answers.set(recordKey(r), r);
  }

  private flushPending(pkey: string): void {
    const p = this.pending.get(pkey);
    this.pending.delete(pkey);
    if (!p || p.answers.size === 0 || this.stopped) return;
    const answers = [...p.answers.values()];
    const owned = this.answerable(p.iface);
    const already = new Map(answers.map((a) => [recordKey(a), { record: a, unique: false }]));
    this.sendResponse(p.iface, answers, this.additionalsFor(answers, owned, already), undefined, p.family);
    this.noteMulticast(p.iface, answers, p.family);
  }

  private noteMulticast(iface: NetInterface, records: MdnsRecord[], family?: Family): void {
    const now = this.clock.now();
    for (const fam of family ? [family] : this.transport.families(iface)) {
      for (const r of records) this.lastMulticast.set(this.mcastKey(r, iface, fam), now);
    }
    if (this.lastMulticast.size > 10_000) this.lastMulticast.clear();
  }

  /** Sends a response, split into packets that fit the MTU. Additionals go where they fit. */
  private sendResponse(iface: NetInterface, answers: MdnsRecord[], additionals: MdnsRecord[], dest?: { address: string; port: number }, family?: Family): void {
    let batch: MdnsRecord[] = [];
    let size = 12;
    const flush = (extra: MdnsRecord[]) => {
      if (batch.length === 0) return;
      this.transport.send({ type: 'response', answers: batch, additionals: extra }, iface, dest, family);
      batch = [];
      size = 12;
    };
    for (const r of answers) {
      const len = recordLength(r);
      if (size + len > MAX_PACKET && batch.length) flush([]);
      batch.push(r);
      size += len;
    }
    const extra: MdnsRecord[] = [];
    for (const r of additionals) {
      const len = recordLength(r);
      if (size + len > MAX_PACKET) break;
      extra.push(r);
      size += len;
    }
    flush(extra);
  }

  /** Goodbyes for everything, then silence. */
  stop(): void {
    if (this.stopped) return;
    for (const reg of [...this.registrations]) this.unregister(reg, 'shutdown');
    if (this.hostState === 'announced') {
      for (const iface of this.transport.interfaces) this.sendGoodbyes(iface, this.hostRecords(iface).map((o) => o.record));
    }
    for (const t of this.hostTimers) t.cancel();
    for (const p of this.pending.values()) p.timer.cancel();
    this.pending.clear();
    this.stopped = true;
  }
}

function questionMatches(q: MdnsQuestion, r: MdnsRecord): boolean {
  if (q.type !== 'ANY' && q.type !== r.type) return false;
  return normalizeName(q.name) === normalizeName(r.name);
}
