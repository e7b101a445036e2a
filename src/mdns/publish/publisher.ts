import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../../base/clock.js';
import type { Announcer } from './announcer.js';
import type { Link } from '../link/link.js';
import type { Links } from '../link/links.js';
import {
  type Claim, type OwnedRecords, Registration, type ServiceSpec, type TtlConfig, nextHostName, nextInstanceName,
} from './owned.js';
import type { Prober } from './prober.js';
import type { OwnedRecord } from '../wire/records.js';

/** How long a link that came up settles before we probe on it (mDNSResponder waits 0.5 s too). */
export const LINK_SETTLE_MS = 500;
/** A link that came up this often within FLAP_WINDOW_MS is flapping: longer pause, one announcement. */
export const FLAP_COUNT = 3;
export const FLAP_WINDOW_MS = 30_000;
export const FLAP_SETTLE_MS = 5000;

/**
 * The life of what we publish, on every link: a name is probed on a link before it is used
 * there, then announced; a new link (or one back up after a settling pause) gets its own probe
 * and announcement; address changes are announced at once; a real conflict renames (RFC 6762
 * §9), with the 15-conflicts-in-10-s hold-off of §8.1. Probing, announcing and answering are the
 * Prober's, the Announcer's and the Responder's; this only decides when.
 *
 * Events: 'host-renamed' (old, new, reason), 'link-ready' (link, atStart).
 */
export class Publisher extends EventEmitter {
  readonly stats = { conflicts: 0 };
  private readonly recentConflicts: number[] = [];
  private readonly ups = new Map<string, number[]>();
  private readonly settling = new Map<Link, TimerHandle>();
  private readonly flapping = new WeakSet<Link>();
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly links: Links,
    private readonly owned: OwnedRecords,
    private readonly prober: Prober,
    private readonly announcer: Announcer,
    private readonly ttl: TtlConfig,
  ) {
    super();
  }

  private readyLinks(): Link[] {
    return this.links.all().filter((l) => this.owned.at(l).ready && !l.closed);
  }

  // ---- links ---------------------------------------------------------------------------------

  /**
   * A link appeared. At start-up it is usable at once; later (a link coming up, a new interface)
   * it settles first, so echoes of our own earlier packets are not taken for a rival, and a
   * flapping link is damped.
   */
  linkAdded(link: Link, atStart: boolean): void {
    const now = this.clock.now();
    const ups = (this.ups.get(link.name) ?? []).filter((t) => t > now - FLAP_WINDOW_MS);
    ups.push(now);
    this.ups.set(link.name, ups);
    if (atStart) return this.linkReady(link, true);
    const flapping = ups.length >= FLAP_COUNT;
    if (flapping) this.flapping.add(link);
    this.settling.set(link, this.clock.setTimeout(() => {
      this.settling.delete(link);
      this.linkReady(link, false);
    }, flapping ? FLAP_SETTLE_MS : LINK_SETTLE_MS));
  }

  private linkReady(link: Link, atStart: boolean): void {
    if (this.stopped || link.closed) return;
    this.owned.at(link).ready = true;
    for (const c of this.owned.claims()) this.prober.probe(c, link);
    this.emit('link-ready', link, atStart);
  }

  /** The link's addresses changed: announce the new address records now (the name is ours here already). */
  linkChanged(link: Link): void {
    const here = this.owned.at(link);
    // A family whose socket went: what was announced on it is gone with it.
    for (const f of [...here.announced.keys()]) if (!link.families().includes(f)) here.announced.delete(f);
    if (!this.stopped && here.ready) this.announce(link);
  }

  linkRemoved(link: Link): void {
    this.settling.get(link)?.cancel();
    this.settling.delete(link);
    this.prober.dropLink(link);
  }

  // ---- what we publish -----------------------------------------------------------------------

  /** Claims the host name (once: when the first service is published). */
  startHost(): void {
    if (this.owned.host.active) return;
    this.owned.host.active = true;
    this.owned.touch();
    for (const l of this.readyLinks()) this.prober.probe(this.owned.host, l);
  }

  register(spec: ServiceSpec): Registration {
    const reg = new Registration(spec, this.owned.host, this.ttl);
    this.owned.registrations.add(reg);
    this.owned.touch();
    this.startHost();
    this.probeEverywhere(reg, 'starting');
    return reg;
  }

  private probeEverywhere(reg: Registration, reason: string): void {
    const ready = this.readyLinks();
    reg.setState('probing', ready.length ? reason : 'waiting for a network interface');
    for (const l of ready) this.prober.probe(reg, l);
  }

  /** Withdraws a service: goodbyes for its records wherever they were announced. */
  unregister(reg: Registration, reason = 'withdrawn'): void {
    if (reg.state === 'withdrawn') return;
    reg.retry?.cancel();
    reg.setState('withdrawn', reason);
    this.prober.cancel(reg);
    for (const l of this.links.all()) this.owned.at(l).established.delete(reg);
    this.owned.touch();
    for (const l of this.links.all()) this.announcer.reconcile(l);
    this.owned.registrations.delete(reg);
    this.owned.touch();
  }

  /** Publishes `reg` again after a withdrawal (its target is back). */
  reregister(reg: Registration): void {
    if (this.owned.registrations.has(reg) && reg.state !== 'withdrawn') return;
    reg.state = 'probing';
    this.owned.registrations.add(reg);
    this.owned.touch();
    this.startHost();
    this.probeEverywhere(reg, 'starting');
  }

  /** A claim passed probing on `link`. */
  probed(claim: Claim, link: Link): void {
    if (this.stopped || link.closed) return;
    this.owned.at(link).established.add(claim);
    this.owned.touch();
    this.announce(link);
  }

  private announce(link: Link): void {
    this.announcer.reconcile(link, { once: this.flapping.has(link) });
    const { established } = this.owned.at(link);
    if (!established.has(this.owned.host)) return;
    for (const reg of this.owned.registrations) {
      if (reg.state === 'probing' && established.has(reg) && !this.prober.isProbing(reg)) reg.setState('announced', 'announced');
    }
  }

  // ---- conflicts -----------------------------------------------------------------------------

  /**
   * Another host claims one of our names. While probing: the name is theirs, rename. After
   * announcing (§9): probe again under the same name, still answering meanwhile; if the other
   * host is really there it answers our probe and we rename then.
   */
  conflict(claim: Claim, link: Link, reason: string, whileProbing: boolean): void {
    if (this.stopped) return;
    this.stats.conflicts++;
    if (!whileProbing) {
      if (this.prober.isProbing(claim)) return;
      if (claim instanceof Registration) {
        claim.conflicts++;
        claim.setState('probing', `conflict after announcing: ${reason}`);
      }
      this.backoff(() => {
        for (const l of this.readyLinks()) if (this.owned.at(l).established.has(claim)) this.prober.probe(claim, l);
      }, claim instanceof Registration ? claim : undefined);
      return;
    }
    if (claim instanceof Registration) return this.renameService(claim, reason);
    this.renameHost(reason);
  }

  private renameService(reg: Registration, reason: string): void {
    reg.conflicts++;
    this.prober.cancel(reg);
    const had = this.links.all().filter((l) => this.owned.at(l).established.delete(reg));
    this.owned.touch();
    for (const l of had) this.announcer.reconcile(l); // goodbyes for the old name
    const old = reg.instance;
    reg.instance = nextInstanceName(old);
    this.owned.touch();
    reg.emit('renamed', old, reg.instance, reason);
    reg.setState('probing', 'conflict');
    this.backoff(() => this.probeEverywhere(reg, 'conflict'), reg);
  }

  private renameHost(reason: string): void {
    const host = this.owned.host;
    const old = host.label;
    const oldName = host.name();
    for (const c of this.owned.claims()) this.prober.cancel(c);
    for (const l of this.links.all()) {
      // Service records are replaced under the same names (their SRV now names the new host):
      // no goodbye for them; the old host name's addresses get one.
      this.announcer.forget(l, (o) => !(o.record.name === oldName && (o.record.type === 'A' || o.record.type === 'AAAA')));
      this.owned.at(l).established.clear();
      this.owned.touch();
      this.announcer.reconcile(l);
    }
    host.label = nextHostName(old);
    this.owned.touch();
    this.emit('host-renamed', old, host.label, reason);
    for (const reg of this.owned.registrations) if (reg.state !== 'withdrawn') reg.setState('probing', 'host renamed');
    this.backoff(() => {
      for (const l of this.readyLinks()) for (const c of this.owned.claims()) this.prober.probe(c, l);
    });
  }

  /** RFC 6762 §8.1: after 15 conflicts within 10 s, wait 5 s before each new attempt. */
  private backoff(fn: () => void, reg?: Registration): void {
    const now = this.clock.now();
    this.recentConflicts.push(now);
    while (this.recentConflicts.length && this.recentConflicts[0]! < now - 10_000) this.recentConflicts.shift();
    if (this.recentConflicts.length < 15) return fn();
    const t = this.clock.setTimeout(() => {
      if (!this.stopped && (!reg || reg.state !== 'withdrawn')) fn();
    }, 5000);
    if (reg) {
      reg.retry?.cancel();
      reg.retry = t;
    }
  }

  /**
   * Goodbyes for everything, everywhere, now. `keepHostAddresses`: another responder on this
   * host still answers for our host name (see MdnsEngine.askHostMates): its A/AAAA records get no
   * goodbye, they are still true and still served.
   */
  stop(opts: { keepHostAddresses?: boolean } = {}): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.settling.values()) t.cancel();
    this.settling.clear();
    for (const reg of this.owned.registrations) {
      reg.retry?.cancel();
      if (reg.state !== 'withdrawn') reg.setState('withdrawn', 'shutdown');
    }
    this.owned.touch();
    const host = this.owned.host.name().toLowerCase();
    const keep = opts.keepHostAddresses
      ? (o: OwnedRecord) => (o.record.type === 'A' || o.record.type === 'AAAA') && o.record.name.toLowerCase() === host
      : undefined;
    for (const l of this.links.all()) this.announcer.withdrawAll(l, keep);
  }
}
