import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../../base/clock.js';
import type { CacheEntry, RecordCache } from './cache.js';
import { isLinkLocal6, orderAddresses } from '../../base/address.js';
import {
  type MdnsQuestion, type MdnsRecord, type SrvData, decodeTxt, instanceLabel, normalizeName, recordKey, sameName, SERVICES_ENUMERATION,
} from '../wire/records.js';

/** A resolved service instance, as browsers report it. */
export interface ServiceInstance {
  /** `My Redis._redis._tcp.local` */
  fullName: string;
  /** `My Redis` */
  instance: string;
  /** `_redis._tcp.local` */
  type: string;
  /** SRV target, e.g. `db1.local` */
  host: string;
  /** Likeliest to work first (IPv4 before IPv6); IPv6 link-local ones carry their zone (`fe80::1%eth0`). */
  addresses: string[];
  port: number;
  priority: number;
  weight: number;
  txt: Record<string, string>;
  /** Epoch ms at which the SRV record expires unless refreshed. */
  expiresAt: number;
  /** A goodbye was heard: the instance goes away within a second unless its owner revokes it. */
  leaving: boolean;
}

/** Sends queries for the browser; the engine implements it (with known answers). */
export interface QuerySender {
  /**
   * `urgent` queries leave at once; others wait up to ~100 ms so that questions due together
   * share one packet.
   */
  query(questions: MdnsQuestion[], knownAnswersFor?: Array<{ name: string; type: string }>, urgent?: boolean): void;
}

const MAX_INTERVAL = 60 * 60 * 1000; // RFC 6762 §5.2: back-off caps at 60 minutes

/**
 * An instance whose host has only IPv6 addresses so far is reported after this long, unless an
 * IPv4 address arrives first: a dual-stack host's A record usually travels in the IPv4 packet of
 * the same announcement, a few milliseconds behind (the resolution delay of Happy Eyeballs).
 */
export const IPV4_GRACE_MS = 250;

/** The addresses a cache entry stands for: a link-local IPv6 one once per interface it came in on. */
function addressesOf(e: CacheEntry): string[] {
  const a = String(e.record.data);
  if (e.record.type !== 'AAAA' || !isLinkLocal6(a) || e.links.size === 0) return [a];
  return [...e.links].map((l) => `${a}%${l}`);
}

/**
 * Continuous querying for one service type and resolution of its instances
 * (PTR → SRV/TXT → A). Events: 'up', 'update', 'down' (instance, reason on down).
 */
export class ServiceBrowser extends EventEmitter {
  readonly type: string;
  private interval = 1000;
  private timer?: TimerHandle;
  private nextTickAt = Infinity;
  private lastGap = 0;
  private readonly resolveTimers = new Map<string, TimerHandle>();
  private readonly resolveWant = new Map<string, string>();
  /** Instances waiting IPV4_GRACE_MS for an IPv4 address (timer), or done waiting (undefined). */
  private readonly v4Grace = new Map<string, TimerHandle | undefined>();
  private readonly known = new Map<string, { snapshot: string; instance: ServiceInstance }>();
  private stopped = false;
  private readonly onCacheChange = (e: CacheEntry) => this.onRecord(e);
  private readonly dirty = new Set<string>();
  private flushQueued = false;
  private readonly onRefresh = (e: CacheEntry) => this.onRefreshDue(e);

  constructor(
    type: string,
    private readonly cache: RecordCache,
    private readonly clock: Clock,
    private readonly sender: QuerySender,
    /** false: only keep the PTR query going (type enumeration), resolve nothing. */
    private readonly resolveInstances = true,
  ) {
    super();
    this.type = normalizeName(type);
  }

  start(): void {
    this.cache.on('added', this.onCacheChange);
    this.cache.on('doomed', this.onCacheChange);
    this.cache.on('expired', this.onCacheChange);
    this.cache.on('refresh', this.onRefresh);
    // Whatever is cached already counts.
    for (const e of this.cache.lookup(this.type, 'PTR')) this.reevaluate(String(e.record.data));
    // RFC 6762 §5.2: first query after 20–120 ms, then 1 s, 2 s, 4 s … up to 60 min.
    this.timer = this.clock.setTimeout(() => this.tick(), 20 + this.clock.random() * 100);
  }

  /** Whether `r` is one of the records an instance this browser has up is made of. */
  relies(r: MdnsRecord): boolean {
    if (this.known.size === 0) return false;
    if (r.type === 'PTR') return sameName(r.name, this.type) && this.known.has(normalizeName(String(r.data)));
    if (r.type === 'SRV' || r.type === 'TXT') return this.known.has(normalizeName(r.name));
    if (r.type === 'A' || r.type === 'AAAA') {
      for (const k of this.known.values()) if (sameName(k.instance.host, r.name)) return true;
    }
    return false;
  }

  /** Instances currently up. */
  instances(): ServiceInstance[] {
    return [...this.known.values()].map((k) => k.instance);
  }

  /** Sends a fresh query now and restarts the back-off (e.g. after a network change). */
  reset(): void {
    this.interval = 1000;
    this.timer?.cancel();
    this.tick();
  }

  private tick(): void {
    if (this.stopped) return;
    const first = this.lastGap === 0;
    // RFC 6762 §5.4: the first query asks for unicast replies (QU): a responder that announced
    // less than a second ago may not multicast again, but it may answer us directly.
    this.sender.query([{ ...this.question(), ...(first ? { qu: true } : {}) }], [this.question()], first);
    this.scheduleNext();
  }

  private question(): MdnsQuestion {
    return { name: this.type, type: 'PTR' };
  }

  private scheduleNext(): void {
    this.timer?.cancel();
    this.timer = this.clock.setTimeout(() => this.tick(), this.interval);
    this.nextTickAt = this.clock.now() + this.interval;
    this.lastGap = this.interval;
    this.interval = Math.min(this.interval * 2, MAX_INTERVAL);
  }

  private dueSoon(): boolean {
    if (this.stopped || this.lastGap === 0) return false;
    return this.nextTickAt - this.clock.now() <= Math.max(1000, this.lastGap / 5);
  }

  /**
   * Another query is leaving now: if ours is due soon (within a fifth of its gap, at least 1 s),
   * ride along and count it as sent, so browsers of one host share packets.
   */
  pullForward(): MdnsQuestion | undefined {
    if (!this.dueSoon()) return undefined;
    this.scheduleNext();
    return this.question();
  }

  /**
   * RFC 6762 §7.3 duplicate question suppression: another host just asked our question (QM),
   * and its known answers are all ones we would list too — so every answer we lack will come
   * anyway. If ours was about to leave, count it as sent.
   */
  heardQuestion(q: MdnsQuestion, theirKnownAnswers: MdnsRecord[]): boolean {
    if (q.qu || q.type !== 'PTR' || !sameName(q.name, this.type) || !this.dueSoon()) return false;
    const ours = new Set(this.cache.knownAnswers(this.type, 'PTR').map((r) => recordKey(r)));
    const theirs = theirKnownAnswers.filter((r) => r.type === 'PTR' && sameName(r.name, this.type));
    if (!theirs.every((r) => ours.has(recordKey(r)))) return false;
    this.scheduleNext();
    return true;
  }

  private isOurs(fullName: string): boolean {
    const n = normalizeName(fullName);
    return n.endsWith('.' + this.type);
  }

  private onRecord(e: CacheEntry): void {
    const r = e.record;
    if (r.type === 'PTR' && sameName(r.name, this.type)) {
      this.reevaluate(String(r.data));
      return;
    }
    if ((r.type === 'SRV' || r.type === 'TXT') && this.isOurs(r.name)) {
      this.reevaluate(r.name);
      return;
    }
    if (r.type === 'A' || r.type === 'AAAA') {
      for (const [name, k] of this.known) if (sameName(k.instance.host, r.name)) this.reevaluate(name);
      // Instances waiting for an address:
      for (const name of this.resolveTimers.keys()) this.reevaluate(name);
      for (const name of this.v4Grace.keys()) this.reevaluate(name);
    }
  }

  /** RFC 6762 §5.2: refresh only what someone is still interested in. */
  interestedIn(r: MdnsRecord): boolean {
    if (this.stopped) return false;
    return (r.type === 'PTR' && sameName(r.name, this.type)) ||
      ((r.type === 'SRV' || r.type === 'TXT') && this.isOurs(r.name)) ||
      ((r.type === 'A' || r.type === 'AAAA') && [...this.known.values()].some((k) => sameName(k.instance.host, r.name)));
  }

  private onRefreshDue(e: CacheEntry): void {
    const r = e.record;
    if (this.interestedIn(r)) this.sender.query([{ name: r.name, type: r.type }], [{ name: r.name, type: r.type }]);
  }

  private live(name: string, type: string): CacheEntry[] {
    return this.cache.lookup(name, type).filter((e) => !e.doomed);
  }

  /**
   * Marks an instance for re-resolution. Evaluation waits for the current packet to be fully
   * cached (a microtask), so PTR, SRV, TXT and A of one announcement yield one 'up', not an
   * 'up' followed by 'update's.
   */
  private reevaluate(fullName: string): void {
    if (this.stopped || !this.resolveInstances) return;
    this.dirty.add(fullName);
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      const names = [...this.dirty];
      this.dirty.clear();
      for (const n of names) this.evaluate(n);
    });
  }

  /**
   * Recomputes one instance from the cache and emits up/update/down as needed. A goodbye does
   * not drop an instance at once: it is reported `leaving` (peers stop opening connections to it)
   * for the second the record still lives (RFC 6762 §10.1), so that an owner answering a spoofed
   * goodbye keeps its clients; it is dropped when the record expires.
   */
  private evaluate(fullName: string): void {
    if (this.stopped) return;
    const key = normalizeName(fullName);
    const ptrs = this.cache.lookup(this.type, 'PTR').filter((e) => sameName(String(e.record.data), fullName));
    const ptrLive = ptrs.some((e) => !e.doomed);
    const srvs = this.cache.lookup(fullName, 'SRV');
    const srvEntry = srvs.find((e) => !e.doomed) ?? srvs[0];
    const prev = this.known.get(key);

    if (ptrs.length === 0 || (!ptrLive && !prev)) {
      this.cancelResolve(key);
      if (prev) this.drop(key, prev.instance, 'PTR expired');
      return;
    }
    if (!srvEntry) {
      if (prev) this.drop(key, prev.instance, 'SRV expired');
      this.scheduleResolve(key, fullName, [{ name: fullName, type: 'SRV' }, { name: fullName, type: 'TXT' }]);
      return;
    }
    const srv = srvEntry.record.data as SrvData;
    const addrEntries = [...this.cache.lookup(srv.target, 'A'), ...this.cache.lookup(srv.target, 'AAAA')];
    const liveAddrs = addrEntries.filter((e) => !e.doomed);
    const addresses = orderAddresses((liveAddrs.length ? liveAddrs : addrEntries).flatMap(addressesOf));
    if (addresses.length === 0) {
      if (prev) this.drop(key, prev.instance, 'address records expired');
      this.scheduleResolve(key, fullName, [{ name: srv.target, type: 'A' }]);
      return;
    }
    this.cancelResolve(key);
    const leaving = !ptrLive || srvEntry.doomed || liveAddrs.length === 0;
    if (leaving && !prev) return; // a goodbye for something we never had up
    if (!prev && !addresses.some((a) => !a.includes(':'))) {
      // Only IPv6 so far: give the IPv4 address a moment (and ask for it), so a dual-stack peer
      // is not first reported with the address less likely to work.
      if (!this.v4Grace.has(key)) {
        this.v4Grace.set(key, this.clock.setTimeout(() => {
          this.v4Grace.set(key, undefined);
          this.reevaluate(fullName);
        }, IPV4_GRACE_MS));
        this.sender.query([{ name: srv.target, type: 'A' }], [], true);
        return;
      }
      if (this.v4Grace.get(key) !== undefined) return;
    }
    this.v4Grace.get(key)?.cancel();
    this.v4Grace.delete(key);
    const txtEntries = this.cache.lookup(fullName, 'TXT');
    const txtEntry = txtEntries.find((e) => !e.doomed) ?? txtEntries[0];
    const instance: ServiceInstance = {
      fullName: srvEntry.record.name,
      instance: instanceLabel(srvEntry.record.name, this.type),
      type: this.type,
      host: srv.target,
      addresses,
      port: srv.port,
      priority: srv.priority,
      weight: srv.weight,
      txt: txtEntry ? decodeTxt(txtEntry.record.data) : {},
      expiresAt: srvEntry.expiresAt,
      leaving,
    };
    const snapshot = JSON.stringify([instance.host, addresses, instance.port, instance.priority, instance.weight, instance.txt, leaving]);
    if (!prev) {
      this.known.set(key, { snapshot, instance });
      this.emit('up', instance);
    } else {
      prev.instance = instance; // keeps expiresAt fresh
      if (prev.snapshot !== snapshot) {
        prev.snapshot = snapshot;
        this.emit('update', instance);
      }
    }
  }

  private drop(key: string, instance: ServiceInstance, reason: string): void {
    this.known.delete(key);
    this.v4Grace.get(key)?.cancel();
    this.v4Grace.delete(key);
    this.emit('down', instance, reason);
  }

  /**
   * Asks for what an instance is missing (SRV/TXT, or the target's address), at once-ish and
   * then with growing gaps, at most 4 times. A new need (SRV arrived, now the A is missing)
   * replaces the old schedule.
   */
  private scheduleResolve(key: string, fullName: string, questions: MdnsQuestion[]): void {
    const want = JSON.stringify(questions);
    const pending = this.resolveTimers.get(key);
    if (pending && this.resolveWant.get(key) === want) return;
    pending?.cancel();
    this.resolveWant.set(key, want);
    let attempts = 0;
    const ask = () => {
      if (this.stopped || this.known.has(key)) return this.cancelResolve(key);
      const ptrLive = this.live(this.type, 'PTR').some((e) => sameName(String(e.record.data), fullName));
      if (!ptrLive || attempts++ >= 4) return this.cancelResolve(key);
      this.sender.query(questions, [], true);
      this.resolveTimers.set(key, this.clock.setTimeout(ask, 1000 * attempts));
    };
    // Many announcements carry everything in one packet: give additionals a moment to land.
    this.resolveTimers.set(key, this.clock.setTimeout(ask, 50));
  }

  private cancelResolve(key: string): void {
    this.resolveTimers.get(key)?.cancel();
    this.resolveTimers.delete(key);
    this.resolveWant.delete(key);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.nextTickAt = Infinity;
    for (const t of this.resolveTimers.values()) t.cancel();
    this.resolveTimers.clear();
    for (const t of this.v4Grace.values()) t?.cancel();
    this.v4Grace.clear();
    this.cache.off('added', this.onCacheChange);
    this.cache.off('doomed', this.onCacheChange);
    this.cache.off('expired', this.onCacheChange);
    this.cache.off('refresh', this.onRefresh);
  }
}

/**
 * Enumerates service types (RFC 6763 §9). Events: 'type' (type), 'type-gone' (type).
 */
export class TypeBrowser extends EventEmitter {
  private readonly inner: ServiceBrowser;
  private readonly types = new Set<string>();
  private readonly onAdded = (e: CacheEntry) => {
    if (e.record.type === 'PTR' && sameName(e.record.name, SERVICES_ENUMERATION)) {
      const t = normalizeName(String(e.record.data));
      if (!this.types.has(t)) {
        this.types.add(t);
        this.emit('type', t);
      }
    }
  };

  constructor(private readonly cache: RecordCache, clock: Clock, sender: QuerySender) {
    super();
    this.inner = new ServiceBrowser(SERVICES_ENUMERATION, cache, clock, sender, false);
  }

  start(): void {
    this.cache.on('added', this.onAdded);
    for (const e of this.cache.lookup(SERVICES_ENUMERATION, 'PTR')) this.onAdded(e);
    this.inner.start();
  }

  pullForward(): MdnsQuestion | undefined {
    return this.inner.pullForward();
  }

  reset(): void {
    this.inner.reset();
  }

  heardQuestion(q: MdnsQuestion, theirKnownAnswers: MdnsRecord[]): boolean {
    return this.inner.heardQuestion(q, theirKnownAnswers);
  }

  interestedIn(r: MdnsRecord): boolean {
    return this.inner.interestedIn(r);
  }

  stop(): void {
    this.cache.off('added', this.onAdded);
    this.inner.stop();
  }
}
