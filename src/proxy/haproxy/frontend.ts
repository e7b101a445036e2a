import { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { BalancerName } from '../../cluster/balancer.js';
import type { Cluster } from '../../cluster/cluster.js';
import type { Endpoint } from '../../cluster/endpoint.js';
import type { LimitName, ListenerLimits } from '../limits.js';
import type { NoEndpointReason } from '../listener.js';
import { ProxyServer } from '../server.js';
import { type EndpointFacts, type Slot, type Tier, emptySlots } from './slots.js';
import type { StatRow } from './runtime-api.js';

/** What a failed connect is reported as: HAProxy's statistics count failed connects but do not say why. */
export const HAPROXY_CONNECT_FAILED = 'ECONNFAILED';

/** Totals per endpoint label (kept after the endpoint leaves, as counters must not go down). */
export interface EndpointTotals {
  /** Clients piped to it (HAProxy's sessions per server). */
  connections: number;
  /** Connect attempts to it that failed. */
  failures: number;
  /** Bytes from / to it. */
  bytesIn: number;
  bytesOut: number;
  /** Connections open to it now. */
  active: number;
}

export type HaproxyFrontendEvents = {
  /** Clients refused by a circuit breaker since the last reading of HAProxy's statistics. */
  'client-refused': [limit: LimitName, count: number];
  /** Failed connects to one endpoint (by label) since the last reading; HAProxy retried each on another endpoint, as long as retries were left. */
  'connect-failed': [endpoint: string, count: number];
  /** Clients moved to another endpoint after a failed connect. */
  failover: [count: number];
  /** Clients closed without an upstream ('no-endpoint': none was usable; 'all-failed': every attempt failed). */
  'client-closed-no-endpoint': [reason: NoEndpointReason, count: number];
};

export interface HaproxyFrontendOptions {
  cluster: Cluster;
  service: string;
  bind: string;
  /** Also accept on this address, same port (`::1` beside `127.0.0.1`; skipped where the host has no such address). */
  alsoBind?: string;
  port: number;
  balance: BalancerName;
  limits: ListenerLimits;
  /** Slots per tier at start (balance=srv has a backup tier of the same size). */
  slots: number;
}

/** The last values read of one counter source in the current HAProxy worker (deltas are taken against them). */
interface Seen {
  [counter: string]: number;
}

const num = (v: string | undefined): number => (v === undefined || v === '' ? 0 : Number(v) || 0);

/**
 * A --connect listener carried by HAProxy: one frontend and one backend in HAProxy's
 * configuration. The cluster (discovery, health) stays the ambassador's; this
 * object holds the backend's slot table (what HAProxy should have, see slots.ts) and reads back
 * what HAProxy counted, for the metrics, /peers and passive outlier detection. The same public
 * surface as the Node data plane's ConnectListener where it makes sense (cluster, limits,
 * address, accepted, bytesFor).
 */
export class HaproxyFrontend extends EventEmitter<HaproxyFrontendEvents> {
  readonly cluster: Cluster;
  /** Names of its frontend and backend in HAProxy. */
  readonly frontendName: string;
  readonly backendName: string;
  readonly service: string;
  readonly bind: string;
  /** The further addresses HAProxy binds (alsoBind where this host has it), known after listen(). */
  alsoBinds: string[] = [];
  private readonly alsoBind: string | undefined;
  readonly port: number;
  readonly balance: BalancerName;
  readonly limits: Readonly<ListenerLimits>;
  /** The slot table wanted (the plane keeps HAProxy in line with it). */
  slots: Slot[];
  /** Clients accepted (refused ones not included). */
  accepted = 0;
  /** Clients waiting in HAProxy's queue now (every endpoint at max-per-endpoint). */
  queued = 0;
  readonly refused: Record<LimitName, number> = { 'max-connections': 0, 'max-pending': 0, 'max-per-endpoint': 0 };
  readonly failed: Record<NoEndpointReason, number> = { 'no-endpoint': 0, 'all-failed': 0, rejected: 0 };
  /** Failovers: clients retried on another endpoint after a failed connect. */
  retries = 0;
  private readonly totals = new Map<string, EndpointTotals>();
  /** Endpoint key → label, for slots whose endpoint already left the cluster. */
  private readonly labels = new Map<string, string>();
  private seen = new Map<string, Seen>();
  /** Set by the plane: whether HAProxy is up and serving this frontend. */
  listening = false;
  /** Set by the plane: its state ('running', 'restarting' …). */
  planeState: () => string = () => 'idle';

  constructor(opts: HaproxyFrontendOptions, names: { frontend: string; backend: string }) {
    super();
    this.cluster = opts.cluster;
    this.service = opts.service;
    this.bind = opts.bind;
    this.alsoBind = opts.alsoBind;
    this.port = opts.port;
    this.balance = opts.balance;
    this.limits = { ...opts.limits };
    this.frontendName = names.frontend;
    this.backendName = names.backend;
    this.slots = emptySlots({ active: opts.slots, backup: opts.balance === 'srv' ? opts.slots : 0 });
  }

  /**
   * Binds the address once and releases it: a port in use or not available fails here, with the
   * Node data plane's message, before HAProxy is started (which then binds it for good).
   */
  async listen(): Promise<net.AddressInfo> {
    const probe = new ProxyServer(this.bind, this.port, (c) => c.destroy(), () => {});
    if (this.alsoBind !== undefined) probe.alsoListenOn(this.alsoBind);
    const addr = await probe.listen();
    this.alsoBinds = probe.addresses().slice(1).map((a) => a.address);
    await probe.close();
    return addr;
  }

  /** Every address:port HAProxy accepts on for it (with alsoBind: both, where the host has it). */
  addresses(): net.AddressInfo[] {
    return [this.bind, ...this.alsoBinds].map((a) => ({ address: a, port: this.port, family: a.includes(':') ? 'IPv6' : 'IPv4' }));
  }

  address(): net.AddressInfo | undefined {
    return { address: this.bind, port: this.port, family: this.bind.includes(':') ? 'IPv6' : 'IPv4' };
  }

  /** The plane stops HAProxy (draining there): nothing to do per listener. */
  async close(): Promise<void> {
    this.listening = false;
  }

  /** The endpoints as the slot mapping sees them (labels remembered for the counters). */
  endpointFacts(now = Date.now()): EndpointFacts[] {
    return this.cluster.endpoints().map((ep) => {
      this.labels.set(ep.key, ep.label);
      return { key: ep.key, host: ep.host, port: ep.port, priority: ep.priority, weight: ep.weight, down: ep.downReasonAt(now) };
    });
  }

  /** Slots per tier now. */
  capacity(): Record<Tier, number> {
    return { active: this.slots.filter((s) => s.tier === 'active').length, backup: this.slots.filter((s) => s.tier === 'backup').length };
  }

  /** Totals per endpoint label, removed endpoints included. */
  endpointTotals(): ReadonlyMap<string, EndpointTotals> {
    return this.totals;
  }

  /** Bytes from / to `ep` (as ConnectListener.bytesFor). */
  bytesFor(ep: Endpoint): { bytesIn: number; bytesOut: number } {
    const t = this.totals.get(ep.label);
    return { bytesIn: t?.bytesIn ?? 0, bytesOut: t?.bytesOut ?? 0 };
  }

  /** Connections open to `ep` now. */
  activeTo(ep: Endpoint): number {
    return this.totals.get(ep.label)?.active ?? 0;
  }

  /**
   * HAProxy keeps connections on a backup server when an active one is back (it cannot tell
   * a pause): balance=srv's failback=retire acts as failback=keep on this data plane.
   */
  retireConnectionsTo(): number {
    return 0;
  }

  /** A new HAProxy worker (reload, restart): its counters start from zero. */
  newGeneration(): void {
    this.seen = new Map();
  }

  /** Sum of every counter delta taken (tells a reading that found something new). */
  private movement = 0;

  private delta(source: string, counter: string, value: number): number {
    let s = this.seen.get(source);
    if (!s) this.seen.set(source, (s = {}));
    const before = s[counter] ?? 0;
    s[counter] = value;
    const d = value >= before ? value - before : value;
    this.movement += d;
    return d;
  }

  private totalsOf(label: string): EndpointTotals {
    let t = this.totals.get(label);
    if (!t) this.totals.set(label, (t = { connections: 0, failures: 0, bytesIn: 0, bytesOut: 0, active: 0 }));
    return t;
  }

  /**
   * Takes in `show stat` rows of this frontend, its backend and its servers: counters become
   * deltas (added to the totals and the live Endpoint objects), failed connects become passive
   * evidence for the cluster (reported only for an endpoint with no successful connect in the
   * same reading: HAProxy does not say in which order they came), events carry the rest.
   * True when any counter moved.
   */
  absorb(rows: readonly StatRow[]): boolean {
    const before = this.movement;
    const fe = rows.find((r) => r.pxname === this.frontendName && r.svname === 'FRONTEND');
    const mine = rows.filter((r) => r.pxname === this.backendName);
    const be = mine.find((r) => r.svname === 'BACKEND');
    if (fe) {
      this.accepted += this.delta('FRONTEND', 'stot', num(fe.stot));
      const refusedConn = this.delta('FRONTEND', 'dcon', num(fe.dcon));
      const refusedPending = this.delta('FRONTEND', 'dreq', num(fe.dreq));
      this.count('max-connections', refusedConn);
      this.count('max-pending', refusedPending);
    }
    let serverFailures = 0;
    for (const t of this.totals.values()) t.active = 0;
    const bySlot = new Map(this.slots.map((s) => [s.name, s]));
    for (const row of mine) {
      const slot = bySlot.get(row.svname ?? '');
      if (!slot) continue;
      const source = `server:${slot.name}`;
      const sessions = this.delta(source, 'stot', num(row.stot));
      const bin = this.delta(source, 'bin', num(row.bin));
      const bout = this.delta(source, 'bout', num(row.bout));
      const econ = this.delta(source, 'econ', num(row.econ));
      const failedAttempts = econ + this.delta(source, 'wretr', num(row.wretr)) + this.delta(source, 'wredis', num(row.wredis));
      const attempts = this.delta(source, 'connect', num(row.connect));
      serverFailures += econ;
      if (slot.endpoint === undefined) continue;
      const label = this.labels.get(slot.endpoint) ?? slot.endpoint;
      const t = this.totalsOf(label);
      t.connections += sessions;
      t.bytesOut += bin;
      t.bytesIn += bout;
      t.failures += failedAttempts;
      t.active += num(row.scur);
      const ep = this.cluster.get(slot.endpoint);
      if (ep) {
        ep.connections += sessions;
        ep.bytesOut += bin;
        ep.bytesIn += bout;
        ep.failures += failedAttempts;
        if (failedAttempts > 0 && attempts <= failedAttempts) {
          const report = Math.min(failedAttempts, this.cluster.outlier?.consecutiveFailures ?? 1);
          for (let i = 0; i < report; i++) this.cluster.reportConnectFailure(ep, HAPROXY_CONNECT_FAILED);
          // reportConnectFailure counted them once more
          ep.failures -= report;
        } else if (attempts > failedAttempts) {
          this.cluster.reportConnectSuccess(ep);
        }
      }
      if (failedAttempts > 0) this.emit('connect-failed', label, failedAttempts);
    }
    for (const ep of this.cluster.endpoints()) ep.active = this.totals.get(ep.label)?.active ?? 0;
    if (be) {
      this.queued = num(be.qcur);
      const redispatched = this.delta('BACKEND', 'wredis', num(be.wredis));
      if (redispatched > 0) {
        this.retries += redispatched;
        this.emit('failover', redispatched);
      }
      // The backend's failed connects are its servers' (every attempt failed) plus those that
      // found no server at all.
      const failedClients = this.delta('BACKEND', 'econ', num(be.econ));
      const noEndpoint = Math.max(0, failedClients - serverFailures);
      this.fail('all-failed', failedClients - noEndpoint);
      this.fail('no-endpoint', noEndpoint);
    }
    return this.movement !== before;
  }

  /** Sessions open per slot in `rows` (a `show stat` of the backend's servers). */
  sessionsBySlot(rows: readonly StatRow[]): Map<string, number> {
    const out = new Map<string, number>();
    for (const r of rows) if (r.pxname === this.backendName && r.svname !== 'BACKEND') out.set(r.svname ?? '', num(r.scur));
    return out;
  }

  private count(limit: LimitName, n: number): void {
    if (n <= 0) return;
    this.refused[limit] += n;
    this.emit('client-refused', limit, n);
  }

  private fail(reason: NoEndpointReason, n: number): void {
    if (n <= 0) return;
    this.failed[reason] += n;
    this.emit('client-closed-no-endpoint', reason, n);
  }
}
