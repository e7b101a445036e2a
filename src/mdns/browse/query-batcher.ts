import type { Clock, TimerHandle } from '../../base/clock.js';
import { type MdnsQuestion, type MdnsRecord, rrsetKey } from '../wire/records.js';
import type { QuerySender, ServiceBrowser, TypeBrowser } from './browser.js';
import type { CacheEntry, RecordCache } from './cache.js';

/** How long a query that is not urgent waits for others to share its packet (ms). */
const BATCH_MS = 100;
/** Cache refreshes due within this long ride along with a batch that leaves anyway (ms). */
const REFRESH_AHEAD_MS = 2500;

export interface QueryBatcherOptions {
  clock: Clock;
  cache: RecordCache;
  /** The browsers whose continuous queries may ride along. */
  browsers: ReadonlySet<ServiceBrowser | TypeBrowser>;
  /** Whether queries may leave now (the engine is running); a batch due while not is dropped. */
  active: () => boolean;
  /** Sends one query on every link (with known answers; what does not fit continues with TC). */
  send: (questions: MdnsQuestion[], known: MdnsRecord[]) => void;
}

/**
 * The browsers' queries, batched. Urgent ones (a browser's first, resolution of a new instance)
 * leave at once; the others wait up to 100 ms, and when the batch leaves, every browser query
 * and cache refresh due soon rides along: one packet per link where a naive engine sends one per
 * question (this is how Avahi keeps its idle traffic low).
 */
export class QueryBatcher implements QuerySender {
  private batch?: { questions: Map<string, MdnsQuestion>; known: Map<string, { name: string; type: string }>; timer: TimerHandle };

  constructor(private readonly opts: QueryBatcherOptions) {}

  query(questions: MdnsQuestion[], knownAnswersFor: Array<{ name: string; type: string }> = [], urgent = false): void {
    let b = this.batch;
    if (!b) {
      b = { questions: new Map(), known: new Map(), timer: this.opts.clock.setTimeout(() => this.flush(), urgent ? 0 : BATCH_MS) };
      this.batch = b;
    } else if (urgent) {
      b.timer.cancel();
      b.timer = this.opts.clock.setTimeout(() => this.flush(), 0);
    }
    for (const q of questions) b.questions.set(`${rrsetKey(q.name, q.type)}|${q.qu ? 1 : 0}`, q);
    for (const k of knownAnswersFor) b.known.set(rrsetKey(k.name, k.type), k);
  }

  /** Drops the pending batch (the engine stops). */
  cancel(): void {
    this.batch?.timer.cancel();
    this.batch = undefined;
  }

  private flush(): void {
    const b = this.batch;
    this.batch = undefined;
    if (!b || !this.opts.active()) return;
    const { browsers, cache } = this.opts;
    const add = (q: MdnsQuestion) => {
      b.questions.set(`${rrsetKey(q.name, q.type)}|0`, q);
      b.known.set(rrsetKey(q.name, q.type), q);
    };
    for (const br of browsers) {
      const q = br.pullForward();
      if (q) add(q);
    }
    const wanted = (e: CacheEntry) => [...browsers].some((br) => br.interestedIn(e.record));
    for (const e of cache.takeDueRefreshes(REFRESH_AHEAD_MS, wanted)) add({ name: e.record.name, type: e.record.type });
    // Known answers from the cache (RFC 6762 §7.1).
    const known: MdnsRecord[] = [];
    for (const k of b.known.values()) known.push(...cache.knownAnswers(k.name, k.type));
    this.opts.send([...b.questions.values()], known);
  }
}
