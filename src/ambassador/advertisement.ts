import { EventEmitter } from 'node:events';
import net, { isIP } from 'node:net';
import { Cluster } from '../cluster/cluster.js';
import { formatAddressPort, isLinkLocal6, isLoopback } from '../base/address.js';
import { RELAY_TO_TXT } from './endpoint-policy.js';
import { HealthChecker, type LastCheck } from '../cluster/health-checker.js';
import { LIVENESS_TXT_KEY } from '../cluster/liveness-wire.js';
import type { AdvertiseSpec } from '../config/specs.js';
import type { MdnsEngine } from '../mdns/engine.js';
import type { Registration } from '../mdns/publish/owned.js';
import { RelayListener } from '../proxy/relay.js';
import { TLS_TXT_KEY } from '../proxy/tls-policy.js';
import type { TlsMaterial } from '../proxy/tls.js';
import type { Logger } from '../logging/logger.js';
import { BurstLog } from '../logging/burst.js';
import { RepeatFilter, stackOf } from '../logging/repeats.js';

export interface AdvertisementOptions {
  healthIntervalMs: number;
  healthTimeoutMs: number;
  connectTimeoutMs: number;
  /** Mutual TLS: always relay, accept only clients with a CA-signed certificate, announce TXT tls=1. */
  tls?: TlsMaterial;
  /** UDP port of this ambassador's host liveness answerer, announced in TXT (hostprobe=PORT). */
  probePort?: number;
  /** Circuit breaker of the relay, when there is one: clients open at once. Default: none. */
  maxConnections?: number;
  /**
   * Why announcing the target would make a loop (it is a listener of this process, or another
   * ambassador's --connect listener), or undefined. Asked before every announcement and on
   * recheckLoop().
   */
  loopCheck?: () => Promise<string | undefined>;
  /**
   * Without mDNS (--no-mdns): the addresses peers will dial (for the relay decision); the
   * advertisement is then 'announced' as soon as its target passes, for the registry to carry.
   */
  addresses?: () => string[];
  /** Without mDNS: the host label its instance name carries (NAME@LABEL), as registered. */
  hostLabel?: () => string;
}

/**
 * After the goodbyes, a relay keeps accepting this long (bounded by the drain time) before it
 * closes its listener: a peer that picked this relay just before the goodbye reached it is still
 * served, instead of being reset (closing a listening socket resets the connections queued in
 * its backlog, which the peer already counts as established).
 */
export const GOODBYE_LINGER_MS = 300;

export type AdvertisementState = 'waiting-for-target' | 'probing' | 'announced' | 'withdrawn' | 'stopped';

/** Why a target check failed, in words: a name that does not resolve is not a port that is closed. */
export function whyNotAccepting(code: string | undefined): string {
  if (code === 'ENOTFOUND') return `does not resolve: no such host name (${code})`;
  if (code === 'EAI_AGAIN') return `does not resolve: DNS lookup failed, retrying (${code})`;
  if (code === 'ECONNREFUSED') return `not accepting: connection refused (${code})`;
  return `not accepting (${code})`;
}

/** Whether something accepts TCP connections at host:port right now. */
function accepts(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * `--advertise NAME=[HOST:]PORT`: announces the service only while its target accepts TCP
 * connections (health-gated), withdraws with goodbyes when it stops, and announces again when
 * it is back. When peers could not reach the target directly (it listens only on loopback, or
 * lives on another host/container), a relay listener on this host is announced instead.
 * Events: 'state' (state, reason).
 */
export class Advertisement extends EventEmitter {
  state: AdvertisementState = 'waiting-for-target';
  reason = 'first health check pending';
  /** Epoch ms when the state (or its reason) last changed. */
  stateSince = Date.now();
  /** The port peers are told about (the target's, or the relay's). */
  announcedPort?: number;
  relay?: RelayListener;
  registration?: Registration;
  private readonly target: { host: string; port: number };
  /** What a passing check of the target says: it accepts connections, or (check=redis) it answers PING. */
  private get accepting(): string {
    return this.spec.check === 'redis' ? 'answers PING' : 'accepts connections';
  }
  private readonly targetCluster: Cluster;
  readonly checker: HealthChecker;
  private stopped = false;
  /** Resolves when the advertisement stops (ends a wait for the network). */
  private readonly stoppedSignal: Promise<void>;
  private markStopped!: () => void;
  private goodbyeAt?: number;
  private deciding?: Promise<void>;
  /** The target accepted a first health check (from then on the advertisement decides). */
  private targetSeen = false;
  /** Why announcing would make a loop (not announced meanwhile), undefined when it would not. */
  private loop: string | undefined;
  /** Clients the relay refused (max-connections): one line when a burst starts, one when it ends. */
  private readonly relayRefusals: BurstLog;
  private readonly repeats = new RepeatFilter();

  /** Without mDNS: announced (for the registry) or not. */
  private published = false;

  constructor(
    readonly spec: AdvertiseSpec,
    private readonly engine: MdnsEngine | undefined,
    private readonly log: Logger,
    private readonly opts: AdvertisementOptions,
  ) {
    super();
    this.stoppedSignal = new Promise((r) => (this.markStopped = r));
    this.target = { host: spec.targetHost ?? '127.0.0.1', port: spec.port };
    // The target as a one-endpoint cluster: the same health checker the connect side uses.
    this.targetCluster = new Cluster(`advertise:${spec.name}`, { outlier: false });
    this.targetCluster.setEndpoints('static', [{
      id: 'target', source: 'static', host: this.target.host, port: this.target.port,
      priority: 0, weight: 0, txt: {}, label: `${this.target.host}:${this.target.port}`,
    }]);
    this.checker = new HealthChecker(this.targetCluster, {
      intervalMs: opts.healthIntervalMs,
      timeoutMs: opts.healthTimeoutMs,
      kind: spec.check,
    });
    this.relayRefusals = new BurstLog({
      onStart: () => this.log.warn({ service: spec.name, relay: this.relay?.address()?.port, maxConnections: opts.maxConnections },
        `relay refusing clients: max-connections reached (${opts.maxConnections} open); further refusals are counted and summed up when it is over`),
      onSummary: (s, ended) => this.log.warn({ service: spec.name, relay: this.relay?.address()?.port, refused: s.total, durationMs: s.durationMs },
        ended ? `relay stopped refusing clients: ${s.total} refused in ${s.durationMs} ms` : `relay still refusing clients: ${s.total} refused so far`),
    });
  }

  /** The relay is refusing clients at its max-connections right now. */
  get relayRefusing(): boolean {
    return this.relayRefusals.inBurst;
  }

  /**
   * Whether peers may use the announced port now: announced (or being announced) and the target
   * passes its check. Host probe replies carry this (the source check).
   */
  get serving(): boolean {
    return !this.stopped && (this.state === 'probing' || this.state === 'announced');
  }

  /** The target's check as it stands: its verdict and the last finished check. */
  targetCheck(): { healthy: boolean; last: LastCheck | undefined } {
    const ep = this.targetCluster.endpoints()[0];
    return { healthy: ep?.checkHealthy ?? false, last: ep && this.checker.lastCheck(ep) };
  }

  get instance(): string | undefined {
    return this.registration?.instance;
  }

  /** The instance name it is (or will be) announced under over mDNS, before any conflict rename. */
  get plannedInstance(): string {
    return this.instanceAs(this.engine ? this.engine.defaultInstance(this.spec.name) : `${this.spec.name}@${this.opts.hostLabel?.() ?? 'localhost'}`);
  }

  /** Its instance name on host `label` (a registry's): as plannedInstance. */
  instanceOn(label: string): string {
    return this.instanceAs(`${this.spec.name}@${label}`);
  }

  /**
   * The spec's instance, or the default NAME@HOST — NAME@HOST:PORT when this process advertises
   * NAME more than once (one name each, or the second replica is hidden behind the first).
   */
  private instanceAs(defaultName: string): string {
    const s = this.spec;
    if (s.instance !== undefined) return s.instance;
    return s.instanceByPort ? `${defaultName}:${s.port}` : defaultName;
  }

  private setState(state: AdvertisementState, reason: string): void {
    if (this.state === state && this.reason === reason) return;
    this.state = state;
    this.reason = reason;
    this.stateSince = Date.now();
    this.emit('state', state, reason);
  }

  /**
   * Binds what is certain to be needed before anything is announced, so a port in use stops the
   * start-up: the relay, when mutual TLS (peers must get TLS) or a fixed relay-port asks for one.
   */
  async bind(): Promise<void> {
    if (this.opts.tls || this.spec.relayPort !== 0) await this.startRelay();
  }

  async start(): Promise<void> {
    this.checker.on('check', (_ep, ok, error) => {
      if (ok && !this.targetSeen) {
        this.targetSeen = true;
        this.deciding = this.publish().catch((err) => this.log.error({ err: String(err), service: this.spec.name }, 'cannot advertise'));
      } else if (!ok && !this.targetSeen) {
        // (EBADREPLY / ETIMEDOUT with check=redis: it accepts, but does not answer PING)
        const why = this.spec.check === 'redis' && (error === 'EBADREPLY' || error === 'ETIMEDOUT') ? `not answering PING (${error})` : whyNotAccepting(error);
        this.setState('waiting-for-target', `target ${this.target.host}:${this.target.port} ${why}${this.lanHint ?? ''}`);
        if (error === 'ECONNREFUSED' && this.spec.targetHost === undefined && this.lanHint === undefined) void this.lookOnLan(why);
      }
    });
    this.targetCluster.on('endpoint-health', (_ep, healthy) => {
      if (!this.targetSeen || this.stopped) return;
      if (healthy) this.republish();
      else this.withdraw(`target ${this.target.host}:${this.target.port} ${this.spec.check === 'redis' ? 'stopped answering PING' : 'stopped accepting connections'}`);
    });
    this.checker.start();
  }

  /**
   * NAME=PORT means 127.0.0.1:PORT; a service bound to the LAN address only (a common Redis and
   * PostgreSQL setup) refuses there. Looked for once on this host's other addresses, to say what
   * to write rather than guess: announcing a different address than the one written would
   * surprise whoever reads the command line.
   */
  private lanHint?: string;
  private async lookOnLan(why: string): Promise<void> {
    this.lanHint = '';
    const ours = (this.engine ? this.engine.addresses() : this.opts.addresses?.() ?? []).filter((a) => !isLoopback(a) && !isLinkLocal6(a));
    for (const addr of ours) {
      if (this.stopped || this.targetSeen) return;
      if (!(await accepts(addr, this.target.port, this.opts.healthTimeoutMs))) continue;
      const at = formatAddressPort(addr, this.target.port);
      this.lanHint = `; it listens on ${at}: write --advertise ${this.spec.name}=${at}`;
      if (!this.targetSeen && !this.stopped) this.setState('waiting-for-target', `target ${this.target.host}:${this.target.port} ${why}${this.lanHint}`);
      return;
    }
  }

  /** Peers reach the target directly only if it is this host and listens on our mDNS addresses. */
  private async needsRelay(): Promise<boolean> {
    if (this.relay) return true; // bound at start: mutual TLS or a fixed relay-port
    if (this.engine && this.engine.addresses().length === 0) {
      // Started before the network: which addresses peers will use is known once it is up.
      this.setState('probing', 'waiting for a network interface');
      await Promise.race([this.engine.waitForNetwork(), this.stoppedSignal]);
    }
    const ours = this.engine ? this.engine.addresses() : this.opts.addresses?.() ?? [];
    if (this.spec.targetHost !== undefined) return !ours.includes(this.spec.targetHost);
    const addr = ours.find((a) => !a.startsWith('127.'));
    if (!addr) return false; // loopback-only mesh: 127.0.0.1 is what peers use anyway
    return !(await accepts(addr, this.target.port, this.opts.healthTimeoutMs));
  }

  private async startRelay(): Promise<void> {
    const relay = new RelayListener({ target: this.target, port: this.spec.relayPort, connectTimeoutMs: this.opts.connectTimeoutMs,
      createServer: this.opts.tls?.createServer, maxConnections: this.opts.maxConnections });
    await relay.listen();
    relay.on('client-refused', (limit) => this.relayRefusals.hit(limit));
    // A bug: its stack once (per 10 s), the client closed, the process alive.
    relay.on('internal-error', (_c, err) => {
      const stack = stackOf(err);
      this.repeats.log(stack, (repeated) =>
        this.log.error({ service: this.spec.name, relay: relay.address()?.port, err: stack, repeated }, 'internal error: a relay client was closed (a bug; please report this stack)'));
    });
    this.relay = relay;
  }

  /**
   * Asks again whether announcing the target would make a loop (what is known about listeners
   * changed): withdraws an announcement that would, announces one held back that no longer would.
   */
  async recheckLoop(): Promise<void> {
    await this.deciding;
    if (this.stopped || !this.targetSeen || !this.opts.loopCheck) return;
    const why = await this.opts.loopCheck();
    if (this.stopped || why === this.loop) return;
    if (why !== undefined) {
      this.holdForLoop(why);
    } else {
      this.loop = undefined;
      // Checking the target again (held while it was a loop), from the state it was last seen in.
      this.checker.start();
      if (!this.targetCluster.endpoints()[0]?.checkHealthy) {
        this.setState('withdrawn', `target ${this.target.host}:${this.target.port} stopped accepting connections`);
      } else if (!this.registration && !this.published) {
        this.deciding = this.publish().catch((err) => this.log.error({ err: String(err), service: this.spec.name }, 'cannot advertise'));
      } else {
        this.setState(this.engine ? 'probing' : 'announced', 'the target is no longer a loop');
        if (this.registration) this.engine?.republish(this.registration);
      }
    }
  }

  /**
   * Announcing the target would make a loop: withdrawn (or never announced), and its health
   * checks held too — the target is another ambassador's listener, or ours, and every check would
   * be one more client there waiting for an endpoint.
   */
  private holdForLoop(why: string): void {
    this.loop = why;
    this.checker.stop();
    if (this.registration && this.state !== 'withdrawn') this.engine?.unpublish(this.registration, why);
    this.setState('withdrawn', why);
  }

  private async publish(): Promise<void> {
    const loop = await this.opts.loopCheck?.();
    if (this.stopped) return;
    if (loop !== undefined) {
      this.holdForLoop(loop);
      return;
    }
    const relay = await this.needsRelay();
    if (this.stopped) return;
    if (relay) {
      if (!this.relay) await this.startRelay();
      const port = this.relay!.address()!.port;
      this.announcedPort = port;
      this.log.info({ service: this.spec.name, relay: port, target: `${this.target.host}:${this.target.port}`, tls: !!this.opts.tls },
        this.opts.tls ? 'mutual TLS: relaying (peers need a certificate signed by the CA)'
          : this.spec.relayPort !== 0 ? 'relaying on the fixed relay-port' : 'target not reachable from peers directly: relaying');
    } else {
      this.announcedPort = this.target.port;
    }
    if (this.stopped) return;
    if (!this.engine) {
      this.published = true;
      this.setState('announced', `target ${this.accepting}`);
      return;
    }
    const reg = this.engine.publish({
      name: this.spec.name,
      port: this.announcedPort,
      instance: this.plannedInstance,
      txt: this.txt(),
      priority: this.spec.priority,
      weight: this.spec.weight,
      subtypes: this.spec.subtypes,
    });
    this.registration = reg;
    this.setState('probing', `target ${this.accepting}`);
    reg.on('state', (s: string, why: string) => {
      if (s === 'announced') this.setState('announced', why);
      // Already probing (we just re-published): the registration saying so again is one line too many.
      else if (s === 'probing' && this.state !== 'probing') this.setState('probing', why);
    });
    reg.on('renamed', (from: string, to: string, why: string) => {
      this.log.warn({ service: this.spec.name, from, to, why }, 'name conflict: renamed instance');
    });
  }

  /**
   * What the announcement's TXT carries (the registry carries the same): the spec's keys, `tls`,
   * `hostprobe`, and `relay-to` — where the relay forwards to, so that a connector whose listener
   * that is refuses this endpoint from the first announcement on (a name would mean nothing to
   * it: left out).
   */
  txt(): Record<string, string> {
    const txt: Record<string, string> = { ...this.spec.txt };
    if (this.opts.tls) txt[TLS_TXT_KEY] = '1';
    if (this.opts.probePort) txt[LIVENESS_TXT_KEY] = String(this.opts.probePort);
    if (this.relay && isIP(this.target.host) !== 0) txt[RELAY_TO_TXT] = formatAddressPort(this.target.host, this.target.port);
    return txt;
  }

  private withdraw(reason: string): void {
    if ((!this.registration && !this.published) || this.state === 'withdrawn') return;
    if (this.registration) this.engine?.unpublish(this.registration, reason);
    this.setState('withdrawn', reason);
  }

  private republish(): void {
    if ((!this.registration && !this.published) || this.state !== 'withdrawn' || this.loop !== undefined) return;
    if (!this.registration) {
      this.setState('announced', `target ${this.accepting} again`);
      return;
    }
    this.setState('probing', `target ${this.accepting} again`); // before the registration says 'probing' too
    this.engine?.republish(this.registration);
  }

  /** Goodbyes (the caller stops the engine after all of them went out). */
  sayGoodbye(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.markStopped();
    this.checker.stop();
    if ((this.registration || this.published) && this.state !== 'withdrawn') {
      if (this.registration) this.engine?.unpublish(this.registration, 'shutdown');
      this.goodbyeAt = Date.now();
    }
  }

  async stop(drainMs: number): Promise<void> {
    this.sayGoodbye();
    await this.deciding;
    if (this.relay && this.goodbyeAt !== undefined) {
      // Goodbyes first, then stop accepting (see GOODBYE_LINGER_MS).
      const wait = this.goodbyeAt + Math.min(GOODBYE_LINGER_MS, drainMs) - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    await this.relay?.close({ drainMs });
    this.relayRefusals.stop();
    this.targetCluster.close();
    this.setState('stopped', 'shutdown');
  }
}
