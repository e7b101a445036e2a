import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { RemoteInfo } from 'node:dgram';
import { type Clock, type TimerHandle, systemClock } from './clock.js';
import { type CacheEntry, RecordCache } from './cache.js';
import { ServiceBrowser, TypeBrowser, type QuerySender } from './browser.js';
import { type NetInterface } from './interfaces.js';
import { type MdnsQuestion, type MdnsRecord, rrsetKey, serviceType } from './records.js';
import { DEFAULT_TTL, Registration, Responder, type ServiceSpec, type TtlConfig } from './responder.js';
import { MdnsTransport, MDNS_PORT } from './transport.js';
import type { MdnsPacket } from './wire.js';
import { recordLength } from './wire.js';

export interface MdnsEngineOptions {
  interfaces: readonly NetInterface[];
  /** Host label (without `.local`); default: this machine's host name, first label. */
  hostname?: string;
  ttl?: Partial<TtlConfig>;
  port?: number;
  /** Also speak mDNS over IPv6 (ff02::fb) where an interface has IPv6 addresses. Default true. */
  ipv6?: boolean;
  clock?: Clock;
  maxCacheEntries?: number;
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

/** A DNS label made of a host name: first label, only letters, digits and hyphens. */
export function hostLabelOf(name: string): string {
  const first = name.split('.')[0] ?? 'host';
  const clean = first.replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return clean || 'host';
}

/**
 * The mDNS engine: one transport, one record cache, one responder, any number of browsers.
 * It never touches sockets that carry user traffic; it only publishes and discovers.
 * Events: 'host-renamed' (old, new), 'malformed' (error, rinfo).
 */
export class MdnsEngine extends EventEmitter implements QuerySender {
  readonly transport: MdnsTransport;
  readonly cache: RecordCache;
  readonly responder: Responder;
  private readonly clock: Clock;
  private readonly browsers = new Set<ServiceBrowser | TypeBrowser>();
  private readonly stats_ = { duplicateQuestionsSuppressed: 0 };
  private queryBatch?: { questions: Map<string, MdnsQuestion>; known: Map<string, { name: string; type: string }>; timer: TimerHandle };
  private readonly serviceBrowsers = new Set<ServiceBrowser>();
  private started = false;
  private hostStarted = false;

  constructor(opts: MdnsEngineOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.transport = new MdnsTransport(opts.interfaces, opts.port ?? MDNS_PORT, undefined, opts.ipv6 ?? true);
    this.transport.on('warning', (err) => this.emit('warning', err));
    this.cache = new RecordCache(this.clock, {
      maxEntries: opts.maxCacheEntries,
      isProtected: (e) => [...this.serviceBrowsers].some((b) => b.relies(e.record)),
    });
    this.responder = new Responder(this.transport, this.clock, hostLabelOf(opts.hostname ?? hostname()), {
      ...DEFAULT_TTL,
      ...opts.ttl,
    });
    this.responder.on('host-renamed', (o, n, why) => this.emit('host-renamed', o, n, why));
    this.transport.on('packet', (p: MdnsPacket, from: RemoteInfo, iface: NetInterface) => this.onPacket(p, from, iface));
    this.transport.on('malformed', (err, rinfo) => this.emit('malformed', err, rinfo));
  }

  get hostName(): string {
    return this.responder.hostName;
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.transport.start();
    this.started = true;
  }

  private onPacket(p: MdnsPacket, from: RemoteInfo, iface: NetInterface): void {
    if (p.type === 'query') {
      this.responder.handleQuery(p, from, iface);
      // A query from another host (ours loop back) may make one of our own redundant (§7.3).
      if (from.port === this.transport.port && !this.ownAddress(from.address)) {
        for (const q of p.questions) for (const b of this.browsers) if (b.heardQuestion(q, p.answers)) this.stats_.duplicateQuestionsSuppressed++;
      }
      return;
    }
    this.responder.handleResponse(p, from, iface);
    for (const r of p.answers) this.cacheRecord(r);
    for (const r of p.additionals) this.cacheRecord(r);
  }

  private cacheRecord(r: MdnsRecord): void {
    // Only the types DNS-SD resolution uses; everything else would be cache pollution.
    if (r.type === 'PTR' || r.type === 'SRV' || r.type === 'TXT' || r.type === 'A' || r.type === 'AAAA') {
      if (r.type === 'SRV' && !isSrv(r.data)) return;
      if ((r.type === 'PTR') && typeof r.data !== 'string') return;
      this.cache.add(r);
    }
  }

  /**
   * Queues a query. Urgent ones (a browser's first, resolution of a new instance) leave at once;
   * the others wait up to 100 ms, and when the batch leaves, every browser query and cache
   * refresh due soon rides along: one packet per host where a naive engine sends one per
   * question (this is how Avahi keeps its idle traffic low).
   */
  query(questions: MdnsQuestion[], knownAnswersFor: Array<{ name: string; type: string }> = [], urgent = false): void {
    let b = this.queryBatch;
    if (!b) {
      b = { questions: new Map(), known: new Map(), timer: this.clock.setTimeout(() => this.flushQueries(), urgent ? 0 : 100) };
      this.queryBatch = b;
    } else if (urgent) {
      b.timer.cancel();
      b.timer = this.clock.setTimeout(() => this.flushQueries(), 0);
    }
    for (const q of questions) b.questions.set(`${rrsetKey(q.name, q.type)}|${q.qu ? 1 : 0}`, q);
    for (const k of knownAnswersFor) b.known.set(rrsetKey(k.name, k.type), k);
  }

  private flushQueries(): void {
    const b = this.queryBatch;
    this.queryBatch = undefined;
    if (!b || !this.started) return;
    const add = (q: MdnsQuestion) => {
      b.questions.set(`${rrsetKey(q.name, q.type)}|0`, q);
      b.known.set(rrsetKey(q.name, q.type), q);
    };
    for (const br of this.browsers) {
      const q = br.pullForward();
      if (q) add(q);
    }
    const wanted = (e: CacheEntry) => [...this.browsers].some((br) => br.interestedIn(e.record));
    for (const e of this.cache.takeDueRefreshes(2500, wanted)) add({ name: e.record.name, type: e.record.type });
    this.sendQuery([...b.questions.values()], [...b.known.values()]);
  }

  /** Multicasts one query with known answers from the cache (RFC 6762 §7.1). */
  private sendQuery(questions: MdnsQuestion[], knownAnswersFor: Array<{ name: string; type: string }>): void {
    const known: MdnsRecord[] = [];
    for (const k of knownAnswersFor) known.push(...this.cache.knownAnswers(k.name, k.type));
    for (const iface of this.transport.interfaces) {
      // Keep one packet under the MTU; further known answers go in follow-up packets with TC set
      // on the earlier ones (RFC 6762 §7.2).
      let batch: MdnsRecord[] = [];
      let size = 12 + questions.reduce((n, q) => n + q.name.length + 6, 0);
      const chunks: MdnsRecord[][] = [];
      for (const r of known) {
        const len = recordLength(r);
        if (size + len > 1400 && batch.length) {
          chunks.push(batch);
          batch = [];
          size = 12;
        }
        batch.push(r);
        size += len;
      }
      chunks.push(batch);
      chunks.forEach((answers, i) => {
        const more = i < chunks.length - 1;
        this.transport.send(
          { type: 'query', flags: more ? 1 << 9 : 0, questions: i === 0 ? questions : [], answers },
          iface,
        );
      });
    }
  }

  publish(opts: PublishOptions): Registration {
    const spec: ServiceSpec = {
      instance: (opts.instance ?? `${opts.name}@${this.responder.hostLabel}`).replace(/\./g, '-'),
      type: serviceType(opts.name),
      port: opts.port,
      txt: opts.txt,
      priority: opts.priority,
      weight: opts.weight,
      subtypes: opts.subtypes,
    };
    // The host name is claimed only once there is something to publish: a browse-only or
    // connect-only ambassador stays silent on the network except for its queries.
    if (!this.hostStarted) {
      this.hostStarted = true;
      this.responder.startHost();
    }
    return this.responder.register(spec);
  }

  unpublish(reg: Registration, reason?: string): void {
    this.responder.unregister(reg, reason);
  }

  republish(reg: Registration): void {
    this.responder.reregister(reg);
  }

  browse(name: string): ServiceBrowser {
    const b = new ServiceBrowser(serviceType(name), this.cache, this.clock, this);
    this.browsers.add(b);
    this.serviceBrowsers.add(b);
    b.start();
    return b;
  }

  browseTypes(): TypeBrowser {
    const b = new TypeBrowser(this.cache, this.clock, this);
    this.browsers.add(b);
    b.start();
    return b;
  }

  private ownAddress(address: string): boolean {
    const a = address.split('%')[0]!;
    return this.transport.interfaces.some((i) => i.address === a || (i.ipv6 ?? []).some((x) => x.address.split('%')[0] === a));
  }

  stats() {
    return {
      ...this.transport.stats, ...this.responder.stats, ...this.stats_,
      cacheSize: this.cache.size, cacheEvicted: this.cache.evicted,
    };
  }

  /** Goodbyes for everything we published, then close the sockets. */
  async stop(): Promise<void> {
    for (const b of this.browsers) b.stop();
    this.browsers.clear();
    this.serviceBrowsers.clear();
    this.queryBatch?.timer.cancel();
    this.queryBatch = undefined;
    this.responder.stop();
    this.cache.clear();
    // Let the goodbye datagrams leave before the sockets close.
    await new Promise((r) => setTimeout(r, 20));
    await this.transport.stop();
  }
}

function isSrv(d: unknown): boolean {
  if (!d || typeof d !== 'object') return false;
  const s = d as Record<string, unknown>;
  return typeof s.port === 'number' && typeof s.target === 'string';
}
