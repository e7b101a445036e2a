import type { Clock, TimerHandle } from '../../base/clock.js';
import type { MdnsQuestion, MdnsRecord } from '../wire/records.js';
import { recordKey } from '../wire/records.js';
import { packProbe, packQuery, packResponse, type ProbeUnit } from '../wire/packets.js';
import type { Destination } from './sockets.js';
import type { OutgoingPacket } from '../wire/codec.js';

/**
 * Why a record is multicast: an answer to a query (RFC 6762 §6), an announcement (§8.3), a
 * goodbye (§10.1), or the defence of a name against a probe or a spoofed goodbye (§6: 250 ms).
 */
export type MulticastKind = 'answer' | 'announce' | 'goodbye' | 'defend';

export interface MulticastOptions {
  kind: MulticastKind;
  /** Answers: wait this long first (20–120 ms for shared records, 0 for unique ones). */
  delayMs?: number;
  /** Announcements: when (clock ms); default now. */
  at?: number;
  /** Records that should travel with these, where there is room (§6.2, RFC 6763 §12). */
  additionals?: MdnsRecord[];
}

interface Pending {
  record: MdnsRecord;
  key: string;
  kind: MulticastKind;
  /** When it is due. */
  at: number;
  /** The earliest it may leave with a packet sent for something else (answers only). */
  notBefore: number;
  additionals: Map<string, MdnsRecord>;
}

function keyed(records: readonly MdnsRecord[] = []): Map<string, MdnsRecord> {
  return new Map(records.map((r) => [recordKey(r), r]));
}

export interface SchedulerStats {
  /** Records not multicast because they were sent less than a second (250 ms) ago. */
  rateLimited: number;
  /** Pending answers dropped because another host multicast them first (§7.4). */
  duplicateAnswersSuppressed: number;
}

/** Headers of IP (20 / 40 bytes) and UDP (8) inside a link's MTU. */
export const HEADER_BYTES = { IPv4: 28, IPv6: 48 } as const;
/** RFC 6762 §17: even on links with a larger MTU (loopback), packets stay at most 9000 bytes. */
const MAX_PAYLOAD = 9000;

/**
 * Everything one link sends on one address family goes through here. Multicast records wait in
 * one queue and leave together: whatever is due, plus answers whose delay has mostly passed,
 * in as few packets as fit the link's MTU. The one-second rule of RFC 6762 §6 is kept per record
 * (a record multicast less than a second ago is not multicast again; 250 ms for the defence of
 * a name; announcements wait until the second is over), so with many services the host's address
 * leaves once instead of once per service.
 *
 * Probes, queries and unicast replies leave at once, packed the same way.
 */
export class OutgoingScheduler {
  private pending: Pending[] = [];
  /** recordKey → last time it was multicast here. */
  private readonly last = new Map<string, number>();
  private timer?: TimerHandle;
  private timerAt = Infinity;
  private closed = false;

  constructor(
    private readonly clock: Clock,
    /** Sends a packet; `sent` runs once the kernel has it (it may be later, on a busy machine). */
    private readonly out: (packet: OutgoingPacket, dest?: Destination, sent?: () => void) => void,
    /** Largest UDP payload that fits the link's MTU. */
    private readonly maxPayload: () => number,
    readonly stats: SchedulerStats,
  ) {}

  private get limit(): number {
    return Math.min(MAX_PAYLOAD, Math.max(512, this.maxPayload()));
  }

  /** When `record` was last multicast here (clock ms), if ever. */
  lastMulticast(record: MdnsRecord): number | undefined {
    return this.last.get(recordKey(record));
  }

  /** Whether `record` was multicast here within `ms`. */
  multicastWithin(record: MdnsRecord, ms: number): boolean {
    const t = this.last.get(recordKey(record));
    return t !== undefined && this.clock.now() - t < ms;
  }

  /**
   * Queues records for multicast. Answers and defences of records multicast too recently are
   * dropped here (counted); announcements are kept and wait. Returns how many were queued.
   */
  multicast(records: readonly MdnsRecord[], opts: MulticastOptions): number {
    if (this.closed) return 0;
    const now = this.clock.now();
    const delay = Math.max(0, opts.delayMs ?? 0);
    let queued = 0;
    for (const r of records) {
      const key = recordKey(r);
      if (opts.kind === 'goodbye') {
        // A record going away: a pending announcement or answer of it is void.
        this.pending = this.pending.filter((p) => p.key !== key || p.kind === 'goodbye');
      } else {
        // A live record again: a pending goodbye for it is void.
        this.pending = this.pending.filter((p) => p.key !== key || p.kind !== 'goodbye');
        if (opts.kind !== 'announce' && this.tooSoon(key, opts.kind, now)) {
          this.stats.rateLimited++;
          continue;
        }
      }
      const at = opts.kind === 'announce' ? Math.max(now, opts.at ?? now) : now + delay;
      if (opts.kind === 'answer' || opts.kind === 'defend') {
        // Already on its way as an answer: the earlier time wins, one copy leaves.
        const same = this.pending.find((p) => p.key === key && (p.kind === 'answer' || p.kind === 'defend'));
        if (same) {
          same.at = Math.min(same.at, at);
          same.notBefore = Math.min(same.notBefore, opts.kind === 'answer' ? now + Math.min(delay, 20) : at);
          if (opts.kind === 'defend') same.kind = 'defend';
          for (const [k, a] of keyed(opts.additionals)) same.additionals.set(k, a);
          queued++;
          continue;
        }
      }
      this.pending.push({
        record: opts.kind === 'goodbye' ? { ...r, ttl: 0 } : r,
        key,
        kind: opts.kind,
        at,
        // Shared answers wait at least 20 ms (so answers from several hosts aggregate, §6),
        // then may leave early with another packet; announcements leave at their time.
        notBefore: opts.kind === 'answer' ? now + Math.min(delay, 20) : at,
        additionals: keyed(opts.additionals),
      });
      queued++;
    }
    if (queued) this.arm();
    return queued;
  }

  /**
   * Another host just multicast `record` (RFC 6762 §7.4 duplicate answer suppression): a pending
   * answer of ours with the same data is dropped, unless theirs has less than half our TTL.
   */
  heardAnswer(record: MdnsRecord): void {
    if (record.ttl === 0) return;
    const key = recordKey(record);
    const before = this.pending.length;
    this.pending = this.pending.filter((p) => !(p.key === key && p.kind === 'answer' && record.ttl * 2 >= p.record.ttl));
    this.stats.duplicateAnswersSuppressed += before - this.pending.length;
  }

  /** Drops pending answers (not announcements or goodbyes) that `keep` rejects (e.g. known answers heard late). */
  dropAnswers(reject: (r: MdnsRecord) => boolean): void {
    this.pending = this.pending.filter((p) => p.kind !== 'answer' || !reject(p.record));
  }

  private tooSoon(key: string, kind: MulticastKind, now: number): boolean {
    const t = this.last.get(key);
    return t !== undefined && now - t < (kind === 'defend' ? 250 : 1000);
  }

  private arm(): void {
    let next = Infinity;
    for (const p of this.pending) next = Math.min(next, p.at);
    if (next === Infinity) {
      this.timer?.cancel();
      this.timer = undefined;
      this.timerAt = Infinity;
      return;
    }
    if (this.timer && this.timerAt <= next) return;
    this.timer?.cancel();
    this.timerAt = next;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.flush();
    }, next - this.clock.now());
  }

  /** Sends what is due now (and answers that may ride along); re-arms for the rest. */
  flush(onlyGoodbyes = false): void {
    if (this.closed) return;
    const now = this.clock.now();
    const take = (p: Pending) => (onlyGoodbyes ? p.kind === 'goodbye' : p.at <= now || (p.kind === 'answer' && p.notBefore <= now));
    const due = this.pending.filter(take);
    if (due.length === 0) return this.arm();
    this.pending = this.pending.filter((p) => !take(p));
    const answers = new Map<string, MdnsRecord>();
    const extra = new Map<string, MdnsRecord>();
    for (const p of due) {
      const slot = p.kind === 'goodbye' ? `${p.key}|bye` : p.key;
      if (answers.has(slot)) continue;
      if (p.kind !== 'goodbye') {
        const t = this.last.get(p.key);
        const min = p.kind === 'defend' ? 250 : 1000;
        if (t !== undefined && now - t < min) {
          if (p.kind === 'announce') {
            // §6 and §8.3: the announcement waits until the second is over.
            this.pending.push({ ...p, at: t + 1000, notBefore: t + 1000 });
          } else this.stats.rateLimited++;
          continue;
        }
      }
      answers.set(slot, p.record);
      for (const [k, a] of p.additionals) extra.set(k, a);
    }
    const list = [...answers.values()];
    const live = new Set(list.filter((r) => r.ttl > 0).map((r) => recordKey(r)));
    const additionals = [...extra.entries()]
      .filter(([k]) => !live.has(k) && !this.tooSoon(k, 'answer', now))
      .map(([, r]) => r);
    if (list.length) this.sendResponse(list, additionals);
    this.arm();
  }

  private sendResponse(answers: MdnsRecord[], additionals: MdnsRecord[]): void {
    for (const p of packResponse(answers, additionals, this.limit)) {
      const keys = [...(p.answers ?? []), ...(p.additionals ?? [])].map((r) => [recordKey(r), r.ttl > 0] as const);
      const mark = () => {
        const now = this.clock.now();
        for (const [k, live] of keys) {
          if (live) this.last.set(k, now);
          else this.last.delete(k); // its return is announced at once
        }
      };
      // Marked when queued, and again when the datagram really left: the second is what the
      // one-second rule counts from on the wire, however late a busy machine sends it.
      mark();
      this.out(p, undefined, () => {
        for (const [k, live] of keys) if (live && this.last.has(k)) this.last.set(k, this.clock.now());
      });
    }
    if (this.last.size > 20_000) this.last.clear();
  }

  /** Probe queries (RFC 6762 §8.1), packed: leave now. */
  sendProbe(units: ProbeUnit[]): number {
    if (this.closed || units.length === 0) return 0;
    const packets = packProbe(units, this.limit);
    for (const p of packets) this.out(p);
    return packets.length;
  }

  /**
   * A multicast query with known answers (TC continuation when they do not fit): leaves now. ID 0
   * (RFC 6762 §18.1); `optionCode` marks it with an EDNS option (see MdnsEngine.askHostMates).
   */
  sendQuery(questions: MdnsQuestion[], known: MdnsRecord[], optionCode?: number): void {
    if (this.closed || (questions.length === 0 && known.length === 0)) return;
    for (const p of packQuery(questions, known, this.limit, optionCode)) this.out(p);
  }

  /**
   * A unicast reply (QU, legacy unicast, probe from a unicast port): leaves now. Legacy replies
   * echo `id` and `questions` (RFC 6762 §6.7).
   */
  sendUnicast(dest: Destination, answers: MdnsRecord[], additionals: MdnsRecord[], legacy?: { id: number; questions: MdnsQuestion[] }): void {
    if (this.closed || answers.length === 0) return;
    const base = legacy ? { id: legacy.id, questions: legacy.questions } : {};
    for (const p of packResponse(answers, additionals, this.limit, base)) this.out(p, dest);
  }

  /** Pending items (tests, stats). */
  get size(): number {
    return this.pending.length;
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.pending = [];
  }
}
