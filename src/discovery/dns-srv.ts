import { EventEmitter } from 'node:events';
import { createSocket } from 'node:dgram';
import { getServers } from 'node:dns';
import { isIP } from 'node:net';
import type * as DnsPacket from 'dns-packet';
import { requireCommonJs } from '../commonjs.js';
import type { DiscoverySource, EndpointSpec } from './source.js';

const dns = requireCommonJs('dns-packet') as typeof DnsPacket;

export interface DnsServer {
  host: string;
  port: number;
}

export interface DnsSrvOptions {
  servers?: DnsServer[];
  /** Bounds on the re-resolve interval, whatever the TTL says (ms). */
  minRefreshMs?: number;
  maxRefreshMs?: number;
  timeoutMs?: number;
}

interface SrvAnswer {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

export class DnsQueryError extends Error {
  constructor(message: string, readonly rcode?: string) {
    super(message);
  }
}

/** `1.2.3.4`, `1.2.3.4:5353`, `[::1]:53` → server. */
export function parseDnsServer(s: string): DnsServer {
  const v6 = /^\[(.+)\]:(\d+)$/.exec(s);
  if (v6) return { host: v6[1]!, port: Number(v6[2]) };
  if (isIP(s) === 6) return { host: s, port: 53 };
  const [host, port] = s.split(':');
  return { host: host!, port: port ? Number(port) : 53 };
}

/** One UDP DNS query; resolves the decoded response or rejects on timeout/rcode. */
export function dnsQuery(server: DnsServer, name: string, type: 'SRV' | 'A', timeoutMs: number): Promise<DnsPacket.Packet> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(server.host) === 6 ? 'udp6' : 'udp4');
    // Unpredictable query IDs (RFC 5452); Web Crypto's global, so node:crypto loads only with --srv.
    const id = 1 + (crypto.getRandomValues(new Uint16Array(1))[0]! % 65534);
    const done = (err?: Error, p?: DnsPacket.Packet) => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(() => done(new DnsQueryError(`no answer from ${server.host}:${server.port} in ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(err));
    sock.on('message', (msg) => {
      let p: DnsPacket.Packet;
      try {
        p = dns.decode(msg);
      } catch {
        return; // garbage: keep waiting for the real answer until the timeout
      }
      if (p.id !== id) return;
      const rcode = (p as { rcode?: string }).rcode ?? 'NOERROR';
      if (rcode !== 'NOERROR' && rcode !== 'NXDOMAIN') done(new DnsQueryError(`${name}: ${rcode} from ${server.host}`, rcode));
      else done(undefined, p);
    });
    const q = dns.encode({ id, type: 'query', flags: dns.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] });
    sock.send(q, server.port, server.host);
  });
}

/**
 * Endpoints from unicast DNS SRV (RFC 2782), re-resolved when the record's TTL runs out, so
 * a service moved in DNS (Consul, Kubernetes headless services, any DNS server) is followed.
 * A failed lookup keeps the last good set and retries soon: DNS trouble is not a service outage.
 * Events: 'endpoints' (EndpointSpec[]), 'resolve-error' (Error).
 */
export class DnsSrvSource extends EventEmitter implements DiscoverySource {
  readonly kind = 'srv' as const;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private serverIndex = 0;
  private readonly servers: DnsServer[];
  private readonly minRefresh: number;
  private readonly maxRefresh: number;
  private readonly timeout: number;
  private last = '';

  constructor(readonly query: string, opts: DnsSrvOptions = {}) {
    super();
    this.servers = opts.servers?.length ? opts.servers : getServers().map(parseDnsServer);
    this.minRefresh = opts.minRefreshMs ?? 1000;
    this.maxRefresh = opts.maxRefreshMs ?? 30_000;
    this.timeout = opts.timeoutMs ?? 1000;
  }

  async start(): Promise<void> {
    await this.refresh();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.refresh(), ms);
    this.timer.unref();
  }

  private async ask(name: string, type: 'SRV' | 'A'): Promise<DnsPacket.Packet> {
    let lastErr: Error | undefined;
    for (let i = 0; i < this.servers.length; i++) {
      const server = this.servers[(this.serverIndex + i) % this.servers.length]!;
      try {
        const p = await dnsQuery(server, name, type, this.timeout);
        this.serverIndex = (this.serverIndex + i) % this.servers.length;
        return p;
      } catch (err) {
        lastErr = err as Error;
      }
    }
    throw lastErr ?? new DnsQueryError('no DNS server configured');
  }

  private async refresh(): Promise<void> {
    if (this.stopped) return;
    try {
      const p = await this.ask(this.query, 'SRV');
      const answers = (p.answers ?? []).filter((a) => a.type === 'SRV') as Array<DnsPacket.Answer & { data: SrvAnswer; ttl?: number }>;
      const addrs = new Map<string, { addrs: string[]; ttl: number }>();
      for (const a of [...(p.additionals ?? []), ...(p.answers ?? [])] as Array<DnsPacket.Answer & { ttl?: number; data: unknown }>) {
        if (a.type !== 'A' && a.type !== 'AAAA') continue;
        const k = a.name.toLowerCase();
        const e = addrs.get(k) ?? { addrs: [], ttl: a.ttl ?? 0 };
        e.addrs.push(String(a.data));
        addrs.set(k, e);
      }
      let ttl = Math.min(...answers.map((a) => a.ttl ?? 0), Infinity);
      const specs: EndpointSpec[] = [];
      for (const a of answers) {
        const target = a.data.target.replace(/\.$/, '');
        let found = addrs.get(target.toLowerCase());
        if (!found) {
          if (isIP(target)) found = { addrs: [target], ttl: ttl };
          else {
            const ap = await this.ask(target, 'A');
            const list = (ap.answers ?? []).filter((x) => x.type === 'A') as Array<DnsPacket.Answer & { ttl?: number; data: string }>;
            found = { addrs: list.map((x) => x.data), ttl: Math.min(...list.map((x) => x.ttl ?? 0), Infinity) };
          }
        }
        ttl = Math.min(ttl, found.ttl);
        for (const addr of found.addrs.slice(0, 1)) {
          specs.push({
            id: `srv:${target.toLowerCase()}:${a.data.port}`,
            source: 'srv',
            host: addr,
            port: a.data.port,
            priority: a.data.priority,
            weight: a.data.weight,
            txt: {},
            label: `${target}:${a.data.port}`,
            expiresAt: Date.now() + (Number.isFinite(ttl) ? ttl : 0) * 1000,
          });
        }
      }
      const key = JSON.stringify(specs.map((s) => [s.id, s.host, s.port, s.priority, s.weight]));
      if (key !== this.last) {
        this.last = key;
        this.emit('endpoints', specs);
      }
      const next = Number.isFinite(ttl) ? ttl * 1000 : this.maxRefresh;
      this.schedule(Math.max(this.minRefresh, Math.min(next, this.maxRefresh)));
    } catch (err) {
      this.emit('resolve-error', err);
      this.schedule(this.minRefresh);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
