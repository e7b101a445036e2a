import type { Clock } from '../../base/clock.js';
import type { Link } from '../link/link.js';
import type { OwnedRecords } from './owned.js';
import { type OwnedRecord, recordKey, rrsetKey } from '../wire/records.js';

/**
 * Announcements and goodbyes (RFC 6762 §8.3, §10.1, §10.2), per link: keeps what a link has out
 * there (`announced`, kept in OwnedRecords) in line with what we own there now. Records that stopped being ours
 * get a goodbye (TTL 0); new ones are announced twice, a second apart, with the cache-flush bit
 * on unique records. A unique RRset is always announced whole, so that the cache-flush bit makes
 * peers drop only what is stale: when an address changes, the goodbye of the old one and the new
 * set leave in one packet and peers switch at once.
 */
export class Announcer {
  readonly stats = { announcementsSent: 0, goodbyesSent: 0 };

  constructor(
    private readonly clock: Clock,
    private readonly owned: OwnedRecords,
  ) {}

  /**
   * Brings `link` in line with what we own there. `once`: a single announcement (a flapping
   * link). Returns how many records were newly announced.
   */
  reconcile(link: Link, opts: { once?: boolean } = {}): number {
    const desired = new Map<string, OwnedRecord>();
    const here = this.owned.at(link);
    if (here.ready) for (const o of this.owned.live(link)) desired.set(recordKey(o.record), o);
    let fresh = 0;
    for (const family of link.families()) {
      const out = link.out(family);
      const announced = here.announcedOn(family);
      const gone = [...announced].filter(([k]) => !desired.has(k));
      const added = [...desired].filter(([k]) => !announced.has(k));
      if (gone.length) {
        out.multicast(gone.map(([, o]) => o.record), { kind: 'goodbye' });
        this.stats.goodbyesSent += gone.length;
        for (const [k] of gone) announced.delete(k);
      }
      if (added.length === 0) continue;
      const rrsets = new Set(added.filter(([, o]) => o.unique).map(([, o]) => rrsetKey(o.record.name, o.record.type)));
      const batch = new Map(added);
      for (const [k, o] of desired) if (o.unique && rrsets.has(rrsetKey(o.record.name, o.record.type))) batch.set(k, o);
      const records = [...batch.values()].map((o) => o.record);
      out.multicast(records, { kind: 'announce' });
      if (!opts.once) out.multicast(records, { kind: 'announce', at: this.clock.now() + 1000 });
      this.stats.announcementsSent += opts.once ? 1 : 2;
      this.owned.remember(records);
      for (const [k, o] of added) announced.set(k, o);
      fresh += added.length;
    }
    return fresh;
  }

  /** Forgets records as announced without a goodbye (they are being replaced under the same name). */
  forget(link: Link, which: (o: OwnedRecord) => boolean): void {
    for (const announced of this.owned.at(link).announced.values()) {
      for (const [k, o] of announced) if (which(o)) announced.delete(k);
    }
  }

  /**
   * Goodbyes for everything announced on `link` (stop), sent now — but for what `keep` says is
   * still served by someone else (no goodbye: it is forgotten as ours, nothing more).
   */
  withdrawAll(link: Link, keep: (o: OwnedRecord) => boolean = () => false): void {
    const here = this.owned.at(link);
    for (const family of link.families()) {
      const announced = here.announcedOn(family);
      const gone = [...announced.values()].filter((o) => !keep(o));
      announced.clear();
      if (gone.length === 0) continue;
      link.out(family).multicast(gone.map((o) => o.record), { kind: 'goodbye' });
      this.stats.goodbyesSent += gone.length;
    }
    link.flushGoodbyes();
  }
}
