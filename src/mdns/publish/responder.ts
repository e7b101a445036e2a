import type { RemoteInfo } from 'node:dgram';
import type { Clock, TimerHandle } from '../../base/clock.js';
import type { Family } from '../../base/host-network.js';
import type { Link } from '../link/link.js';
import type { Claim, OwnedRecords } from './owned.js';
import {
  type MdnsQuestion, type MdnsRecord, type OwnedRecord, type SrvData,
  normalizeName, recordKey, sameName, SERVICES_ENUMERATION,
} from '../wire/records.js';
import type { MdnsPacket } from '../wire/codec.js';

export interface ResponderStats {
  queriesAnswered: number;
  legacyQueriesAnswered: number;
  answersSuppressed: number;
  reannouncedAfterSpoofedGoodbye: number;
}

export interface ResponderHooks {
  /** After we announced a name, another host claims it with other data (RFC 6762 §9). */
  conflict(claim: Claim, link: Link, reason: string): void;
  /** Whether an address is ours on any link. */
  isOurAddress(address: string): boolean;
}

/** A reply held back for the known answers of a truncated query (RFC 6762 §7.2). */
interface Held {
  link: Link;
  family: Family;
  answers: Map<string, OwnedRecord>;
  probe: boolean;
  timer: TimerHandle;
}

/**
 * Answers queries for what we own on the link they arrived on (RFC 6762 §6, RFC 6763 §12):
 * multicast, QU (unicast unless the answer was not multicast within a quarter of its TTL) and
 * legacy unicast (ID and questions echoed, TTL ≤ 10 s, no cache-flush bit); known-answer
 * suppression, also across the continuation packets of a truncated query; additional records
 * (PTR → SRV, TXT, addresses; SRV → addresses; A ↔ AAAA); NSEC for a type we do not have on a
 * name we own (§6.1). Unique answers leave at once, shared ones after 20–120 ms, all through the
 * link's scheduler (which keeps the one-second rule). Watches responses for conflicts with our
 * announced names and for spoofed goodbyes of our live records, which it re-asserts.
 */
export class Responder {
  readonly stats: ResponderStats = { queriesAnswered: 0, legacyQueriesAnswered: 0, answersSuppressed: 0, reannouncedAfterSpoofedGoodbye: 0 };
  private readonly held = new Map<string, Held>();
  /** Additionals and negative answers per set of live records (rebuilt when it changes). */
  private readonly derived = new WeakMap<OwnedRecord[], Map<string, MdnsRecord[]>>();

  /** Memo of `compute` for one live record set; the set is replaced whenever what we own changes. */
  private memo(live: OwnedRecord[], key: string, compute: () => MdnsRecord[]): MdnsRecord[] {
    let m = this.derived.get(live);
    if (!m) this.derived.set(live, (m = new Map()));
    let v = m.get(key);
    if (!v) {
      if (m.size > 256) m.clear();
      m.set(key, (v = compute()));
    }
    return v;
  }
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly owned: OwnedRecords,
    private readonly hooks: ResponderHooks,
    private readonly mdnsPort: number,
  ) {}

  handleQuery(packet: MdnsPacket, from: RemoteInfo, link: Link, family: Family): void {
    if (this.stopped) return;
    const source = `${link.name}|${from.address}|${from.port}`;
    if (packet.questions.length === 0) {
      // Known answers continuing a truncated query (§7.2): they suppress what we held for it.
      const h = this.held.get(source);
      if (h) this.suppress(h.answers, packet.answers);
      return;
    }
    const live = this.owned.live(link);
    if (live.length === 0) return;
    const legacy = from.port !== this.mdnsPort;

    const answers = new Map<string, OwnedRecord>();
    let anyQu = false;
    for (const q of packet.questions) {
      let matched = false;
      for (const o of live) {
        if (!questionMatches(q, o.record)) continue;
        answers.set(recordKey(o.record), o);
        matched = true;
      }
      if (!matched && q.type !== 'ANY') {
        const nsec = this.memo(live, `nsec|${normalizeName(q.name)}`, () => {
          const n = this.negative(q.name, live);
          return n ? [n] : [];
        })[0];
        if (nsec) {
          answers.set(recordKey(nsec), { record: nsec, unique: true });
          matched = true;
        }
      }
      if (matched && q.qu) anyQu = true;
    }
    if (answers.size === 0) return;
    this.suppress(answers, packet.answers);
    if (answers.size === 0) return;
    const list = [...answers.values()];
    const records = list.map((o) => o.record);
    const additionals = this.additionalsFor(records, live);
    const out = link.out(family);

    if (legacy) {
      const clip = (r: MdnsRecord): MdnsRecord => ({ ...r, ttl: Math.min(r.ttl, 10), flush: false });
      out.sendUnicast({ address: from.address, port: from.port }, records.map(clip), additionals.map(clip), {
        id: packet.id, questions: packet.questions.map((q) => ({ name: q.name, type: q.type })),
      });
      this.stats.legacyQueriesAnswered++;
      return;
    }
    this.stats.queriesAnswered++;

    if (anyQu) {
      // §5.4: a QU question gets a unicast answer, unless the record was not multicast here
      // within a quarter of its TTL: then everyone benefits from a multicast.
      const fresh = records.every((r) => out.multicastWithin(r, (r.ttl * 1000) / 4));
      if (fresh) {
        out.sendUnicast({ address: from.address, port: from.port }, records, additionals);
        return;
      }
    }

    const probe = packet.authorities.length > 0;
    if (packet.truncated) {
      // §7.2: wait 400–500 ms for the rest of the known answers before answering.
      const prev = this.held.get(source);
      prev?.timer.cancel();
      const merged = new Map([...(prev?.answers ?? []), ...answers]);
      const h: Held = {
        link, family, answers: merged, probe,
        timer: this.clock.setTimeout(() => this.release(source), 400 + this.clock.random() * 100),
      };
      this.held.set(source, h);
      return;
    }
    // §6: unique answers at once; shared ones after 20–120 ms so answers of many hosts aggregate.
    const allUnique = list.every((o) => o.unique);
    out.multicast(records, {
      kind: probe ? 'defend' : 'answer',
      delayMs: allUnique ? 0 : 20 + this.clock.random() * 100,
      additionals,
    });
  }

  private release(source: string): void {
    const h = this.held.get(source);
    this.held.delete(source);
    if (!h || h.answers.size === 0 || this.stopped || h.link.closed) return;
    const records = [...h.answers.values()].map((o) => o.record);
    h.link.out(h.family).multicast(records, {
      kind: h.probe ? 'defend' : 'answer',
      additionals: this.additionalsFor(records, this.owned.live(h.link)),
    });
  }

  /** §7.1 known-answer suppression: drop what the querier already has with at least half our TTL. */
  private suppress(answers: Map<string, OwnedRecord>, known: readonly MdnsRecord[]): void {
    for (const k of known) {
      const key = recordKey(k);
      const ours = answers.get(key);
      if (ours && k.ttl * 2 >= ours.record.ttl) {
        answers.delete(key);
        this.stats.answersSuppressed++;
      }
    }
  }

  /**
   * §6.1: for a name we own uniquely (our host name, a service instance), a question for a type
   * we do not have is answered with an NSEC listing the types we do have.
   */
  private negative(name: string, live: OwnedRecord[]): MdnsRecord | undefined {
    const mine = live.filter((o) => o.unique && sameName(o.record.name, name));
    if (mine.length === 0) return undefined;
    return nsecOf(mine[0]!.record.name, mine.map((o) => o.record));
  }

  /**
   * Additional records (§6.2, RFC 6763 §12): PTR → SRV, TXT and the target's addresses;
   * SRV → addresses; A ↔ AAAA (or an NSEC saying the other type does not exist). Nothing the
   * answer section holds already.
   */
  private additionalsFor(answers: MdnsRecord[], live: OwnedRecord[]): MdnsRecord[] {
    return this.memo(live, answers.map((r) => recordKey(r)).join('\n'), () => this.computeAdditionals(answers, live));
  }

  private computeAdditionals(answers: MdnsRecord[], live: OwnedRecord[]): MdnsRecord[] {
    const inAnswers = new Set(answers.map((r) => recordKey(r)));
    const want = new Map<string, MdnsRecord>();
    const addNamed = (name: string, types: string[]) => {
      for (const o of live) {
        if (types.includes(o.record.type) && sameName(o.record.name, name)) {
          const k = recordKey(o.record);
          if (!inAnswers.has(k)) want.set(k, o.record);
        }
      }
    };
    const addresses = (host: string) => {
      addNamed(host, ['A', 'AAAA']);
      const types = live.filter((o) => sameName(o.record.name, host) && (o.record.type === 'A' || o.record.type === 'AAAA'));
      const has = new Set(types.map((o) => o.record.type));
      if (types.length && has.size === 1) {
        const nsec = nsecOf(types[0]!.record.name, types.map((o) => o.record));
        want.set(recordKey(nsec), nsec);
      }
    };
    for (const a of answers) {
      if (a.type === 'PTR' && typeof a.data === 'string' && !sameName(a.name, SERVICES_ENUMERATION)) {
        addNamed(a.data, ['SRV', 'TXT']);
        for (const o of live) {
          if (o.record.type === 'SRV' && sameName(o.record.name, a.data)) addresses((o.record.data as SrvData).target);
        }
      } else if (a.type === 'SRV') {
        addresses((a.data as SrvData).target);
      } else if (a.type === 'A' || a.type === 'AAAA') {
        addresses(a.name);
      }
    }
    return [...want.values()];
  }

  handleResponse(packet: MdnsPacket, _from: RemoteInfo, link: Link, family: Family): void {
    if (this.stopped) return;
    const out = link.out(family);
    const live = this.owned.live(link);
    const liveKeys = new Map(live.map((o) => [recordKey(o.record), o]));
    for (const r of [...packet.answers, ...packet.additionals]) {
      // §7.4 duplicate answer suppression: someone just multicast what we were about to.
      out.heardAnswer(r);
      const key = recordKey(r);
      const claim = this.owned.claimNamed(r.name);
      if (r.ttl === 0) {
        // A goodbye for a record of ours that is live here: another host (or a spoofer) speaks
        // for us. Re-assert it, so peers don't drop what is still here (§10.1).
        const own = liveKeys.get(key);
        if (own) this.defend(link, family, claim && claim.kind === 'service' ? claimRecords(claim, live) : [own.record]);
        continue;
      }
      if (!claim || !this.owned.at(link).established.has(claim)) continue;
      if (liveKeys.has(key) || this.owned.isEcho(r)) continue;
      if (claim.kind === 'host') {
        if ((r.type === 'A' || r.type === 'AAAA') && !(typeof r.data === 'string' && this.hooks.isOurAddress(r.data))) {
          this.hooks.conflict(claim, link, `another host claims ${claim.name()} (${String(r.data)})`);
        }
      } else if (r.type === 'SRV' || r.type === 'TXT') {
        this.hooks.conflict(claim, link, `${r.type} record for ${claim.name()} with other data`);
      }
    }
  }

  /** Re-asserts records (at most every 250 ms each, as the defence against a probe). */
  private defend(link: Link, family: Family, records: MdnsRecord[]): void {
    if (link.out(family).multicast(records, { kind: 'defend' }) > 0) this.stats.reannouncedAfterSpoofedGoodbye++;
  }

  stop(): void {
    this.stopped = true;
    for (const h of this.held.values()) h.timer.cancel();
    this.held.clear();
  }
}

function claimRecords(claim: Claim, live: OwnedRecord[]): MdnsRecord[] {
  const name = claim.name();
  return live
    .filter((o) => sameName(o.record.name, name) || (o.record.type === 'PTR' && typeof o.record.data === 'string' && sameName(o.record.data, name)))
    .map((o) => o.record);
}

/** The NSEC record of RFC 6762 §6.1: next domain = the name itself, the types it has. */
export function nsecOf(name: string, records: MdnsRecord[]): MdnsRecord {
  const types = [...new Set(records.map((r) => r.type))].sort();
  const ttl = Math.min(...records.map((r) => r.ttl));
  return { name, type: 'NSEC', ttl, flush: true, data: { nextDomain: name, rrtypes: types } };
}

function questionMatches(q: MdnsQuestion, r: MdnsRecord): boolean {
  if (q.type !== 'ANY' && q.type !== r.type) return false;
  return normalizeName(q.name) === normalizeName(r.name);
}
