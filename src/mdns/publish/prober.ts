import type { Clock, TimerHandle } from '../../base/clock.js';
import type { Link } from '../link/link.js';
import { type Claim, compareRecordSets, type OwnedRecords } from './owned.js';
import type { ProbeUnit } from '../wire/packets.js';
import { type MdnsRecord, recordKey, sameName } from '../wire/records.js';
import type { MdnsPacket } from '../wire/codec.js';

export const PROBE_INTERVAL = 250;

export interface ProberHooks {
  /** `claim` was probed three times on `link` with no conflict: it is ours there. */
  done(claim: Claim, link: Link): void;
  /** Another host answered with other data for a name we are probing (RFC 6762 §8.1): rename. */
  conflict(claim: Claim, link: Link, reason: string): void;
  /** Whether an address is ours on any link (a multi-homed host's own records are no rival). */
  isOurAddress(address: string): boolean;
}

interface Session {
  /** Claims being probed here → probes sent so far. */
  entries: Map<Claim, number>;
  timer?: TimerHandle;
}

/**
 * Probing (RFC 6762 §8.1, §8.2), per link: every name being probed on a link at the same moment
 * goes into the same probe packets (one question per name, its proposed records in the authority
 * section), three rounds 250 ms apart after a random 0–250 ms; a name added while a round is on
 * its way joins the next round. Simultaneous probes are tiebroken by comparing record sets; the
 * loser waits a second and probes again.
 */
export class Prober {
  readonly stats = { probesSent: 0 };
  private readonly sessions = new Map<Link, Session>();
  /** Tiebreak losses waiting their second, by claim and link. */
  private readonly deferred = new Map<Claim, Map<Link, TimerHandle>>();
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly owned: OwnedRecords,
    private readonly hooks: ProberHooks,
  ) {}

  /** Starts (or restarts) probing `claim` on `link`. */
  probe(claim: Claim, link: Link): void {
    if (this.stopped || link.closed) return;
    this.deferred.get(claim)?.get(link)?.cancel();
    this.deferred.get(claim)?.delete(link);
    let s = this.sessions.get(link);
    if (!s) {
      s = { entries: new Map() };
      this.sessions.set(link, s);
    }
    s.entries.set(claim, 0);
    if (!s.timer) {
      const session = s;
      s.timer = this.clock.setTimeout(() => this.round(link, session), this.clock.random() * PROBE_INTERVAL);
    }
  }

  /** Stops probing `claim` (everywhere, or on one link). */
  cancel(claim: Claim, link?: Link): void {
    for (const [l, s] of this.sessions) if (!link || l === link) s.entries.delete(claim);
    const d = this.deferred.get(claim);
    if (d) {
      for (const [l, t] of d) {
        if (link && l !== link) continue;
        t.cancel();
        d.delete(l);
      }
    }
  }

  isProbing(claim: Claim, link?: Link): boolean {
    for (const [l, s] of this.sessions) if ((!link || l === link) && s.entries.has(claim)) return true;
    for (const [l] of this.deferred.get(claim) ?? []) if (!link || l === link) return true;
    return false;
  }

  /** The link went away: whatever was being probed there stops. */
  dropLink(link: Link): void {
    const s = this.sessions.get(link);
    s?.timer?.cancel();
    this.sessions.delete(link);
    for (const d of this.deferred.values()) {
      d.get(link)?.cancel();
      d.delete(link);
    }
  }

  private proposed(claim: Claim, link: Link): MdnsRecord[] {
    // The authority section carries no cache-flush bits.
    return claim.records(link).filter((o) => o.unique).map((o) => ({ ...o.record, flush: false }));
  }

  private round(link: Link, s: Session): void {
    s.timer = undefined;
    if (this.stopped || this.sessions.get(link) !== s) return;
    const finished: Claim[] = [];
    const units: ProbeUnit[] = [];
    for (const [claim, sent] of s.entries) {
      if (sent >= 3) {
        finished.push(claim);
        continue;
      }
      units.push({ question: { name: claim.name(), type: 'ANY', qu: sent === 0 }, authorities: this.proposed(claim, link) });
      s.entries.set(claim, sent + 1);
    }
    for (const c of finished) s.entries.delete(c);
    if (units.length) {
      for (const f of link.families()) link.out(f).sendProbe(units);
      this.stats.probesSent += units.length;
    }
    if (s.entries.size > 0) s.timer = this.clock.setTimeout(() => this.round(link, s), PROBE_INTERVAL);
    else this.sessions.delete(link);
    for (const c of finished) this.hooks.done(c, link);
  }

  /** A probe from another host for a name we are probing here: RFC 6762 §8.2 tiebreak. */
  onQuery(packet: MdnsPacket, link: Link): void {
    if (packet.authorities.length === 0) return;
    const s = this.sessions.get(link);
    if (!s) return;
    for (const q of packet.questions) {
      for (const claim of [...s.entries.keys()]) {
        if (!sameName(q.name, claim.name())) continue;
        const theirs = packet.authorities.filter((r) => sameName(r.name, q.name));
        if (theirs.length === 0) continue;
        const ours = this.proposed(claim, link);
        // The same set as ours (or records we sent earlier): our own probe, looped back. One
        // record in common is not enough: two hosts probing one instance name may well both
        // propose an empty TXT.
        const c = compareRecordSets(ours, theirs);
        if (c === 0 || theirs.every((t) => this.owned.isEcho(t))) continue;
        if (c > 0) continue;
        // Lost: the other host's data sorts later. Wait a second, then probe again (§8.2).
        s.entries.delete(claim);
        let d = this.deferred.get(claim);
        if (!d) this.deferred.set(claim, (d = new Map()));
        d.set(link, this.clock.setTimeout(() => {
          d!.delete(link);
          this.probe(claim, link);
        }, 1000));
      }
    }
  }

  /** A response while we probe: a record for one of our names with other data is a conflict. */
  onResponse(packet: MdnsPacket, link: Link): void {
    const s = this.sessions.get(link);
    if (!s || s.entries.size === 0) return;
    for (const r of [...packet.answers, ...packet.additionals]) {
      if (r.ttl === 0) continue; // a goodbye claims nothing
      for (const claim of [...s.entries.keys()]) {
        if (!sameName(r.name, claim.name())) continue;
        const why = this.conflictOf(claim, link, r);
        if (!why) continue;
        s.entries.delete(claim);
        this.hooks.conflict(claim, link, why);
      }
    }
  }

  private conflictOf(claim: Claim, link: Link, r: MdnsRecord): string | undefined {
    const relevant = claim.kind === 'host' ? r.type === 'A' || r.type === 'AAAA' : r.type === 'SRV' || r.type === 'TXT';
    if (!relevant) return undefined;
    if (claim.records(link).some((o) => recordKey(o.record) === recordKey(r)) || this.owned.isEcho(r)) return undefined;
    if (claim.kind === 'host') {
      if (typeof r.data === 'string' && this.hooks.isOurAddress(r.data)) return undefined;
      return `another host claims ${claim.name()} (${String(r.data)})`;
    }
    return `${r.type} record for ${claim.name()} with other data`;
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.sessions.values()) s.timer?.cancel();
    this.sessions.clear();
    for (const d of this.deferred.values()) for (const t of d.values()) t.cancel();
    this.deferred.clear();
  }
}
