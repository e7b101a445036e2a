import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../../base/clock.js';
import { type MdnsRecord, recordKey, rrsetKey, normalizeName } from '../wire/records.js';

export interface CacheEntry {
  record: MdnsRecord;
  key: string;
  rrset: string;
  /** When the record was last received (ms). */
  receivedAt: number;
  /** TTL (s) as last received; the schedule is computed from it. */
  ttl: number;
  expiresAt: number;
  /** Next refresh point index into REFRESH_POINTS; 4 = none left. */
  refreshStep: number;
  /** Set when a goodbye (TTL 0) or a cache-flush shortened its life to one second. */
  doomed: boolean;
  /** Interfaces it was received on (a link-local address is reached through them). */
  links: Set<string>;
  /** When the next refresh query is due (ms), Infinity when none is left. */
  nextRefreshAt: number;
  timer?: TimerHandle;
}

/** RFC 6762 §5.2: refresh queries at 80, 85, 90 and 95 % of TTL, plus 0–2 % random variance. */
export const REFRESH_POINTS = [0.8, 0.85, 0.9, 0.95];

export interface RecordCacheOptions {
  /** Bound on cached records; beyond it the oldest-received entry is evicted and counted. */
  maxEntries?: number;
  /**
   * Records someone relies on (those of instances a browser has up): eviction passes over them,
   * so a flood of other announcements cannot push a live service out of the cache.
   */
  isProtected?: (entry: CacheEntry) => boolean;
}

/**
 * The browser's record cache (RFC 6762 §5.2, §10.1, §10.2).
 * Events: 'added' (entry), 'doomed' (entry: a goodbye or cache-flush gave it one second to
 * live), 'expired' (entry), 'refresh' (entry) — the owner decides whether anyone is still
 * interested and sends the refresh query.
 */
export class RecordCache extends EventEmitter {
  private readonly entries = new Map<string, CacheEntry>();
  private readonly byRrset = new Map<string, Set<CacheEntry>>();
  private readonly maxEntries: number;
  evicted = 0;
  isProtected: (entry: CacheEntry) => boolean;

  constructor(private readonly clock: Clock, opts: RecordCacheOptions = {}) {
    super();
    this.maxEntries = opts.maxEntries ?? 4096;
    this.isProtected = opts.isProtected ?? (() => false);
  }

  /** The stalest entry nobody relies on (bounded scan); the stalest of all if every one is. */
  private victim(): CacheEntry | undefined {
    let first: CacheEntry | undefined;
    let scanned = 0;
    for (const e of this.entries.values()) {
      first ??= e;
      if (!this.isProtected(e)) return e;
      if (++scanned >= 256) break;
    }
    return first;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Adds or refreshes a record received in a response, on interface `link` if known. */
  add(record: MdnsRecord, link?: string): void {
    const now = this.clock.now();
    const key = recordKey(record);
    const rrset = rrsetKey(record.name, record.type);
    const ttl = Math.max(0, Math.min(record.ttl, 0x7fffffff));
    const existing = this.entries.get(key);

    if (record.flush) this.flushOthers(rrset, key, now);

    if (ttl === 0) {
      // RFC 6762 §10.1: a goodbye means "delete in one second", not "delete now".
      if (existing) {
        existing.ttl = 1;
        existing.expiresAt = now + 1000;
        existing.doomed = true;
        existing.refreshStep = REFRESH_POINTS.length;
        this.schedule(existing);
        this.emit('doomed', existing);
      }
      return;
    }

    if (existing) {
      if (link !== undefined) existing.links.add(link);
      existing.record = { ...record, name: existing.record.name };
      existing.receivedAt = now;
      existing.ttl = ttl;
      existing.expiresAt = now + ttl * 1000;
      existing.refreshStep = 0;
      const revived = existing.doomed;
      existing.doomed = false;
      // Keep insertion order = last-received order so eviction drops the stalest.
      this.entries.delete(key);
      this.entries.set(key, existing);
      this.schedule(existing);
      if (revived) this.emit('added', existing);
      return;
    }

    if (this.entries.size >= this.maxEntries) {
      const victim = this.victim();
      if (victim) {
        this.evicted++;
        this.remove(victim, true);
      }
    }
    const entry: CacheEntry = {
      record,
      key,
      rrset,
      receivedAt: now,
      ttl,
      expiresAt: now + ttl * 1000,
      refreshStep: 0,
      doomed: false,
      links: new Set(link === undefined ? [] : [link]),
      nextRefreshAt: Infinity,
    };
    this.entries.set(key, entry);
    let set = this.byRrset.get(rrset);
    if (!set) this.byRrset.set(rrset, (set = new Set()));
    set.add(entry);
    this.schedule(entry);
    this.emit('added', entry);
  }

  /** Live records for name/type ('ANY' matches every type). */
  lookup(name: string, type: string): CacheEntry[] {
    if (type === 'ANY') {
      const n = normalizeName(name) + '|';
      const out: CacheEntry[] = [];
      for (const [k, set] of this.byRrset) if (k.startsWith(n)) out.push(...set);
      return out;
    }
    return [...(this.byRrset.get(rrsetKey(name, type)) ?? [])];
  }

  /** Remaining TTL in whole seconds. */
  remainingTtl(entry: CacheEntry): number {
    return Math.max(0, Math.floor((entry.expiresAt - this.clock.now()) / 1000));
  }

  /**
   * Known answers for a query (RFC 6762 §7.1): only records with more than half their
   * TTL left, with the TTL reduced to what remains.
   */
  knownAnswers(name: string, type: string): MdnsRecord[] {
    const out: MdnsRecord[] = [];
    for (const e of this.lookup(name, type)) {
      if (e.doomed) continue;
      const left = this.remainingTtl(e);
      if (left * 2 > e.ttl) out.push({ ...e.record, ttl: left, flush: false });
    }
    return out;
  }

  /**
   * Refreshes due within `horizonMs` for records `wanted` accepts and already past their refresh
   * point (80 %, 85 % … of the TTL: only the random 2 % after it is skipped): they are counted as
   * done and returned, so the caller can ask for them in the query it is sending now (one packet
   * instead of one per record, as Avahi's query scheduler does).
   */
  takeDueRefreshes(horizonMs: number, wanted: (e: CacheEntry) => boolean): CacheEntry[] {
    const now = this.clock.now();
    const limit = now + horizonMs;
    const out: CacheEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.nextRefreshAt > limit || !wanted(e)) continue;
      // Never before the refresh point itself (80 %, 85 % …): only its random 2 % may be skipped.
      const point = e.receivedAt + e.ttl * 1000 * REFRESH_POINTS[Math.min(e.refreshStep, REFRESH_POINTS.length - 1)]!;
      if (now < point) continue;
      e.refreshStep++;
      this.schedule(e);
      out.push(e);
    }
    return out;
  }

  /**
   * An interface went away: records received only there are dropped (reported 'expired'); the
   * others just forget it.
   */
  dropLink(link: string): number {
    let dropped = 0;
    for (const e of [...this.entries.values()]) {
      if (!e.links.delete(link) || e.links.size > 0) continue;
      this.remove(e, true);
      dropped++;
    }
    return dropped;
  }

  clear(): void {
    for (const e of [...this.entries.values()]) this.remove(e, false);
  }

  private flushOthers(rrset: string, keepKey: string, now: number): void {
    // RFC 6762 §10.2: other records of the rrset received more than one second ago are
    // outdated; keep them one more second so several packets of one announcement can land.
    const set = this.byRrset.get(rrset);
    if (!set) return;
    for (const e of set) {
      if (e.key === keepKey || e.receivedAt > now - 1000 || e.doomed) continue;
      e.doomed = true;
      e.ttl = 1;
      e.expiresAt = Math.min(e.expiresAt, now + 1000);
      e.refreshStep = REFRESH_POINTS.length;
      this.schedule(e);
      this.emit('doomed', e);
    }
  }

  private schedule(e: CacheEntry): void {
    e.timer?.cancel();
    let at = e.expiresAt;
    let isRefresh = false;
    e.nextRefreshAt = Infinity;
    if (e.refreshStep < REFRESH_POINTS.length) {
      const pct = REFRESH_POINTS[e.refreshStep]! + this.clock.random() * 0.02;
      const refreshAt = e.receivedAt + e.ttl * 1000 * pct;
      if (refreshAt < at) {
        at = refreshAt;
        isRefresh = true;
        e.nextRefreshAt = refreshAt;
      }
    }
    e.timer = this.clock.setTimeout(() => {
      if (isRefresh) {
        e.refreshStep++;
        this.schedule(e);
        this.emit('refresh', e);
      } else {
        this.remove(e, true);
      }
    }, at - this.clock.now());
  }

  private remove(e: CacheEntry, emit: boolean): void {
    e.timer?.cancel();
    if (this.entries.get(e.key) !== e) return;
    this.entries.delete(e.key);
    const set = this.byRrset.get(e.rrset);
    set?.delete(e);
    if (set && set.size === 0) this.byRrset.delete(e.rrset);
    if (emit) this.emit('expired', e);
  }
}
