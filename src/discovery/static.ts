import { EventEmitter } from 'node:events';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import type { HostPort } from '../base/address.js';
import type { DiscoverySource, EndpointSpec } from './source.js';

export type Lookup = (host: string) => Promise<LookupAddress[]>;

const systemLookup: Lookup = (host) => new Promise((resolve, reject) =>
  dnsLookup(host, { all: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))));

export interface StaticSourceOptions {
  /** How often host names are resolved again (ms). Default 10 000. */
  refreshMs?: number;
  /** The resolver (default: the system's, getaddrinfo). */
  lookup?: Lookup;
}

/**
 * Fixed endpoints from `--static NAME=HOST:PORT+HOST:PORT` (no multicast needed).
 *
 * Host names are resolved here, not at every connect and health check: getaddrinfo runs on
 * libuv's small thread pool, and a name whose lookup hangs (an unreachable DNS server, a
 * stopped container's name) would otherwise fill that pool and stall the lookups of every other
 * endpoint — live ones marked down by their health checks. At most one lookup per name is in
 * flight; endpoints are dialled by address; a name that stops resolving keeps its last address.
 */
export class StaticSource extends EventEmitter implements DiscoverySource {
  readonly kind = 'static' as const;
  private readonly refreshMs: number;
  private readonly lookup: Lookup;
  /** name → addresses last resolved (absent until the first answer). */
  private readonly resolved = new Map<string, string[]>();
  private readonly inFlight = new Set<string>();
  private readonly failing = new Set<string>();
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly endpoints: readonly HostPort[], opts: StaticSourceOptions = {}) {
    super();
    this.refreshMs = opts.refreshMs ?? 10_000;
    this.lookup = opts.lookup ?? systemLookup;
  }

  private names(): string[] {
    return [...new Set(this.endpoints.map((e) => e.host).filter((h) => isIP(h) === 0))];
  }

  async start(): Promise<void> {
    this.publish();
    if (this.names().length === 0) return;
    this.resolveAll();
    this.timer = setInterval(() => this.resolveAll(), this.refreshMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** Resolves the host names again now (a name still being looked up is not asked twice). */
  async refresh(): Promise<void> {
    if (!this.stopped) this.resolveAll();
  }

  private resolveAll(): void {
    for (const name of this.names()) {
      if (this.inFlight.has(name)) continue; // still hanging: never a second thread for it
      this.inFlight.add(name);
      this.lookup(name).then(
        (addrs) => this.onResolved(name, addrs.map((a) => a.address)),
        (err: NodeJS.ErrnoException) => this.onFailed(name, err),
      ).finally(() => this.inFlight.delete(name));
    }
  }

  private onResolved(name: string, addrs: string[]): void {
    if (this.stopped) return;
    if (addrs.length === 0) return this.onFailed(name, Object.assign(new Error('no address'), { code: 'ENODATA' }));
    this.failing.delete(name);
    // IPv4 first, as the data path and the other sources prefer it.
    const ordered = [...addrs.filter((a) => isIP(a) === 4), ...addrs.filter((a) => isIP(a) === 6)];
    const before = this.resolved.get(name);
    this.resolved.set(name, ordered);
    if (this.listenerCount('debug') > 0) this.emit('debug', '--static name resolved', { name, addresses: ordered, changed: before?.[0] !== ordered[0] });
    if (before?.[0] !== ordered[0]) this.publish();
  }

  private onFailed(name: string, err: NodeJS.ErrnoException): void {
    if (this.stopped || this.failing.has(name)) return;
    this.failing.add(name); // one warning per outage, not one per refresh
    const kept = this.resolved.has(name) ? `; keeping ${this.resolved.get(name)![0]}` : '';
    this.emit('resolve-error', new Error(`--static: '${name}' does not resolve (${err.code ?? err.message})${kept}`));
  }

  private publish(): void {
    const specs: EndpointSpec[] = [];
    for (const e of this.endpoints) {
      const address = isIP(e.host) === 0 ? this.resolved.get(e.host)?.[0] : e.host;
      if (address === undefined) continue; // a name not resolved yet
      specs.push({
        id: `static:${e.host}:${e.port}`,
        source: 'static',
        host: address,
        port: e.port,
        priority: 0,
        weight: 0,
        txt: {},
        label: `${e.host}:${e.port}`,
      });
    }
    this.emit('endpoints', specs);
  }
}
