import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { RemoteInfo } from 'node:dgram';
import { zoned } from '../base/address.js';
import { Announcer } from './publish/announcer.js';
import { ServiceBrowser, TypeBrowser } from './browse/browser.js';
import { RecordCache } from './browse/cache.js';
import { QueryBatcher } from './browse/query-batcher.js';
import { type Clock, type TimerHandle, systemClock } from '../base/clock.js';
import { type Family, HostNetwork, type LinkDiff, type LinkInfo } from '../base/host-network.js';
import { InterfaceSelection, type NetInterface, linksOf } from './link/interfaces.js';
import type { Link } from './link/link.js';
import { Links } from './link/links.js';
import { SelectedLinks } from './link/selected-links.js';
import { packResponse } from './wire/packets.js';
import { DEFAULT_TTL, HostClaim, OwnedRecords, type Registration, type ServiceSpec, type TtlConfig } from './publish/owned.js';
import { Prober } from './publish/prober.js';
import { Publisher } from './publish/publisher.js';
import { type MdnsQuestion, type MdnsRecord, serviceType } from './wire/records.js';
import { Responder } from './publish/responder.js';
import { type LinkTransportFactory, MDNS_PORT, udpTransport } from './link/sockets.js';
import type { MdnsPacket } from './wire/codec.js';

export interface MdnsEngineOptions {
  /** A fixed set of interfaces (tests, tools): used as given, never re-read. */
  interfaces?: readonly NetInterface[];
  /** Which interfaces to use and follow as they change (default: every up multicast interface). */
  select?: InterfaceSelection;
  /** Host label (without `.local`); default: this machine's host name, first label. */
  hostname?: string;
  ttl?: Partial<TtlConfig>;
  port?: number;
  /** Also speak mDNS over IPv6 (ff02::fb) where an interface has IPv6 addresses. Default true. */
  ipv6?: boolean;
  clock?: Clock;
  maxCacheEntries?: number;
  /**
   * The host's interfaces, when something else follows them too (the ambassador's loop screen
   * and stranded watch): one look a second for all. The caller starts and stops it. Default: the
   * engine's own, from `interfaces`, `readLinks` and `pollMs`.
   */
  network?: HostNetwork;
  /** How often the interfaces are looked at (ms), when the engine has its own network. Default 1000. */
  pollMs?: number;
  /** Reads the interfaces (tests), when the engine has its own network. Default: the system's. */
  readLinks?: () => LinkInfo[];
  /** Opens a link's sockets (tests). Default: UDP on `port`. */
  transport?: LinkTransportFactory;
}

export interface PublishOptions {
  /** Service name (`redis`) or type (`_redis._tcp`). */
  name: string;
  port: number;
  instance?: string;
  txt?: Record<string, string>;
  priority?: number;
  weight?: number;
  subtypes?: string[];
}

/** One change of the interfaces in use, as logged and counted. */
export interface InterfaceChange {
  change: 'up' | 'down' | 'address';
  interface: string;
  /** Addresses now (for 'down': the ones it had). */
  addresses: string[];
  added: string[];
  removed: string[];
}

/** The engine's view of the network: the interfaces in use, and since when there is none. */
export interface NetworkState {
  interfaces: Array<{ name: string; addresses: string[]; since: number }>;
  /** Epoch ms since which no interface is usable; undefined while one is. */
  unusableSince?: number;
}

/** How long records learned only on a link that went away are kept, in case it comes back (a flap). */
export const LINK_CACHE_GRACE_MS = 5000;
/** After a link failed to open (no socket), how long until it is tried again. */
const LINK_RETRY_MS = 5000;

/**
 * How long stop() waits, after askHostMates(), for another responder on this host to answer for
 * our host name. A responder answers a question about a unique record at once (RFC 6762 §6): on
 * one host that is well under a millisecond, and 200 ms leaves room for a busy one. The wait
 * overlaps the drain (a relay lingers 300 ms after its goodbyes): most stops pay nothing.
 */
export const HOST_MATE_WAIT_MS = 200;

/**
 * The EDNS option (RFC 6891 §9: 65001–65534 are for local use) that marks the host-mates question,
 * so that only it is answered outside the one-second rule: any other question, however often a
 * process of this host asks it, is answered under RFC 6762 §6. Other stacks ignore the option.
 */
const HOST_MATE_OPTION = 65_353;

/**
 * Answers to host-mates' questions skip the one-second rule, but not this bound: a process on
 * this host asking in a loop cannot make us flood the link (an asker hears an answer sent for
 * another asker within it).
 */
const HOST_MATE_ANSWER_GAP_MS = 100;

/** A DNS label made of a host name: first label, only letters, digits and hyphens. */
export function hostLabelOf(name: string): string {
  const first = name.split('.')[0] ?? 'host';
  const clean = first.replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return clean || 'host';
}

/**
 * The mDNS engine. The host network's looks, through the interface selection, give interface
 * diffs; each interface in use is a Link (its sockets, its scheduler); on top of what we own
 * (OwnedRecords) the Prober, Announcer and Responder do their parts and the Publisher decides
 * when; browsers share one record cache and one query batcher. It never touches sockets that
 * carry user traffic; it only publishes and discovers.
 *
 * Events: 'host-renamed' (old, new, why), 'malformed' (error, rinfo), 'warning' (error),
 * 'interface' (InterfaceChange), 'network' (NetworkState), 'interface-failed' (name, error).
 */
export class MdnsEngine extends EventEmitter {
  readonly cache: RecordCache;
  readonly links: Links;
  readonly owned: OwnedRecords;
  readonly prober: Prober;
  readonly announcer: Announcer;
  readonly responder: Responder;
  readonly publisher: Publisher;
  /** The host's interfaces (shared, or the engine's own) and those of them mDNS uses. */
  readonly hostNetwork: HostNetwork;
  readonly selected: SelectedLinks;
  private readonly ownsNetwork: boolean;
  private readonly clock: Clock;
  private readonly port: number;
  private readonly browsers = new Set<ServiceBrowser | TypeBrowser>();
  private readonly serviceBrowsers = new Set<ServiceBrowser>();
  private readonly stats_ = { duplicateQuestionsSuppressed: 0, interfacesUp: 0, interfacesDown: 0, addressChanges: 0 };
  private readonly queries: QueryBatcher;
  private readonly cacheDrops = new Map<string, TimerHandle>();
  private readonly failedLinks = new Set<string>();
  private starting = true;
  private started = false;
  private stopped = false;
  private stopping?: Promise<void>;
  /** The question of askHostMates(), and who to wake when another responder of this host answers. */
  private hostMates?: { askedAt: number; wake?: () => void };
  /** When another responder on this host last multicast an address record of our host name (not an echo of ours). */
  private hostMateHeardAt = -Infinity;
  /** When we last answered a host-mate's question, per link and family. */
  private readonly hostMateAnsweredAt = new Map<string, number>();

  constructor(opts: MdnsEngineOptions = {}) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.port = opts.port ?? MDNS_PORT;
    const ttl: TtlConfig = { ...DEFAULT_TTL, ...opts.ttl };
    const fixed = opts.interfaces ? linksOf(opts.interfaces) : undefined;
    this.ownsNetwork = !opts.network;
    this.hostNetwork = opts.network ?? new HostNetwork({
      read: fixed ? () => fixed : opts.readLinks,
      clock: this.clock,
      intervalMs: fixed ? 0 : opts.pollMs ?? 1000,
    });
    this.selected = new SelectedLinks({
      network: this.hostNetwork,
      select: fixed ? InterfaceSelection.parse(fixed.map((l) => l.name)) : opts.select ?? InterfaceSelection.all(),
      clock: this.clock,
      ipv6: opts.ipv6 ?? true,
    });
    this.links = new Links(this.clock, opts.transport ?? udpTransport(this.port), this.port);
    this.cache = new RecordCache(this.clock, {
      maxEntries: opts.maxCacheEntries,
      isProtected: (e) => [...this.serviceBrowsers].some((b) => b.relies(e.record)),
    });
    this.queries = new QueryBatcher({
      clock: this.clock,
      cache: this.cache,
      browsers: this.browsers,
      active: () => this.started && !this.stopped,
      send: (questions, known) => {
        for (const l of this.links.all()) for (const f of l.families()) l.out(f).sendQuery(questions, known);
      },
    });
    this.owned = new OwnedRecords(new HostClaim(hostLabelOf(opts.hostname ?? hostname()), ttl), this.clock);
    const isOurAddress = (a: string) => this.links.isOurAddress(a);
    this.prober = new Prober(this.clock, this.owned, {
      done: (c, l) => this.publisher.probed(c, l),
      conflict: (c, l, why) => this.publisher.conflict(c, l, why, true),
      isOurAddress,
    });
    this.announcer = new Announcer(this.clock, this.owned);
    this.responder = new Responder(this.clock, this.owned, {
      conflict: (c, l, why) => this.publisher.conflict(c, l, why, false),
      isOurAddress,
    }, this.port);
    this.publisher = new Publisher(this.clock, this.links, this.owned, this.prober, this.announcer, ttl);
    this.publisher.on('host-renamed', (o, n, why) => this.emit('host-renamed', o, n, why));
    this.publisher.on('link-ready', (_l: Link, atStart: boolean) => {
      // A link that came up later: ask again there (and reconfirm what we knew after a flap).
      if (!atStart) for (const b of this.browsers) b.reset();
    });

    this.selected.on('change', (diffs: LinkDiff[]) => void this.links.apply(diffs));
    this.hostNetwork.on('warning', this.onNetworkWarning);
    this.links.on('packet', (p: MdnsPacket, from: RemoteInfo, link: Link, family: Family, echo: boolean) => this.onPacket(p, from, link, family, echo));
    this.links.on('malformed', (err, rinfo) => this.emit('malformed', err, rinfo));
    this.links.on('warning', (err) => this.emit('warning', err));
    this.links.on('link-added', (l: Link) => this.onLinkAdded(l));
    this.links.on('link-changed', (l: Link, d: LinkDiff) => this.onLinkChanged(l, d));
    this.links.on('link-removed', (l: Link) => this.onLinkRemoved(l));
    this.links.on('link-failed', (name: string, err: Error) => this.onLinkFailed(name, err));
  }

  private readonly onNetworkWarning = (err: Error) => this.emit('warning', err);

  get hostName(): string {
    return this.owned.host.name();
  }

  /**
   * Starts watching the interfaces and opens the ones usable now. Having none is not an error:
   * the engine waits for one (see `network()` and the 'network' event).
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.starting = true;
    if (this.ownsNetwork) this.hostNetwork.start();
    this.selected.start();
    await this.links.apply([]);
    this.starting = false;
    this.emitNetwork();
  }

  /** The interfaces in use now, and since when there is none. */
  network(): NetworkState {
    const since = this.selected.unusableSince;
    const interfaces = this.links.all().map((l) => ({ name: l.name, addresses: l.addresses().map((a) => zoned(a, l.name)), since: l.since }));
    if (interfaces.length > 0) return { interfaces };
    return { interfaces, unusableSince: since === undefined ? this.clock.now() : since };
  }

  /** Our IPv4 addresses on the interfaces in use now (for deciding what peers can reach). */
  addresses(): string[] {
    return this.links.all().flatMap((l) => l.ipv4.map((a) => a.address));
  }

  /** Resolves once at least one interface is in use. */
  waitForNetwork(): Promise<void> {
    if (this.links.size > 0 || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const on = () => {
        if (this.links.size === 0 && !this.stopped) return;
        this.off('network', on);
        this.off('stopped', on);
        resolve();
      };
      this.on('network', on);
      this.on('stopped', on);
    });
  }

  private emitNetwork(): void {
    if (!this.stopped) this.emit('network', this.network());
  }

  private onLinkAdded(link: Link): void {
    this.failedLinks.delete(link.name);
    this.cacheDrops.get(link.name)?.cancel();
    this.cacheDrops.delete(link.name);
    this.stats_.interfacesUp++;
    this.publisher.linkAdded(link, this.starting);
    this.emit('interface', { change: 'up', interface: link.name, addresses: link.addresses().map((a) => zoned(a, link.name)), added: [], removed: [] } satisfies InterfaceChange);
    this.emitNetwork();
  }

  private onLinkChanged(link: Link, d: LinkDiff): void {
    if (d.added.length === 0 && d.removed.length === 0) return;
    this.stats_.addressChanges++;
    this.publisher.linkChanged(link);
    this.emit('interface', {
      change: 'address', interface: link.name, addresses: link.addresses().map((a) => zoned(a, link.name)),
      added: d.added.map((a) => zoned(a, link.name)), removed: d.removed.map((a) => zoned(a, link.name)),
    } satisfies InterfaceChange);
    this.emitNetwork();
  }

  private onLinkRemoved(link: Link): void {
    this.stats_.interfacesDown++;
    this.publisher.linkRemoved(link);
    // What was learned only there goes, unless the link is back soon (a flap).
    const name = link.name;
    this.cacheDrops.get(name)?.cancel();
    this.cacheDrops.set(name, this.clock.setTimeout(() => {
      this.cacheDrops.delete(name);
      if (!this.links.get(name)) this.cache.dropLink(name);
    }, LINK_CACHE_GRACE_MS));
    this.emit('interface', { change: 'down', interface: name, addresses: link.addresses().map((a) => zoned(a, name)), added: [], removed: [] } satisfies InterfaceChange);
    this.emitNetwork();
  }

  private onLinkFailed(name: string, err: Error): void {
    if (!this.failedLinks.has(name)) {
      this.failedLinks.add(name);
      this.emit('interface-failed', name, err);
    }
    this.clock.setTimeout(() => {
      if (!this.stopped && !this.links.get(name)) this.selected.forget(name);
    }, LINK_RETRY_MS);
  }

  private onPacket(p: MdnsPacket, from: RemoteInfo, link: Link, family: Family, echo = false): void {
    const mates = this.hostMates;
    if (p.type === 'query') {
      this.prober.onQuery(p, link);
      const fromThisHost = from.port === this.port && this.links.isOurAddress(from.address);
      const hostMateQuestion = fromThisHost && p.optionCodes?.includes(HOST_MATE_OPTION) === true && this.asksForOurHostOnly(p);
      if (hostMateQuestion && echo) {
        // Our own question to the other responders of this host: only they are to answer it.
      } else if (hostMateQuestion) {
        this.answerHostMate(link, family);
      } else {
        this.responder.handleQuery(p, from, link, family);
      }
      // A query from another host (ours loop back) may make one of our own redundant (§7.3).
      if (from.port === this.port && !this.links.isOurAddress(from.address)) {
        for (const q of p.questions) for (const b of this.browsers) if (b.heardQuestion(q, p.answers)) this.stats_.duplicateQuestionsSuppressed++;
      }
      return;
    }
    if (!echo && this.owned.host.active && this.links.isOurAddress(from.address) && this.answersForOurHost(p)) {
      this.hostMateHeardAt = this.clock.now();
      mates?.wake?.();
    }
    this.prober.onResponse(p, link);
    this.responder.handleResponse(p, from, link, family);
    for (const r of p.answers) this.cacheRecord(r, link.name);
    for (const r of p.additionals) this.cacheRecord(r, link.name);
  }

  private cacheRecord(r: MdnsRecord, link: string): void {
    // Only the types DNS-SD resolution uses; everything else would be cache pollution.
    if (r.type === 'PTR' || r.type === 'SRV' || r.type === 'TXT' || r.type === 'A' || r.type === 'AAAA') {
      if (r.type === 'SRV' && !isSrv(r.data)) return;
      if ((r.type === 'PTR') && typeof r.data !== 'string') return;
      this.cache.add(r, link);
    }
  }

  /** The instance name a service gets when none is given: `NAME@HOST` (the host label now). */
  defaultInstance(name: string): string {
    return `${name}@${this.owned.host.label}`;
  }

  publish(opts: PublishOptions): Registration {
    const spec: ServiceSpec = {
      instance: (opts.instance ?? this.defaultInstance(opts.name)).replace(/\./g, '-'),
      type: serviceType(opts.name),
      port: opts.port,
      txt: opts.txt,
      priority: opts.priority,
      weight: opts.weight,
      subtypes: opts.subtypes,
    };
    // The host name is claimed only once there is something to publish: a browse-only or
    // connect-only ambassador stays silent on the network except for its queries.
    return this.publisher.register(spec);
  }

  unpublish(reg: Registration, reason?: string): void {
    this.publisher.unregister(reg, reason);
  }

  republish(reg: Registration): void {
    this.publisher.reregister(reg);
  }

  browse(name: string): ServiceBrowser {
    const b = new ServiceBrowser(serviceType(name), this.cache, this.clock, this.queries);
    this.browsers.add(b);
    this.serviceBrowsers.add(b);
    b.start();
    return b;
  }

  browseTypes(): TypeBrowser {
    const b = new TypeBrowser(this.cache, this.clock, this.queries);
    this.browsers.add(b);
    b.start();
    return b;
  }

  /**
   * Feeds one datagram as if it had arrived on the interface `name` (tests and fuzzing: the same
   * path as the socket's, decoding and validation included).
   */
  receive(name: string, msg: Buffer, rinfo: RemoteInfo, family: Family = 'IPv4'): void {
    const link = this.links.get(name);
    if (link) this.links.receive(link, msg, rinfo, family);
  }

  stats() {
    return {
      ...this.links.stats, ...this.prober.stats, ...this.announcer.stats, ...this.responder.stats, ...this.publisher.stats,
      ...this.stats_,
      cacheSize: this.cache.size, cacheEvicted: this.cache.evicted,
      interfaces: this.links.size,
    };
  }

  /**
   * Before a stop: asks whether another responder on this host answers for our host name. Several
   * processes on one host may publish the same name (ambassadors side by side, sharing UDP 5353;
   * an avahi-daemon publishing the machine's name): its A/AAAA records are the host's, and they
   * stay true when one of them stops. Their goodbyes (TTL 0) would make every peer drop the
   * address of the others' services until they re-announce. So stop() sends goodbyes for them
   * only when nobody else answered: what this process alone published always gets its goodbye.
   * The question (A and AAAA, no known answers, so that nobody suppresses the answer; ID 0 as
   * RFC 6762 §18.1 asks) carries the HOST_MATE_OPTION mark; ours is told from a host-mate's by
   * its bytes (the echo of our own datagram, see Link.takeEcho) and not answered by ourselves. A response from one of our addresses
   * with a live address record of our host name, not the echo of one of our own datagrams (told
   * by its bytes, see Link.takeEcho), is another responder's answer. Ambassadors answer this
   * question at once even within the one-second rule (see answerHostMate); another stack that
   * multicast the record within the last second may stay silent, and then the goodbye goes and
   * its owner re-announces within the second peers keep it (RFC 6762 §10.1): the old 150 ms gap,
   * in that rare case only. Getting it wrong the other way (an answer taken for another's) leaves
   * out a goodbye, and peers' caches keep a true address until its TTL runs out.
   */
  askHostMates(): void {
    if (this.hostMates || this.stopped || !this.owned.host.active) return;
    const host = this.owned.host;
    this.hostMates = { askedAt: this.clock.now() };
    const questions: MdnsQuestion[] = [{ name: host.name(), type: 'A' }, { name: host.name(), type: 'AAAA' }];
    for (const l of this.links.all()) {
      if (!this.owned.at(l).established.has(host)) continue;
      for (const f of l.families()) l.out(f).sendQuery(questions, [], HOST_MATE_OPTION);
    }
  }

  /** A question only about our host name's addresses, with no known answers (see askHostMates). */
  private asksForOurHostOnly(p: MdnsPacket): boolean {
    if (!this.owned.host.active || p.questions.length === 0 || p.answers.length > 0) return false;
    const name = this.owned.host.name().toLowerCase();
    return p.questions.every((q) => q.name.toLowerCase() === name && (q.type === 'A' || q.type === 'AAAA' || q.type === 'ANY'));
  }

  /**
   * Another process on this host, about to stop, asks whether we still answer for the host name
   * we share: at once, and even if we multicast it within the last second (the one-second rule of
   * RFC 6762 §6 would leave the question unanswered, and it would send the goodbye we avoid).
   */
  private answerHostMate(link: Link, family: Family): void {
    if (!this.owned.at(link).established.has(this.owned.host)) return;
    const now = this.clock.now();
    const key = `${link.name}|${family}`;
    if (now - (this.hostMateAnsweredAt.get(key) ?? -Infinity) < HOST_MATE_ANSWER_GAP_MS) return;
    this.hostMateAnsweredAt.set(key, now);
    const records = this.owned.host.records(link).map((o) => o.record);
    for (const packet of packResponse(records, [], 1400)) link.send(packet, family);
  }

  private answersForOurHost(p: MdnsPacket): boolean {
    const name = this.owned.host.name().toLowerCase();
    const live = (r: MdnsRecord) => (r.type === 'A' || r.type === 'AAAA') && r.ttl > 0 && r.name.toLowerCase() === name;
    return p.answers.some(live) || p.additionals.some(live);
  }

  /** Whether another responder on this host answered for our host name since askHostMates(). */
  private hostMateAnswered(): boolean {
    return this.hostMates !== undefined && this.hostMateHeardAt >= this.hostMates.askedAt;
  }

  /** Goodbyes for everything we published (see askHostMates), then close the sockets. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    if (this.stopped) return;
    const mates = this.hostMates;
    if (mates && !this.hostMateAnswered()) {
      const left = mates.askedAt + HOST_MATE_WAIT_MS - this.clock.now();
      if (left > 0) {
        await new Promise<void>((resolve) => {
          const t = this.clock.setTimeout(() => resolve(), left);
          mates.wake = () => {
            t.cancel();
            resolve();
          };
        });
      }
    }
    this.stopped = true;
    for (const b of this.browsers) b.stop();
    this.browsers.clear();
    this.serviceBrowsers.clear();
    this.queries.cancel();
    this.responder.stop();
    const keepHostAddresses = this.hostMateAnswered();
    if (mates) this.emit('host-mates', keepHostAddresses);
    this.publisher.stop({ keepHostAddresses });
    this.prober.stop();
    this.selected.stop();
    if (this.ownsNetwork) this.hostNetwork.stop();
    this.hostNetwork.off('warning', this.onNetworkWarning);
    for (const t of this.cacheDrops.values()) t.cancel();
    this.cacheDrops.clear();
    this.cache.clear();
    this.emit('stopped');
    await this.links.close();
  }
}

function isSrv(d: unknown): boolean {
  if (!d || typeof d !== 'object') return false;
  const s = d as Record<string, unknown>;
  return typeof s.port === 'number' && typeof s.target === 'string';
}
