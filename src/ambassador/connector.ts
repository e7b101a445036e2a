import { EventEmitter } from 'node:events';
import { formatAddressPort } from '../base/address.js';
import { Cluster } from '../cluster/cluster.js';
import type { Endpoint } from '../cluster/endpoint.js';
import { HealthChecker } from '../cluster/health-checker.js';
import { livenessPortOf } from '../cluster/liveness-wire.js';
import type { HostLiveness } from '../cluster/host-liveness.js';
import type { CredentialExposure } from '../config/credential-exposure.js';
import type { ConnectSpec } from '../config/specs.js';
import type { DiscoverySource, EndpointSpec } from '../discovery/source.js';
import { ConnectListener, type CreateConnection, type Handshake } from '../proxy/listener.js';
import type { ProtocolHandshake } from '../proxy/handshakes/index.js';
import type { Logger } from '../logging/logger.js';
import { BurstLog } from '../logging/burst.js';
import { RepeatFilter, stackOf } from '../logging/repeats.js';
import type { ListenerLimits } from '../proxy/limits.js';

export interface ConnectorOptions {
  healthIntervalMs: number;
  healthTimeoutMs: number;
  connectTimeoutMs: number;
  /** A connect still pending after this long is raced by another attempt (default: the listener's). */
  raceDelayMs?: number;
  /**
   * Host liveness of peer ambassadors (shared by every connector of the process): endpoints whose
   * advertiser runs an ambassador are judged by its probes and its own check of the service,
   * not by connections of ours to the service.
   */
  liveness?: HostLiveness;
  /** Close a connection idle this long (ms); 0/undefined = never. */
  idleTimeoutMs?: number;
  noEndpointWaitMs: number;
  keepConnections: boolean;
  handshake?: Handshake;
  createConnection?: CreateConnection;
  /** Protocol module (credentials injection, errors in the client's protocol); started and stopped here. */
  protocol?: ProtocolHandshake;
  /** To whom injected credentials may go, and the warnings that go with it (for /peers). */
  credentials?: CredentialExposure;
  /** Circuit breakers of the listener (resolved: the spec's, else the defaults). */
  limits?: ListenerLimits;
  /** The instance as it may be used, or why it must never be an endpoint (see endpoint-policy.ts). */
  screen?: (spec: EndpointSpec) => EndpointSpec | string;
  /** The backend an instance stands for (one endpoint per backend; see ClusterOptions.backend). */
  backend?: (spec: EndpointSpec) => string;
}

/**
 * `--connect NAME=[BIND:]PORT`: discovery sources → cluster (+ active health checks) → listener.
 * Data flows one way; the listener never sees where endpoints come from.
 */
export class Connector extends EventEmitter {
  readonly cluster: Cluster;
  readonly listener: ConnectListener;
  readonly checker: HealthChecker;
  readonly liveness: HostLiveness | undefined;
  readonly protocol: ProtocolHandshake | undefined;
  readonly credentials: CredentialExposure | undefined;
  private stopping = false;
  /** Lines that may repeat for every client (handshake failures, internal errors), folded per 10 s. */
  private readonly repeats = new RepeatFilter();
  /** Clients refused by the circuit breakers: one line when a burst starts, one when it ends. */
  readonly refusals: BurstLog;

  constructor(
    readonly spec: ConnectSpec,
    readonly sources: DiscoverySource[],
    private readonly log: Logger,
    opts: ConnectorOptions,
  ) {
    super();
    this.cluster = new Cluster(spec.name, { where: spec.where, screen: opts.screen, backend: opts.backend });
    this.liveness = opts.liveness;
    this.checker = new HealthChecker(this.cluster, {
      intervalMs: opts.healthIntervalMs,
      timeoutMs: opts.healthTimeoutMs,
      kind: spec.check === 'none' ? 'tcp' : spec.check,
      // Judged by its ambassador — unless that ambassador is gone while its host lives.
      skip: (ep) => this.probePort(ep) !== undefined && !this.liveness!.isOrphaned(ep),
    });
    this.listener = new ConnectListener({
      cluster: this.cluster,
      host: spec.bind,
      alsoHost: spec.bothLoopbacks ? '::1' : undefined,
      port: spec.port,
      balancer: spec.balance,
      connectTimeoutMs: opts.connectTimeoutMs,
      raceDelayMs: opts.raceDelayMs,
      idleTimeoutMs: opts.idleTimeoutMs,
      noEndpointWaitMs: opts.noEndpointWaitMs,
      keepConnectionsOnRemoval: opts.keepConnections,
      handshake: opts.handshake ?? opts.protocol?.handshake,
      greet: opts.protocol?.greet,
      errorReply: opts.protocol ? (m, code) => opts.protocol!.errorReply(m, code) : undefined,
      createConnection: opts.createConnection,
      limits: opts.limits,
    });
    const limits = this.listener.limits;
    const listen = `${spec.bind}:${spec.port}`;
    this.refusals = new BurstLog({
      onStart: (limit) => this.log.warn({ service: spec.name, listen, limit, ...limits },
        `refusing clients: ${limit} reached (${describeLimit(limit, limits)}); further refusals are counted and summed up when it is over`),
      onSummary: (s, ended) => this.log.warn({ service: spec.name, listen, refused: s.total, byLimit: s.byKind, durationMs: s.durationMs },
        ended ? `stopped refusing clients: ${s.total} refused in ${s.durationMs} ms` : `still refusing clients: ${s.total} refused so far`),
    });
    this.listener.on('client-refused', (limit) => this.refusals.hit(limit));
    this.protocol = opts.protocol;
    this.credentials = opts.credentials;
    this.wireLogs();
    if (spec.balance === 'srv' && spec.failback === 'retire') this.cluster.on('endpoint-up', (ep) => this.failBack(ep));
  }

  /** Host probes took an endpoint over or let it go (its ambassador went, or came back): our own checks follow. */
  private readonly onHandover = (ep: Endpoint, cluster: Cluster): void => {
    if (cluster === this.cluster) void this.checker.check(ep);
  };

  /** The host probe port of `ep`'s advertiser, when a peer ambassador vouches for it. */
  probePort(ep: Endpoint): number | undefined {
    // Announced by an ambassador (over mDNS or in a registry): it answers host liveness checks.
    return this.liveness && (ep.source === 'mdns' || ep.source === 'registry') ? livenessPortOf(ep.txt) : undefined;
  }

  private wireLogs(): void {
    const svc = this.spec.name;
    // Every line names the listener: two --connect for one service are two clusters.
    const listen = `${this.spec.bind}:${this.spec.port}`;
    const where = (ep: { label: string; host: string; port: number; source: string }) =>
      ({ service: svc, listen, endpoint: ep.label, address: formatAddressPort(ep.host, ep.port), source: ep.source });
    this.cluster.on('endpoint-up', (ep) => this.log.info(where(ep), 'endpoint up'));
    this.cluster.on('endpoint-down', (ep, reason) => {
      // Our own shutdown empties the cluster: that is no news about the endpoint.
      if (!this.stopping) this.log.warn({ ...where(ep), reason }, 'endpoint down');
    });
    this.cluster.on('endpoint-filtered', (spec, why) =>
      this.log.info({ ...where(spec), why }, 'instance ignored: it does not match the where. filter'));
    this.cluster.on('endpoint-refused', (spec, why) => this.log.warn({ ...where(spec), why }, 'endpoint refused'));
    this.cluster.on('endpoint-duplicate', (spec, why) => this.log.info({ ...where(spec), why }, 'instance ignored: another instance announces the same backend'));
    this.cluster.on('endpoint-updated', (ep, moved) => {
      if (moved) this.log.info(where(ep), 'endpoint moved');
    });
    this.listener.on('connect-failed', (_c, ep, code) => this.log.warn({ ...where(ep), code }, 'connect failed'));
    this.listener.on('failover', (_c, from, to) => this.log.warn({ service: svc, listen, from: from.label, to: to.label }, 'connect failed, retrying on next endpoint'));
    this.listener.on('client-closed-no-endpoint', (_c, reason, attempts) => {
      if (reason === 'rejected') {
        this.log.warn({ service: svc, listen, reason, attempts },
          'client closed: the upstream refused the handshake (credentials or database, see the line before); other endpoints not tried');
      } else if (reason === 'all-failed') {
        this.log.warn({ service: svc, listen, reason, attempts }, 'client closed: every endpoint tried failed');
      } else {
        const filteredOut = this.cluster.filteredOut().length;
        this.log.warn({ service: svc, listen, reason, attempts, ...(filteredOut ? { filteredOut } : {}) }, filteredOut
          ? `client closed: no endpoint; ${filteredOut} announced instance(s) do not match the where. filter (see /peers)`
          : this.cluster.size === 0 ? `client closed: ${this.nobody()}`
            : 'client closed: no endpoint could take it');
      }
    });
    this.listener.on('listener-error', (err) => this.log.error({ service: svc, listen, err: err.message }, 'listener error'));
    this.wireDebugLogs(where);
    // A bug: its stack once (per 10 s), the client closed, the process alive.
    this.listener.on('internal-error', (_c, err) => {
      const stack = stackOf(err);
      this.repeats.log(`internal|${stack}`, (repeated) =>
        this.log.error({ service: svc, listen, err: stack, repeated }, 'internal error: a client was closed (a bug; please report this stack)'));
    });
    const p = this.protocol;
    if (p) {
      // Messages are secret-free by contract; repeats per endpoint and code are folded (10 s).
      p.on('handshake-failed', (ep, code: string, message: string) => this.repeats.log(`${ep.key}|${code}`, (repeated) =>
        this.log.warn({ service: svc, listen, protocol: p.name, endpoint: ep.label, address: ep.address, code, repeated }, message)));
      p.on('credentials-loaded', (changed: boolean) => {
        if (changed) this.log.info({ service: svc, listen, protocol: p.name }, 'credentials file changed: new connections use the new credentials');
      });
      p.on('credentials-error', (message: string) => this.log.warn({ service: svc, listen, protocol: p.name }, message));
      // A client the greeting refused (bad startup packet, unsupported request): folded per code.
      p.on('greeting-refused', (code: string, message: string) => this.repeats.log(`greeting|${code}`, (repeated) =>
        this.log.info({ service: svc, listen, protocol: p.name, code, repeated }, message)));
    }
  }

  /**
   * Primary/standby (balance=srv): the balancer sends new clients to `up` once it is back, but
   * pooled clients would stay on the standby for ever. Their connections to worse-priority
   * endpoints close at their first pause (never mid-request: no upper bound), so the pool
   * reconnects to the primary.
   */
  private failBack(up: Endpoint): void {
    let n = 0;
    for (const ep of this.cluster.endpoints()) {
      if (ep.priority > up.priority) n += this.listener.retireConnectionsTo(ep, 'EFAILBACK', false, Infinity);
    }
    if (n > 0) {
      this.log.info({ service: this.spec.name, listen: `${this.spec.bind}:${this.spec.port}`, endpoint: up.label, priority: up.priority, connections: n },
        'better-priority endpoint back: connections to lower-priority endpoints close at their first pause');
    }
  }

  /**
   * --log-level debug: what discovery saw, which endpoint each client got and after how many
   * attempts, raced connects, panic picks; trace: every health check and every connection's end.
   * Subscribed only at those levels: at info nothing listens, and nothing is built per connection.
   */
  private wireDebugLogs(where: (ep: { label: string; host: string; port: number; source: string }) => Record<string, unknown>): void {
    const log = this.log;
    if (!log.isLevelEnabled('debug')) return;
    const svc = this.spec.name;
    const listen = `${this.spec.bind}:${this.spec.port}`;
    for (const s of this.sources) s.on('debug', (msg: string, fields: object) => log.debug({ service: svc, listen, source: s.kind, ...fields }, msg));
    this.cluster.on('endpoint-added', (ep) => log.debug({ ...where(ep), addresses: ep.addresses, priority: ep.priority, weight: ep.weight }, 'endpoint added'));
    this.cluster.on('endpoint-removed', (ep) => log.debug(where(ep), 'endpoint removed'));
    this.cluster.on('panic', (inPanic) => log.debug({ service: svc, listen, inPanic }, inPanic ? 'panic mode: every endpoint is down on evidence, trying them anyway' : 'panic mode over'));
    this.listener.on('upstream-connected', (c, ep, attempts) =>
      log.debug({ ...where(ep), client: c.remote, attempts, ms: Date.now() - c.startedAt }, 'client connected to endpoint'));
    this.listener.on('connect-raced', (c, ep) => log.debug({ ...where(ep), client: c.remote }, 'connect still pending after the race delay: racing another attempt'));
    this.listener.on('panic-attempt', (ep) => log.debug(where(ep), 'panic mode: trying an endpoint judged down'));
    if (!log.isLevelEnabled('trace')) return;
    this.checker.on('check', (ep, ok, code) => log.trace({ ...where(ep), ok, code }, 'health check'));
    this.listener.on('connection', (c) => log.trace({ service: svc, listen, client: c.remote }, 'client accepted'));
    this.listener.on('connection-closed', (c, result) => log.trace({
      service: svc, listen, client: c.remote, endpoint: c.endpoint?.label, ms: Date.now() - c.startedAt,
      ...(result ? { bytesToEndpoint: result.upstreamBytesWritten, bytesFromEndpoint: result.upstreamBytesRead, error: result.error, errorSide: result.errorSide } : { upstream: false }),
    }, 'connection closed'));
  }

  /** Why there is no endpoint at all, in the words of where they come from. */
  private nobody(): string {
    const kinds = this.sources.map((s) => s.kind);
    const wait = `waited ${this.listener.noEndpointWaitMs} ms`;
    if (kinds.includes('mdns')) {
      return `nobody announces _${this.spec.name}._tcp on the network (${wait}; 'ambassador browse' lists what is announced)`;
    }
    return `no endpoint for '${this.spec.name}' from ${kinds.map((k) => `--${k}`).join(' or ')} (${wait})`;
  }

  /** Loads credentials and binds the listener: what can refuse the configuration. */
  async bind(): Promise<void> {
    await this.protocol?.start();
    const addr = await this.listener.listen();
    const also = this.listener.addresses().slice(1).map((a) => `[${a.address}]:${a.port}`);
    this.log.info({ service: this.spec.name, listen: `${addr.address}:${addr.port}`, ...(also.length ? { alsoOn: also } : {}), balance: this.spec.balance,
      sources: this.sources.map((s) => s.kind), where: this.spec.where }, 'listening');
  }

  /** Discovery and health checks (after bind()). */
  async start(): Promise<void> {
    for (const s of this.sources) {
      s.on('endpoints', (specs: EndpointSpec[]) => this.cluster.setEndpoints(s.kind, specs));
      s.on('resolve-error', (err: Error) => this.log.warn({ service: this.spec.name, listen: `${this.spec.bind}:${this.spec.port}`, source: s.kind, err: err.message }, 'discovery lookup failed; keeping last endpoints'));
    }
    this.liveness?.watch(this.cluster, (ep) => this.probePort(ep));
    this.liveness?.on('handover', this.onHandover);
    for (const s of this.sources) await s.start();
    if (this.spec.check !== 'none') this.checker.start();
  }

  async stop(drainMs: number): Promise<void> {
    this.stopping = true;
    await this.listener.close({ drainMs });
    this.refusals.stop();
    this.checker.stop();
    this.liveness?.off('handover', this.onHandover);
    this.liveness?.unwatch(this.cluster);
    this.protocol?.stop();
    for (const s of this.sources) await s.stop();
    this.cluster.close();
  }
}

function describeLimit(limit: string, l: ListenerLimits): string {
  if (limit === 'max-connections') return `${l.maxConnections} clients open`;
  if (limit === 'max-pending') return `${l.maxPending} clients waiting for an endpoint`;
  return `every endpoint has ${l.maxPerEndpoint} clients`;
}
