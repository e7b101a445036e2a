import type { AdminServer } from './admin/server.js';
import { Advertisement } from './ambassador/advertisement.js';
import { Connector } from './ambassador/connector.js';
import { StrandedWatch } from './ambassador/stranded.js';
import type { Config } from './config/config.js';
import { credentialExposure } from './config/credential-exposure.js';
import { type ConnectSpec, ConfigError } from './config/specs.js';
import { DnsSrvSource } from './discovery/dns-srv.js';
import { MdnsSource } from './discovery/mdns.js';
import type { DiscoverySource } from './discovery/source.js';
import { StaticSource } from './discovery/static.js';
import type { Logger } from './logging/logger.js';
import { type InterfaceChange, MdnsEngine, type NetworkState } from './mdns/engine.js';
import { InterfaceError, InterfaceSelection } from './mdns/interfaces.js';
import { anyAnnouncer, provenIdentity } from './proxy/handshakes/credential-gate.js';
import { createProtocol } from './proxy/handshakes/index.js';
import { defaultLimits, fileDescriptorLimit, FD_RESERVE, type ListenerLimits } from './proxy/limits.js';
import { plaintextConnection } from './proxy/tls-policy.js';
import type { TlsMaterial } from './proxy/tls.js';

/**
 * Wires advertisements and connections together. Start: mDNS engine (only if something needs
 * multicast), then connectors (listeners bound first so a bad port fails fast), then
 * advertisements. Stop: goodbyes first, then stop accepting, drain (bounded), close sockets.
 */
export class Ambassador {
  engine?: MdnsEngine;
  readonly advertisements: Advertisement[] = [];
  readonly connectors: Connector[] = [];
  draining = false;
  /** True once start() finished: every listener bound (the admin /healthz reports 200 from then on). */
  started = false;
  admin?: AdminServer;
  /** Mutual TLS material when --tls-* is given (stats for metrics). */
  tls?: TlsMaterial;
  /** Whether this network namespace lost every interface it had (a stranded sidecar); /healthz reports it. */
  readonly stranded = new StrandedWatch();
  private stopping?: Promise<void>;
  /** Set by prepare({ check: true }) when the interfaces cannot be used on this host now. */
  interfaceProblem?: string;
  private select?: InterfaceSelection;

  /** Circuit-breaker defaults of every listener (--connect and relays), from the file-descriptor limit. */
  readonly defaultLimits: ListenerLimits;
  private readonly fdLimit: number | undefined;

  constructor(readonly config: Config, private readonly log: Logger) {
    this.fdLimit = fileDescriptorLimit();
    this.defaultLimits = defaultLimits(config.connect.length + config.advertise.length, this.fdLimit);
  }

  /** A --connect listener's circuit breakers: what its spec gives, else the defaults. */
  private limitsFor(spec: ConnectSpec): ListenerLimits {
    const d = this.defaultLimits;
    const maxConnections = spec.limits.maxConnections ?? d.maxConnections;
    return {
      maxConnections,
      maxPending: spec.limits.maxPending ?? Math.min(d.maxPending, maxConnections),
      maxPerEndpoint: spec.limits.maxPerEndpoint ?? maxConnections,
    };
  }

  /** One warning when the listeners may together need more file descriptors than the process may open. */
  private warnAboutFileDescriptors(): void {
    if (this.fdLimit === undefined) return;
    const need = this.connectors.reduce((n, c) => n + c.listener.limits.maxConnections, 0)
      + this.config.advertise.reduce((n, a) => n + (a.maxConnections ?? this.defaultLimits.maxConnections), 0);
    if (2 * need + FD_RESERVE > this.fdLimit) {
      this.log.warn({ fileDescriptorLimit: this.fdLimit, connections: need },
        `the listeners' max-connections add up to ${need} connections (2 file descriptors each) but this process may open only ${this.fdLimit} files: raise the limit (ulimit -n) or lower max-connections`);
    } else if (this.defaultLimits.maxConnections < 256) {
      this.log.warn({ fileDescriptorLimit: this.fdLimit, maxConnections: this.defaultLimits.maxConnections },
        `the file-descriptor limit (${this.fdLimit}) leaves each listener ${this.defaultLimits.maxConnections} connections by default: raise it (ulimit -n) if clients are refused`);
    }
  }

  private needsMdns(): boolean {
    const c = this.config;
    const fixed = new Set([...c.static.map((s) => s.name), ...c.srv.map((s) => s.name)]);
    return c.advertise.length > 0 || c.connect.some((x) => !fixed.has(x.name));
  }

  /**
   * Everything that can refuse the configuration, before the first packet leaves: TLS files,
   * credentials files, and every port we listen on (admin, --connect listeners, fixed relay
   * ports). `--check` runs exactly this and releases it again.
   */
  async prepare(opts: { check?: boolean } = {}): Promise<void> {
    const c = this.config;
    if (c.tls) await this.startTls(c.tls);
    if (c.admin) {
      // Loaded only when asked for: prom-client is a few MB of resident memory per process.
      const { AdminServer } = await import('./admin/server.js');
      const admin = new AdminServer(this, c.admin);
      try {
        await admin.listen();
      } catch (err) {
        throw new ConfigError(`--admin: ${(err as Error).message}`);
      }
      this.admin = admin;
    }
    if (this.needsMdns()) {
      let select: InterfaceSelection;
      try {
        select = InterfaceSelection.parse(c.interfaces, c.excludeInterfaces);
      } catch (err) {
        if (err instanceof InterfaceError) throw new ConfigError(err.message);
        throw err;
      }
      this.select = select;
      // Created, not started: no socket until every listener is bound. The interfaces are the
      // host's, not the configuration's: none usable now is no error (run waits, --check says so).
      this.engine = new MdnsEngine({
        select,
        hostname: c.hostname,
        ipv6: c.ipv6,
        ttl: c.ttl ? { host: c.ttl, txt: c.ttl, ptr: c.ttl } : undefined,
      });
      if (opts.check) {
        const now = this.engine.monitor.peek();
        const missing = select.unmatched(this.engine.monitor.readAll());
        if (missing.length) this.interfaceProblem = `interface '${missing[0]}' is not there now (run waits for it)`;
        else if (now.length === 0) this.interfaceProblem = 'no usable network interface now (run waits for one)';
      }
    }
    for (const spec of c.connect) {
      const conn = this.createConnector(spec);
      this.connectors.push(conn);
      try {
        await conn.bind();
      } catch (err) {
        throw new ConfigError(`--connect ${spec.raw}: ${(err as Error).message}`);
      }
    }
    for (const spec of c.advertise) {
      const adv = new Advertisement(spec, this.engine!, this.log, {
        healthIntervalMs: c.healthInterval,
        healthTimeoutMs: c.healthTimeout,
        connectTimeoutMs: c.connectTimeout,
        tls: this.tls,
        maxConnections: spec.maxConnections ?? this.defaultLimits.maxConnections,
      });
      this.advertisements.push(adv);
      try {
        await adv.bind();
      } catch (err) {
        throw new ConfigError(`--advertise ${spec.raw}: ${(err as Error).message}`);
      }
    }
    if (!opts.check) this.warnAboutFileDescriptors();
  }

  /** prepare(), then go live: mDNS, discovery, health checks, announcements. */
  async start(): Promise<void> {
    await this.prepare();
    this.stranded.on('state', (state) => (state === 'stranded'
      ? this.log.warn('network lost: no interface left but loopback (/healthz reports no-network)')
      : this.log.info({ state }, 'network interface back')));
    this.stranded.start();
    const c = this.config;
    if (this.admin) {
      const port = this.admin.address()?.port;
      this.log.info({ admin: `http://${c.admin!.host}:${port}`, resources: ['/healthz', '/peers', '/metrics'] }, 'admin endpoint listening');
    }
    if (this.engine) await this.startMdns(this.engine, this.select!);
    for (const conn of this.connectors) {
      this.admin?.metrics.watchConnector(conn);
      await conn.start();
    }
    for (const adv of this.advertisements) {
      adv.on('state', (state, reason) => {
        const fields = { service: adv.spec.name, instance: adv.instance, port: adv.announcedPort, state, reason };
        if (state === 'withdrawn' || state === 'waiting-for-target') this.log.warn(fields, 'advertisement');
        else this.log.info(fields, 'advertisement');
      });
      this.admin?.metrics.watchAdvertisement(adv);
      await adv.start();
    }
    this.started = true;
  }

  /**
   * The mDNS engine follows the interfaces as they come and go: having none yet (a container's
   * network coming up late, a laptop without Wi-Fi) is a warning, not an error.
   */
  private async startMdns(engine: MdnsEngine, select: InterfaceSelection): Promise<void> {
    engine.on('warning', (err: Error) => this.log.warn({ err: err.message }, 'mDNS'));
    engine.on('host-renamed', (from, to, why) => this.log.warn({ from, to, why }, 'host name conflict: renamed'));
    engine.on('interface-failed', (name: string, err: Error) => this.log.warn({ interface: name, err: err.message }, 'cannot use interface for mDNS; retrying'));
    await engine.start();
    const net = engine.network();
    this.log.info({ host: engine.hostName, interfaces: net.interfaces.map((i) => `${i.name} ${i.addresses.join(' ')}`) }, 'mDNS started');
    for (const missing of select.unmatched(engine.monitor.readAll())) {
      this.log.warn({ interface: missing }, `interface '${missing}' is not there (yet): waiting for it`);
    }
    if (net.interfaces.length === 0) this.log.warn({ select: select.toString() }, 'no usable network interface: waiting for one (mDNS starts when it appears)');
    engine.on('interface', (ch: InterfaceChange) => {
      const msg = ch.change === 'address' ? 'interface address changed' : `interface ${ch.change}`;
      const fields = { interface: ch.interface, addresses: ch.addresses, ...(ch.change === 'address' ? { added: ch.added, removed: ch.removed } : {}) };
      if (ch.change === 'down') this.log.warn(fields, msg);
      else this.log.info(fields, msg);
    });
    let inUse = net.interfaces.map((i) => i.name).join(',');
    engine.on('network', (state: NetworkState) => {
      const now = state.interfaces.map((i) => i.name).join(',');
      if (now === inUse) return;
      inUse = now;
      if (state.interfaces.length === 0) this.log.warn({ select: select.toString() }, 'no usable network interface: waiting for one');
      else this.log.info({ interfaces: state.interfaces.map((i) => `${i.name} ${i.addresses.join(' ')}`) }, 'mDNS interfaces in use');
    });
  }

  private createConnector(spec: ConnectSpec): Connector {
    const c = this.config;
    const sources: DiscoverySource[] = [];
    for (const s of c.static.filter((x) => x.name === spec.name)) sources.push(new StaticSource(s.endpoints));
    for (const s of c.srv.filter((x) => x.name === spec.name)) {
      const srv = new DnsSrvSource(s.query, { servers: c.dnsServers });
      // failed lookups are logged by the connector ('resolve-error'); the rest of the story here
      srv.on('warning', (msg: string, fields: object) => this.log.warn({ service: spec.name, ...fields }, msg));
      srv.on('info', (msg: string, fields: object) => this.log.info({ service: spec.name, ...fields }, msg));
      sources.push(srv);
    }
    const credentials = credentialExposure(spec, { tls: !!this.tls, named: sources.length > 0, trustedLan: c.trustedLan });
    for (const warning of credentials?.warnings ?? []) this.log.warn({ service: spec.name, listen: `${spec.bind}:${spec.port}` }, warning);
    if (sources.length === 0) sources.push(new MdnsSource(this.engine!, spec.name));
    return new Connector(spec, sources, this.log, {
      healthIntervalMs: c.healthInterval,
      healthTimeoutMs: c.healthTimeout,
      connectTimeoutMs: c.connectTimeout,
      idleTimeoutMs: c.idleTimeout,
      noEndpointWaitMs: c.noEndpointWait,
      keepConnections: c.keepConnections,
      limits: this.limitsFor(spec),
      protocol: spec.protocol
        ? createProtocol(spec.protocol, { authFile: spec.authFile, db: spec.db, credentialGate: c.trustedLan ? anyAnnouncer : provenIdentity })
        : undefined,
      credentials,
      createConnection: this.tls
        ? this.tls.createConnection({ expectName: spec.tlsName })
        : plaintextConnection((ep) => this.once(`plaintext:${ep.key}`, () => this.log.warn(
          { service: spec.name, endpoint: ep.label, address: ep.address },
          'endpoint requires mutual TLS (TXT tls=1) but this ambassador has no --tls-cert/--tls-key/--tls-ca: refusing to send it plaintext'))),
    });
  }

  private async startTls(files: NonNullable<Config['tls']>): Promise<void> {
    // Loaded only with --tls-* (see tls-policy.ts).
    const { TlsMaterial } = await import('./proxy/tls.js');
    let tls: TlsMaterial;
    try {
      tls = await TlsMaterial.load(files, { handshakeTimeoutMs: this.config.connectTimeout });
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
    tls.on('reloaded', () => this.log.info({ cert: files.cert }, 'TLS certificate files changed: new connections use them'));
    tls.on('reload-error', (message: string) => this.log.warn({ cert: files.cert }, message));
    tls.on('connect-failed', (ep, code: string) => this.once(`tls:${ep.key}:${code}`, () => this.log.warn(
      { endpoint: ep.label, address: ep.address, code },
      'TLS handshake with endpoint failed: not a trusted ambassador (no application byte was sent to it)')));
    tls.on('accept-failed', (remote: string, code: string) => this.once(`tls-accept:${remote.replace(/:\d+$/, '')}:${code}`, () =>
      this.log.warn({ remote, code }, 'TLS client refused (no certificate signed by the CA); nothing relayed')));
    await tls.start();
    this.tls = tls;
    this.log.info({ cert: files.cert, ca: files.ca, minVersion: tls.minVersion }, 'mutual TLS on ambassador-to-ambassador connections');
  }

  private readonly onceKeys = new Map<string, number>();

  /** Runs `fn` for `key` at most once a minute (repeated refusals would flood the log). */
  private once(key: string, fn: () => void): void {
    const now = Date.now();
    if ((this.onceKeys.get(key) ?? 0) > now) return;
    if (this.onceKeys.size > 10_000) this.onceKeys.clear();
    this.onceKeys.set(key, now + 60_000);
    fn();
  }

  /** Idempotent graceful stop. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.draining = true;
    this.stranded.stop();
    // Goodbyes first: peers stop sending new connections here before we stop accepting.
    for (const a of this.advertisements) a.sayGoodbye();
    const drainMs = this.config.drainTimeout;
    await Promise.all([
      ...this.connectors.map((x) => x.stop(drainMs)),
      ...this.advertisements.map((a) => a.stop(drainMs)),
    ]);
    this.tls?.stop();
    await this.engine?.stop();
    await this.admin?.close();
  }
}
