import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type * as DnsPacket from 'dns-packet';
import { type Clock, type TimerHandle, systemClock } from '../base/clock.js';
import { DnsClient, DnsQueryError, type DnsServer, type QueryOptions, TruncatedAnswerError, formatServer } from './dns-client.js';
import { PlatformFiles } from './platform-files.js';
import { searchCandidates } from './resolv-conf.js';
import type { DiscoverySource, EndpointSpec } from './source.js';

export type { DnsServer } from './dns-client.js';

export interface DnsSrvOptions {
  /** `--dns-server`s in failover order; default: the nameservers of resolv.conf. */
  servers?: readonly DnsServer[];
  /** /etc/resolv.conf and /etc/hosts (injectable for tests). */
  files?: PlatformFiles;
  /** Bounds on the re-resolve interval, whatever the TTLs say (ms). */
  minRefreshMs?: number;
  maxRefreshMs?: number;
  /** Per-attempt timeout and rounds over the servers when resolv.conf sets none. */
  timeoutMs?: number;
  attempts?: number;
  /** Lookups of SRV targets' addresses in flight at once. */
  concurrency?: number;
  clock?: Clock;
}

/** One SRV record (RFC 2782) as read from an answer; the target lowercase, without trailing dot. */
export interface SrvRecord {
  target: string;
  port: number;
  priority: number;
  weight: number;
  ttl: number;
}

/** Addresses of one SRV target. `expiresAt` only for addresses learned from DNS (TTL). */
interface TargetAddresses {
  v4: string[];
  v6: string[];
  expiresAt?: number;
}

type Problem = 'failed' | 'empty' | 'truncated';

const bare = (name: string): string => name.toLowerCase().replace(/\.+$/, '');

/** The SRV records of an answer, one per target and port; target "." (RFC 2782: no service here) is left out. */
export function srvRecords(p: DnsPacket.Packet): SrvRecord[] {
  const seen = new Set<string>();
  const out: SrvRecord[] = [];
  for (const a of p.answers ?? []) {
    if (a.type !== 'SRV') continue;
    const data = a.data as DnsPacket.SrvAnswer['data'];
    const target = bare(data.target ?? '');
    if (target === '' || seen.has(`${target}|${data.port}`)) continue;
    seen.add(`${target}|${data.port}`);
    out.push({ target, port: data.port, priority: data.priority ?? 0, weight: data.weight ?? 0, ttl: a.ttl ?? 0 });
  }
  return out;
}

/** A and AAAA records in the answer and additional sections, by owner name (RFC 2782: the server may add the targets' addresses). */
export function addressRecords(p: DnsPacket.Packet): Map<string, { v4: string[]; v6: string[]; ttl: number }> {
  const out = new Map<string, { v4: string[]; v6: string[]; ttl: number }>();
  for (const a of [...(p.answers ?? []), ...(p.additionals ?? [])]) {
    if (a.type !== 'A' && a.type !== 'AAAA') continue;
    const k = bare(a.name);
    const e = out.get(k) ?? { v4: [], v6: [], ttl: Infinity };
    const list = a.type === 'A' ? e.v4 : e.v6;
    if (!list.includes(String(a.data))) list.push(String(a.data));
    e.ttl = Math.min(e.ttl, a.ttl ?? 0);
    out.set(k, e);
  }
  return out;
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Endpoints from unicast DNS SRV (RFC 2782), re-resolved as the TTLs run out, so a service that
 * changes in DNS (Consul, Kubernetes headless services, any DNS server) is followed.
 *
 * The name is looked up as the platform would (search list and ndots from resolv.conf), over
 * UDP with EDNS0 and over TCP when truncated, with failover between servers (dns-client.ts).
 * Each SRV record is one endpoint, dialled at its target's address: /etc/hosts first, then the
 * answer's additional section, then A and AAAA queries (IPv4 when the target has both).
 *
 * DNS trouble is not a service outage: a failed or empty lookup keeps the last good set and is
 * reported once ('resolve-error') until a lookup succeeds again ('info'). A truncated answer
 * that could not be completed is reported ('warning') and never taken for the whole set: it is
 * used only while there has been no complete answer at all (some replicas beat none).
 * Events: 'endpoints' (EndpointSpec[]) after every successful lookup, 'resolve-error' (Error),
 * 'warning' (message, fields), 'info' (message, fields).
 */
export class DnsSrvSource extends EventEmitter implements DiscoverySource {
  readonly kind = 'srv' as const;
  private readonly client = new DnsClient();
  private readonly files: PlatformFiles;
  private readonly clock: Clock;
  private readonly minRefresh: number;
  private readonly maxRefresh: number;
  private readonly timeout: number;
  private readonly attempts: number;
  private readonly concurrency: number;
  private timer?: TimerHandle;
  private stopped = false;
  /** The last set published, and whether it came from a complete answer. */
  private current: EndpointSpec[] = [];
  private complete = false;
  /** Lookups failed in a row, since when, and the problems already reported in this streak. */
  private failures = 0;
  private failingSince = 0;
  private readonly reported = new Set<Problem>();
  /** SRV targets reported as having no address (once each, until they have one again). */
  private readonly targetsReported = new Set<string>();
  /** Target addresses learned from DNS, kept for their TTL (and as a fallback when a lookup fails). */
  private readonly addresses = new Map<string, TargetAddresses>();
  private resolvedAs = '';
  /** Delay chosen for the next lookup (ms): the shortest TTL within bounds, or the backoff. */
  nextRefreshMs = 0;

  constructor(readonly query: string, private readonly opts: DnsSrvOptions = {}) {
    super();
    this.files = opts.files ?? new PlatformFiles();
    this.clock = opts.clock ?? systemClock;
    this.minRefresh = opts.minRefreshMs ?? 1000;
    this.maxRefresh = Math.max(this.minRefresh, opts.maxRefreshMs ?? 30_000);
    this.timeout = opts.timeoutMs ?? 2000;
    this.attempts = opts.attempts ?? 2;
    this.concurrency = opts.concurrency ?? 16;
  }

  async start(): Promise<void> {
    await this.refresh();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
  }

  /** One lookup, then the next one scheduled. Never throws. */
  async refresh(): Promise<void> {
    if (this.stopped) return;
    let next: number;
    try {
      next = await this.lookup();
    } catch (err) {
      next = this.failed('failed', err as Error);
    }
    if (this.stopped) return;
    this.timer?.cancel();
    this.nextRefreshMs = next;
    this.timer = this.clock.setTimeout(() => void this.refresh(), next);
  }

  /** Looks the service up and publishes what it found; returns the delay until the next lookup. */
  private async lookup(): Promise<number> {
    const conf = this.files.resolvConf();
    const servers = this.opts.servers?.length ? this.opts.servers : conf.nameservers.map((host) => ({ host, port: 53 }));
    const q: QueryOptions = { timeoutMs: conf.timeoutMs ?? this.timeout, attempts: conf.attempts ?? this.attempts, tcpOnly: conf.useVc };
    const candidates = searchCandidates(this.query, conf);
    const asGiven = this.query.toLowerCase();
    let found: { name: string; packet: DnsPacket.Packet; via: string; truncated?: TruncatedAnswerError } | undefined;
    let failure: DnsQueryError | undefined;
    let listEnded = false;
    for (const name of candidates) {
      if (listEnded && name !== asGiven) continue;
      try {
        const r = await this.client.query(name, 'SRV', servers, q);
        if (srvRecords(r.packet).length > 0) {
          found = { name, packet: r.packet, via: `${formatServer(r.server)} over ${r.transport.toUpperCase()}` };
          break;
        }
        // NXDOMAIN, or the name exists without SRV records: the next name of the search list
      } catch (err) {
        if (err instanceof TruncatedAnswerError && srvRecords(err.partial).length > 0) {
          found = { name, packet: err.partial, via: 'a truncated UDP answer', truncated: err };
          break;
        }
        if (!(err instanceof DnsQueryError) || servers.length === 0) throw err;
        // As glibc's res_search (checked on the same resolv.conf): the name as given, when it is
        // asked first, may fail in any way and the search list is still tried; within the list a
        // SERVFAIL goes on to the next domain, anything else (REFUSED, no answer) ends the list,
        // and the name as given is still asked last. A server that refuses foreign zones is
        // common (authoritative-only servers), and must not hide the name that works.
        failure ??= err;
        if (name !== asGiven && err.rcode !== 'SERVFAIL') listEnded = true;
      }
    }
    if (this.listenerCount('debug') > 0) {
      this.emit('debug', 'DNS SRV lookup', { query: this.query, tried: candidates, found: found?.name, records: found ? srvRecords(found.packet).length : 0, failed: failure?.message });
    }
    if (!found) {
      if (failure) throw failure;
      return this.failed('empty', new DnsQueryError(`no SRV records for ${candidates.join(', ')}`));
    }
    const records = srvRecords(found.packet);
    const { specs, ttl } = await this.endpoints(records, found.packet, servers, q);
    if (this.stopped) return this.maxRefresh;
    if (specs.length === 0) {
      return this.failed('empty', new DnsQueryError(`none of the ${records.length} SRV targets of ${found.name} has an address`));
    }
    if (found.truncated) return this.truncated(found.truncated, specs);

    if (this.failures > 0) {
      this.emit('info', 'DNS SRV lookup works again', { query: this.query, failedLookups: this.failures, failingForMs: this.clock.now() - this.failingSince });
    }
    this.failures = 0;
    this.reported.clear();
    if (found.name !== this.resolvedAs) {
      this.resolvedAs = found.name;
      this.emit('info', 'DNS SRV name resolved', { query: this.query, name: found.name, records: records.length, via: found.via });
    }
    this.complete = true;
    this.publish(specs);
    return Math.max(this.minRefresh, Math.min(this.maxRefresh, ttl * 1000));
  }

  private publish(specs: EndpointSpec[]): void {
    this.current = specs;
    this.emit('endpoints', specs);
  }

  /** A failed or empty lookup: the last set stays; reported once per streak. */
  private failed(problem: Problem, err: Error): number {
    this.streak();
    if (!this.reported.has(problem)) {
      this.reported.add(problem);
      this.emit('resolve-error', err);
    }
    return this.backoff();
  }

  private truncated(err: TruncatedAnswerError, partial: EndpointSpec[]): number {
    this.streak();
    const first = !this.reported.has('truncated');
    this.reported.add('truncated');
    if (!this.complete) {
      // nothing complete to keep: the replicas we know of are better than none, but say so
      if (first) this.emit('warning', 'DNS SRV answer truncated and not completed over TCP: using the endpoints it named until a complete answer arrives', { query: this.query, endpoints: partial.length, err: err.message });
      this.publish(partial);
    } else if (first) {
      this.emit('warning', 'DNS SRV answer truncated and not completed over TCP: ignored, keeping the last complete set', { query: this.query, endpoints: this.current.length, err: err.message });
    }
    return this.backoff();
  }

  private streak(): void {
    if (this.failures++ === 0) this.failingSince = this.clock.now();
  }

  /** Retries soon, then less often while DNS stays unusable (bounded by the refresh bounds). */
  private backoff(): number {
    return Math.min(this.maxRefresh, this.minRefresh * 2 ** Math.min(this.failures - 1, 20));
  }

  /** The endpoint set for these records, and the shortest TTL (s) it depends on. */
  private async endpoints(records: SrvRecord[], packet: DnsPacket.Packet, servers: readonly DnsServer[], q: QueryOptions): Promise<{ specs: EndpointSpec[]; ttl: number }> {
    const now = this.clock.now();
    const inAnswer = addressRecords(packet);
    let ttl = Math.min(...records.map((r) => r.ttl));
    const byTarget = new Map<string, TargetAddresses>();
    const missing = new Map<string, string>();
    await eachLimited([...new Set(records.map((r) => r.target))], this.concurrency, async (target) => {
      const fromHosts = this.files.hosts(target);
      if (fromHosts.length > 0) {
        byTarget.set(target, { v4: fromHosts.filter((a) => isIP(a) === 4), v6: fromHosts.filter((a) => isIP(a) === 6) });
        return;
      }
      if (isIP(target)) {
        byTarget.set(target, isIP(target) === 4 ? { v4: [target], v6: [] } : { v4: [], v6: [target] });
        return;
      }
      const added = inAnswer.get(target);
      if (added) {
        const entry = { v4: added.v4, v6: added.v6, expiresAt: now + added.ttl * 1000 };
        this.addresses.set(target, entry);
        byTarget.set(target, entry);
        return;
      }
      const cached = this.addresses.get(target);
      if (cached && cached.expiresAt! > now) {
        byTarget.set(target, cached);
        return;
      }
      try {
        const entry = await this.resolveTarget(target, servers, q);
        if (entry.v4.length + entry.v6.length === 0) {
          this.addresses.delete(target);
          missing.set(target, 'no A or AAAA record');
        } else {
          this.addresses.set(target, entry);
          byTarget.set(target, entry);
        }
      } catch (err) {
        // the lookup failed, not the target: its last known addresses stand in until it works again
        if (cached) byTarget.set(target, cached);
        else missing.set(target, (err as Error).message);
      }
    });

    const previous = new Map(this.current.map((s) => [s.id, s.host]));
    const specs: EndpointSpec[] = [];
    for (const r of records) {
      const a = byTarget.get(r.target);
      if (!a) continue;
      if (a.expiresAt !== undefined) ttl = Math.min(ttl, Math.max(0, (a.expiresAt - now) / 1000));
      // IPv4 when the target has both (an SRV record is one instance: dialled once, not per family);
      // an address kept while the target still has it, so a rotated answer moves nothing
      const list = a.v4.length > 0 ? a.v4 : a.v6;
      const id = `srv:${r.target}:${r.port}`;
      const prev = previous.get(id);
      specs.push({
        id,
        source: 'srv',
        host: prev !== undefined && list.includes(prev) ? prev : list[0]!,
        port: r.port,
        priority: r.priority,
        weight: r.weight,
        txt: {},
        label: `${r.target}:${r.port}`,
      });
    }
    const expiresAt = now + ttl * 1000;
    for (const s of specs) s.expiresAt = expiresAt;
    this.reportTargets(missing);
    for (const t of this.addresses.keys()) if (!byTarget.has(t) && !missing.has(t)) this.addresses.delete(t);
    return { specs, ttl };
  }

  /** A, and AAAA when there is no A; the TTL of the records used. */
  private async resolveTarget(target: string, servers: readonly DnsServer[], q: QueryOptions): Promise<TargetAddresses> {
    for (const type of ['A', 'AAAA'] as const) {
      let packet: DnsPacket.Packet;
      try {
        packet = (await this.client.query(target, type, servers, q)).packet;
      } catch (err) {
        // one address is all an endpoint needs: those of a truncated answer are as good as any
        if (!(err instanceof TruncatedAnswerError)) throw err;
        packet = err.partial;
      }
      const found = (packet.answers ?? []).filter((a) => a.type === type) as Array<{ data: unknown; ttl?: number }>;
      if (found.length > 0) {
        const addrs = [...new Set(found.map((a) => String(a.data)))];
        const ttl = Math.min(...found.map((a) => a.ttl ?? 0));
        return { v4: type === 'A' ? addrs : [], v6: type === 'AAAA' ? addrs : [], expiresAt: this.clock.now() + ttl * 1000 };
      }
    }
    return { v4: [], v6: [] };
  }

  /** Targets without an address are left out of the set: reported once each while that lasts. */
  private reportTargets(missing: Map<string, string>): void {
    for (const [target, why] of missing) {
      if (this.targetsReported.has(target)) continue;
      this.targetsReported.add(target);
      this.emit('warning', 'DNS SRV target has no address: left out', { query: this.query, target, err: why });
    }
    for (const t of this.targetsReported) if (!missing.has(t)) this.targetsReported.delete(t);
  }
}
