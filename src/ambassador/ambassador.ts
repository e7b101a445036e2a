import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import type { AdminServer } from '../admin/http-server.js';
import { Advertisement } from './advertisement.js';
import { Connector } from './connector.js';
import { LivenessAnswerer } from '../cluster/liveness-answerer.js';
import { StrandedWatch } from './stranded.js';
import { HostLiveness, type PeerHost } from '../cluster/host-liveness.js';
import { ListenerDirectory } from './listener-directory.js';
import { type OwnListener, OwnListeners } from './own-listeners.js';
import { dialledAddresses, formatAddressPort, isLinkLocal6, isLoopback } from '../base/address.js';
import { addressesOf, HostNetwork } from '../base/host-network.js';
import { backendOf, type LoopFacts, screenEndpoint } from './endpoint-policy.js';
import type { Config } from '../config/config.js';
import { credentialExposure } from '../config/credential-exposure.js';
import { type AdvertiseSpec, type ConnectSpec, ConfigError } from '../config/specs.js';
import { DnsSrvSource } from '../discovery/dns-srv.js';
import { MdnsSource } from '../discovery/mdns.js';
import { MergedSource } from '../discovery/merged.js';
import type { RegistryClient, RegistryStatus } from '../discovery/registry/client.js';
import type { RegistryView } from '../admin/peers.js';
import type { Registrar } from '../discovery/registry/registrar.js';
import type { RegistrySource } from '../discovery/registry/source.js';
import type { DiscoverySource } from '../discovery/source.js';
import { StaticSource } from '../discovery/static.js';
import type { Logger } from '../logging/logger.js';
import { type InterfaceChange, MdnsEngine, type NetworkState } from '../mdns/engine.js';
import { InterfaceError, InterfaceSelection } from '../mdns/link/interfaces.js';
import { anyAnnouncer, provenIdentity } from '../proxy/handshakes/credential-gate.js';
import { createProtocol, loadProtocols } from '../proxy/handshakes/index.js';
import { defaultLimits, fileDescriptorLimit, FD_RESERVE, type ListenerLimits } from '../proxy/limits.js';
import { plaintextConnection } from '../proxy/tls-policy.js';
import type { TlsMaterial } from '../proxy/tls.js';

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
  /** Epoch ms when start() was called (the status page's uptime). */
  startedAt?: number;
  admin?: AdminServer;
  /** Mutual TLS material when --tls-* is given (stats for metrics). */
  tls?: TlsMaterial;
  /**
   * This host's interfaces, looked at once a second for everyone who follows them: the mDNS
   * engine, the loop screen (which addresses are ours) and the stranded watch. Its verdict is the
   * one "no network" that /healthz and /peers report.
   */
  readonly hostNetwork: HostNetwork;
  private readonly ownsNetwork: boolean;
  /** Whether this network namespace lost every interface it had (a stranded sidecar), and its owner came back. */
  readonly stranded: StrandedWatch;
  /** Host liveness of peer ambassadors, shared by every --connect that browses mDNS. */
  liveness?: HostLiveness;
  /** Answers peers' host probes while something is advertised. */
  answerer?: LivenessAnswerer;
  /** --registry: the etcd or ZooKeeper connection (one per process), and the registrar of the advertisements. */
  registryClient?: RegistryClient;
  registrar?: Registrar;
  /** The registry's source modules, loaded with the client (only with --registry). */
  private registrySource?: typeof RegistrySource;
  private stopping?: Promise<void>;
  /** start()'s preparation while it runs: a stop waits for what it binds, then closes it. */
  private preparing?: Promise<void>;
  /** Set by prepare({ check: true }) when the interfaces cannot be used on this host now. */
  interfaceProblem?: string;
  private select?: InterfaceSelection;

  /** Every listener of this process: what must never be an endpoint. */
  readonly own: OwnListeners;
  /** The --connect listeners of every ambassador on the network (with mDNS). */
  directory?: ListenerDirectory;
  /** What the loop checks of endpoints and advertisements know (see endpoint-policy.ts). */
  private readonly loopFacts: LoopFacts = {
    ownListener: (address, port) => this.own.reachedAt(address, port),
    peerListener: (address, port) => this.directory?.find(address, port),
    isLocal: (address) => this.hostNetwork.isLocal(address),
    // The engine's selection follows the same look synchronously (its links open a moment later).
    mdnsOnLoopback: () => this.engine?.selected.links().some((l) => addressesOf(l).some(isLoopback)) ?? false,
  };
  /** Circuit-breaker defaults of every listener (--connect and relays), from the file-descriptor limit. */
  readonly defaultLimits: ListenerLimits;
  private readonly fdLimit: number | undefined;

  /**
   * `network`: one host network shared by several ambassadors of one process (the demo); they
   * start it (idempotent), its owner stops it. Default: the ambassador's own.
   */
  constructor(readonly config: Config, private readonly log: Logger, opts: { network?: HostNetwork } = {}) {
    this.ownsNetwork = !opts.network;
    this.hostNetwork = opts.network ?? new HostNetwork();
    this.stranded = new StrandedWatch(this.hostNetwork);
    this.own = new OwnListeners((address) => this.hostNetwork.isLocal(address));
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

  /** The registry connection as the admin layer shows it (read-only), undefined without --registry. */
  get registryStatus(): Readonly<RegistryStatus> | undefined {
    return this.registryClient?.status;
  }

  /** The registry connection for /peers and the status page: state and since when, why, authenticated. */
  get registry(): RegistryView | undefined {
    const s = this.registryClient?.status;
    return s && { kind: s.kind, url: s.url, state: s.state, since: s.since, reason: s.lastError ?? undefined, authenticated: s.authenticated };
  }

  /** The registry authenticated us: its endpoints count as named by the operator (credentials injection). */
  private get registryNamed(): boolean {
    const r = this.config.registry;
    return !!r && (!!r.authFile || !!r.certFile);
  }

  private needsMdns(): boolean {
    const c = this.config;
    if (!c.mdns) return false;
    const fixed = new Set([...c.static.map((s) => s.name), ...c.srv.map((s) => s.name)]);
    return c.advertise.length > 0 || c.connect.some((x) => !fixed.has(x.name));
  }

  /**
   * Everything that can refuse the configuration, before the first packet leaves: TLS files,
   * credentials files, and every port we listen on (admin, --connect listeners, fixed relay
   * ports, the host probe port). `--check` runs exactly this and releases it again.
   */
  async prepare(opts: { check?: boolean } = {}): Promise<void> {
    const c = this.config;
    // Every port we listen on is in the configuration (none is 0 but a relay's): loops between
    // them are refused before anything is bound or logged.
    this.registerConfiguredListeners();
    this.refuseLoopsInConfiguration();
    if (c.tls) await this.startTls(c.tls);
    await loadProtocols(c.connect.map((spec) => spec.protocol));
    if (c.admin) {
      // Loaded only when asked for: prom-client is a few MB of resident memory per process.
      const { AdminServer } = await import('../admin/http-server.js');
      const admin = new AdminServer(this, c.admin);
      try {
        await admin.listen();
      } catch (err) {
        throw new ConfigError(`--admin: ${(err as Error).message}`);
      }
      this.admin = admin;
    }
    if (c.registry) await this.prepareRegistry(c.registry);
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
        network: this.hostNetwork,
        select,
        hostname: c.hostname,
        ipv6: c.ipv6,
        ttl: c.ttl ? { host: c.ttl, txt: c.ttl, ptr: c.ttl } : undefined,
      });
      if (opts.check) {
        const now = this.engine.selected.peek();
        const missing = select.unmatched(this.hostNetwork.links());
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
    if (c.advertise.length > 0) {
      // Peers ask this host whether it lives and still serves what it announces (host probes).
      const answerer = new LivenessAnswerer({
        port: c.probePort,
        serving: (port) => this.advertisements.some((a) => a.announcedPort === port && a.serving),
      });
      try {
        await answerer.start();
      } catch (err) {
        throw new ConfigError(`--probe-port ${c.probePort}: cannot bind UDP (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      this.answerer = answerer;
    }
    for (const spec of c.advertise) {
      const adv = new Advertisement(spec, this.engine, this.log, {
        addresses: () => this.registryAddresses(),
        healthIntervalMs: c.healthInterval,
        healthTimeoutMs: c.healthTimeout,
        connectTimeoutMs: c.connectTimeout,
        tls: this.tls,
        probePort: this.answerer?.port,
        maxConnections: spec.maxConnections ?? this.defaultLimits.maxConnections,
        loopCheck: () => this.advertisementLoop(spec),
        hostLabel: () => this.hostLabel(),
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

  /** The listeners the configuration names, with their fixed ports: admin, --connect, relay-port. */
  private registerConfiguredListeners(): void {
    const c = this.config;
    if (c.admin) this.own.add({ kind: 'admin', host: c.admin.host, port: c.admin.port, what: `admin endpoint (--admin ${formatAddressPort(c.admin.host, c.admin.port)})` });
    const fixed = new Set([...c.static.map((s) => s.name), ...c.srv.map((s) => s.name)]);
    for (const spec of c.connect) {
      this.own.add({ kind: 'connect', host: spec.bind, port: spec.port, what: `--connect ${spec.raw} listener`, forwardsToMdns: !fixed.has(spec.name) });
      if (spec.bothLoopbacks) this.own.add({ kind: 'connect', host: '::1', port: spec.port, what: `--connect ${spec.raw} listener`, forwardsToMdns: !fixed.has(spec.name) });
    }
    for (const spec of c.advertise) {
      if (spec.relayPort !== 0) this.own.add(this.relayListener(spec, spec.relayPort));
    }
  }

  /**
   * Loops the configuration shows, refused before anything starts (exit status 2): an
   * advertisement whose target is a listener of this process, a --static endpoint that is one.
   * (Names are resolved, and other ambassadors' listeners learned, at run time.)
   */
  private refuseLoopsInConfiguration(): void {
    for (const spec of this.config.advertise) {
      const why = this.ownTargetLoop(spec, dialledAddresses(spec.targetHost ?? '127.0.0.1'));
      if (why) throw new ConfigError(`--advertise ${spec.raw}: ${why}`);
    }
    for (const s of this.config.static) {
      for (const e of s.endpoints) {
        for (const a of dialledAddresses(e.host)) {
          const own = this.own.reachedAt(a, e.port);
          if (own && own.kind !== 'relay') {
            throw new ConfigError(`--static ${s.raw}: ${formatAddressPort(e.host, e.port)} is this ambassador's own ${own.what}: every client would be sent back to it (a loop)`);
          }
        }
      }
    }
  }

  /**
   * Why announcing an advertisement's target (at `addresses`) would loop back into this process:
   * it is one of our listeners — except a --connect listener that does not forward to mDNS
   * endpoints (--static, --srv): announcing that one is a gateway, not a loop.
   */
  private ownTargetLoop(spec: AdvertiseSpec, addresses: string[]): string | undefined {
    const target = formatAddressPort(spec.targetHost ?? '127.0.0.1', spec.port);
    for (const a of addresses) {
      const own = this.own.reachedAt(a, spec.port);
      if (own && !(own.kind === 'connect' && !own.forwardsToMdns)) {
        return `the target ${target} is this ambassador's own ${own.what}: announcing it would send every client back here (a loop); advertise the port of the real service`;
      }
    }
    return undefined;
  }

  /** Run-time check of an advertisement's target: names resolved, other ambassadors' listeners too. */
  private async advertisementLoop(spec: AdvertiseSpec): Promise<string | undefined> {
    const host = spec.targetHost ?? '127.0.0.1';
    let addresses = dialledAddresses(host);
    if (addresses.length === 0) {
      try {
        addresses = (await lookup(host, { all: true })).map((a) => a.address);
      } catch {
        return undefined; // does not resolve: the health check says so
      }
    }
    const own = this.ownTargetLoop(spec, addresses);
    if (own) return own;
    for (const a of addresses) {
      const peer = this.directory?.find(a, spec.port);
      if (peer) return `the target ${formatAddressPort(host, spec.port)} is ${peer}: announcing it would make connections circle between ambassadors (a loop)`;
    }
    return undefined;
  }

  private relayListener(spec: AdvertiseSpec, port: number): OwnListener {
    const to = dialledAddresses(spec.targetHost ?? '127.0.0.1');
    return { kind: 'relay', host: '::', port, what: `relay of --advertise ${spec.raw} (port ${port})`,
      toThisHost: to.length > 0 && to.every((a) => this.hostNetwork.isLocal(a)) };
  }

  /** A relay (started at bind, or when first announced) is one of our listeners from now on. */
  private readonly relays = new Map<Advertisement, OwnListener>();
  private registerRelay(adv: Advertisement): void {
    const port = adv.relay?.address()?.port;
    if (port === undefined || adv.spec.relayPort !== 0 || this.relays.has(adv)) return; // a fixed relay-port is registered from the start
    const l = this.relayListener(adv.spec, port);
    this.relays.set(adv, l);
    this.own.add(l);
    this.recheckLoops();
  }

  /** What is known about listeners changed: every endpoint and advertisement is checked again. */
  private readonly recheckLoops = (): void => {
    for (const c of this.connectors) c.cluster.recheck();
    for (const a of this.advertisements) void a.recheckLoop();
  };

  /** This host's addresses changed: registrations carry the new ones. */
  private readonly refreshRegistrations = (): void => this.registrar?.refresh();

  /** prepare(), then go live: mDNS, discovery, health checks, announcements. */
  async start(): Promise<void> {
    this.startedAt = Date.now();
    if (this.log.isLevelEnabled('debug')) this.logConfiguration();
    this.preparing = this.prepare();
    await this.preparing;
    // A stop (Ctrl-C, SIGTERM) may come while starting: nothing is started after it.
    if (this.stopping) return;
    this.hostNetwork.start();
    this.stranded.on('state', (state) => (state === 'stranded'
      ? this.log.warn('network lost: no interface left but loopback (/healthz reports no-network)')
      : this.log.info({ state }, 'network interface back')));
    this.stranded.start();
    const c = this.config;
    if (this.admin) {
      const port = this.admin.address()?.port;
      const base = `http://${formatAddressPort(c.admin!.host, port!)}`;
      this.log.info({ admin: base, statusPage: `${base}/`, resources: ['/', '/healthz', '/peers', '/metrics', '/status', '/events'] }, 'admin endpoint listening');
    }
    if (this.engine) await this.startMdns(this.engine, this.select!);
    if (this.stopping) return;
    if (this.engine) {
      const directory = new ListenerDirectory(this.engine, (a) => this.hostNetwork.isLocal(a), this.loopFacts.mdnsOnLoopback);
      this.directory = directory;
      // Ours first, before any endpoint is used: the listeners that others could reach and that
      // forward to mDNS endpoints.
      for (const conn of this.connectors) {
        if (conn.sources.some((x) => x.kind === 'mdns') && !isLoopback(conn.spec.bind)) {
          directory.announce(conn.spec.name, conn.spec.bind, conn.listener.address()!.port);
        }
      }
      directory.on('changed', () => this.recheckLoops());
      directory.start();
    }
    // An address of this host came or went (any interface: a listener on 0.0.0.0 takes them all):
    // every endpoint is checked again, once per change.
    this.hostNetwork.on('change', this.recheckLoops);
    if (this.registryClient) {
      this.registryClient.start();
      // The registered addresses follow the host's.
      if (this.registrar && this.config.registryAddresses.length === 0) this.hostNetwork.on('change', this.refreshRegistrations);
    }
    for (const conn of this.connectors) {
      if (this.stopping) return;
      this.admin?.metrics.watchConnector(conn);
      await conn.start();
    }
    for (const adv of this.advertisements) {
      adv.on('state', (state, reason) => {
        this.registerRelay(adv);
        const fields = { service: adv.spec.name, instance: adv.instance, port: adv.announcedPort, state, reason };
        if (state === 'withdrawn' || state === 'waiting-for-target') this.log.warn(fields, 'advertisement');
        else this.log.info(fields, 'advertisement');
      });
      this.admin?.metrics.watchAdvertisement(adv);
      if (this.log.isLevelEnabled('trace')) {
        adv.checker.on('check', (_ep, ok, code) => this.log.trace({ service: adv.spec.name, target: adv.spec.targetHost ?? '127.0.0.1', port: adv.spec.port, ok, code }, 'target check'));
      }
      if (this.stopping) return;
      if (this.registrar) this.registerWith(this.registrar, adv);
      await adv.start();
    }
    if (this.stopping) return;
    this.started = true;
  }

  /** --log-level debug: what the configuration came to, defaults filled in (file names, never their contents). */
  private logConfiguration(): void {
    const c = this.config;
    this.log.debug({
      advertise: c.advertise.map((a) => a.raw), connect: c.connect.map((x) => `${x.raw} → ${x.bind}:${x.port}${x.bothLoopbacks ? ' and [::1]' : ''}, ${x.balance}`),
      static: c.static.map((s) => s.raw), srv: c.srv.map((s) => s.raw), dnsServers: c.dnsServers.map((d) => formatAddressPort(d.host, d.port)),
      interfaces: c.interfaces, excludeInterfaces: c.excludeInterfaces, hostname: c.hostname, ipv6: c.ipv6, ttl: c.ttl,
      tls: c.tls ? { cert: c.tls.cert, ca: c.tls.ca } : undefined, healthIntervalMs: c.healthInterval, healthTimeoutMs: c.healthTimeout,
      connectTimeoutMs: c.connectTimeout, raceDelayMs: c.raceDelay, idleTimeoutMs: c.idleTimeout, waitForEndpointMs: c.noEndpointWait,
      drainTimeoutMs: c.drainTimeout, keepConnections: c.keepConnections, trustedLan: c.trustedLan, limits: this.defaultLimits,
      mdns: c.mdns, registry: c.registry?.display, registryAddresses: c.registryAddresses,
    }, 'configuration');
  }

  /**
   * The mDNS engine follows the interfaces as they come and go: having none yet (a container's
   * network coming up late, a laptop without Wi-Fi) is a warning, not an error.
   */
  private async startMdns(engine: MdnsEngine, select: InterfaceSelection): Promise<void> {
    engine.on('warning', (err: Error) => this.log.warn({ err: err.message }, 'mDNS'));
    engine.on('host-renamed', (from, to, why) => this.log.warn({ from, to, why }, 'host name conflict: renamed'));
    engine.on('interface-failed', (name: string, err: Error) => this.log.warn({ interface: name, err: err.message }, 'cannot use interface for mDNS; retrying'));
    engine.on('host-mates', (answered: boolean) => this.log.debug({ host: engine.hostName }, answered
      ? 'another process on this host answers for its name: no goodbye for the host\'s addresses'
      : 'no other process on this host answers for its name: goodbyes for the host\'s addresses too'));
    await engine.start();
    const net = engine.network();
    this.log.info({ host: engine.hostName, interfaces: net.interfaces.map((i) => `${i.name} ${i.addresses.join(' ')}`) }, 'mDNS started');
    for (const missing of select.unmatched(this.hostNetwork.links())) {
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

  /**
   * The registry client (its module and, for zk://, node-zookeeper-client loaded only now), its
   * story told once per change in the log, and the registrar when something is advertised.
   */
  private async prepareRegistry(r: NonNullable<Config['registry']>): Promise<void> {
    const { connectRegistry } = await import('../discovery/registry/connect.js');
    const client = await connectRegistry(r.kind, {
      members: r.members, prefix: r.prefix, ttlMs: r.ttlMs, tls: r.tls, authFile: r.authFile,
      caFile: r.caFile, certFile: r.certFile, keyFile: r.keyFile, display: r.display,
    });
    this.registryClient = client;
    this.registrySource = (await import('../discovery/registry/source.js')).RegistrySource;
    const fields = () => ({ registry: r.display, member: client.status.member ?? undefined, authenticated: client.status.authenticated || undefined });
    let outageSince: number | undefined;
    client.on('state', (state: string, error?: string) => {
      if (state === 'connected') {
        if (outageSince !== undefined) this.log.info({ ...fields(), unreachableForMs: Date.now() - outageSince }, 'registry reachable again: watches listed again, registrations written again');
        else this.log.info(fields(), 'registry connected');
        outageSince = undefined;
      } else if ((state === 'reconnecting' || state === 'connecting') && outageSince === undefined) {
        outageSince = Date.now();
        this.log.warn({ ...fields(), err: error },
          state === 'connecting'
            ? 'registry unreachable: retrying in the background (mDNS and the endpoints known meanwhile keep working)'
            : 'registry unreachable: keeping the last endpoints and failing over on our own evidence (host probes, connects); retrying');
      }
    });
    client.on('problem', (message: string) => this.log.warn(fields(), `registry: ${message}`));
    client.on('session-renewed', (what: string) => this.log.warn(fields(),
      `registry ${what} was lost while cut off (expired on the registry): every registration written again under a new one`));
    if (this.config.advertise.length > 0) {
      const { Registrar } = await import('../discovery/registry/registrar.js');
      const registrar = new Registrar(client, { hostName: () => this.hostLabel(), addresses: () => this.registryAddresses() });
      registrar.on('state', (service: string, instance: string, state: string, reason: string) => {
        const f = { registry: r.display, service, instance, state, reason };
        if (state === 'registered') this.log.info(f, 'registry registration');
        else this.log.warn(f, 'registry registration');
      });
      this.registrar = registrar;
    }
  }

  /**
   * The addresses others should dial, as registered: --registry-address, else those announced
   * over mDNS, else this host's interface addresses; loopback never (it would mean the reader).
   */
  private registryAddresses(): string[] {
    if (this.config.registryAddresses.length > 0) return this.config.registryAddresses;
    const fromMdns = this.engine?.addresses() ?? [];
    const all = fromMdns.length > 0 ? fromMdns : this.hostNetwork.links().filter((l) => !l.loopback).flatMap(addressesOf);
    const usable = all.filter((a) => !isLoopback(a) && !isLinkLocal6(a));
    return [...usable.filter((a) => !a.includes(':')), ...usable.filter((a) => a.includes(':'))];
  }

  /** This host's name as registered: --hostname, else the machine's (not mDNS's: a conflict there renames it). */
  private hostLabel(): string {
    return this.config.hostname ?? hostname().split('.')[0]!;
  }

  /** An advertisement's state drives its registry registration: written while announced, deleted otherwise. */
  private registerWith(registrar: Registrar, adv: Advertisement): void {
    const hostLabel = () => this.hostLabel();
    adv.on('state', (state: string, reason: string) => {
      if ((state === 'probing' || state === 'announced') && adv.announcedPort !== undefined) {
        registrar.offer(adv, {
          service: adv.spec.name, instance: adv.instanceOn(hostLabel()), port: adv.announcedPort,
          priority: adv.spec.priority, weight: adv.spec.weight, txt: adv.txt(),
        });
      } else if (state === 'withdrawn' || state === 'stopped' || state === 'waiting-for-target') {
        void registrar.withdraw(adv, reason);
      }
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
    const fixed = sources.length > 0;
    const credentials = credentialExposure(spec, { tls: !!this.tls, named: fixed || (this.registryNamed && !c.mdns), trustedLan: c.trustedLan });
    for (const warning of credentials?.warnings ?? []) this.log.warn({ service: spec.name, listen: `${spec.bind}:${spec.port}` }, warning);
    if (!fixed) {
      // Found where ambassadors announce themselves: mDNS, the registry, or both as one set.
      const found: DiscoverySource[] = [];
      if (this.engine) found.push(new MdnsSource(this.engine, spec.name));
      if (this.registryClient) {
        const reg = new this.registrySource!(this.registryClient, spec.name, { named: this.registryNamed, emptyGraceMs: c.registry!.ttlMs });
        reg.on('ignored', (key: string, why: string) => this.log.warn({ service: spec.name, registry: c.registry!.display, key, why },
          'registry value ignored: not a registration this ambassador can read'));
        found.push(reg);
      }
      sources.push(found.length > 1 ? new MergedSource(found) : found[0]!);
      this.liveness ??= this.createLiveness();
    }
    return new Connector(spec, sources, this.log, {
      healthIntervalMs: c.healthInterval,
      healthTimeoutMs: c.healthTimeout,
      connectTimeoutMs: c.connectTimeout,
      raceDelayMs: c.raceDelay,
      liveness: fixed ? undefined : this.liveness,
      idleTimeoutMs: c.idleTimeout,
      noEndpointWaitMs: c.noEndpointWait,
      keepConnections: c.keepConnections,
      limits: this.limitsFor(spec),
      screen: (ep) => screenEndpoint(ep, this.loopFacts),
      backend: backendOf,
      protocol: spec.protocol
        ? createProtocol(spec.protocol, {
          authFile: spec.authFile, db: spec.db, credentialGate: c.trustedLan ? anyAnnouncer : provenIdentity,
          serverTls: spec.serverTls, serverVerify: spec.serverVerify, serverCa: spec.serverCa, serverName: spec.serverName,
        })
        : undefined,
      credentials,
      createConnection: this.tls
        ? this.tls.createConnection({ expectName: spec.tlsName })
        : plaintextConnection((ep) => this.once(`plaintext:${ep.key}`, () => this.log.warn(
          { service: spec.name, endpoint: ep.label, address: ep.address },
          'endpoint requires mutual TLS (TXT tls=1) but this ambassador has no --tls-cert/--tls-key/--tls-ca: refusing to send it plaintext'))),
    });
  }

  /** One host liveness check for every cluster browsing mDNS: one probe per peer host, however many use it. */
  private createLiveness(): HostLiveness {
    const liveness = new HostLiveness({ intervalMs: this.config.healthInterval });
    const fields = (peer: PeerHost) => ({ host: peer.address, probePort: peer.probePort, endpoints: [...peer.members.keys()].map((e) => e.label) });
    liveness.on('host-down', (peer, code) => this.log.warn({ ...fields(peer), code, lossRate: round3(peer.loss.rate), misses: peer.misses },
      code === 'ESILENT' ? 'peer host silent: its endpoints are down' : 'peer host unreachable: its endpoints are down'));
    liveness.on('host-up', (peer) => this.log.info(fields(peer), 'peer host answers host probes again'));
    liveness.on('orphaned', (peer) => {
      // After a clean stop (goodbyes received, the endpoints leaving) the silence is expected.
      if ([...peer.members.keys()].every((ep) => ep.draining || ep.removed)) {
        if (this.log.isLevelEnabled('debug')) this.log.debug(fields(peer), 'peer ambassador stopped after its goodbyes: its host refuses host probes now');
        return;
      }
      this.log.warn(fields(peer),
        'peer host refuses host probes (its ambassador is gone): checking its endpoints ourselves until it is back or they are withdrawn');
    });
    liveness.on('adopted', (peer) => this.log.info(fields(peer), 'peer ambassador answers host probes again'));
    if (this.log.isLevelEnabled('debug')) {
      liveness.on('miss', (peer, needed) => this.log.debug({ ...fields(peer), misses: peer.misses, needed, lossRate: round3(peer.loss.rate) },
        'host probe unanswered'));
    }
    return liveness;
  }

  private async startTls(files: NonNullable<Config['tls']>): Promise<void> {
    // Loaded only with --tls-* (see tls-policy.ts).
    const { TlsMaterial } = await import('../proxy/tls.js');
    let tls: TlsMaterial;
    try {
      tls = await TlsMaterial.load(files, { handshakeTimeoutMs: this.config.connectTimeout });
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
    tls.on('reloaded', () => {
      if (!this.reloading) this.log.info({ cert: files.cert }, 'TLS certificate files changed: new connections use them');
    });
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

  /** A SIGHUP reload is running: its summary line says what the per-file lines would. */
  private reloading = false;

  /**
   * SIGHUP, as for HAProxy, nginx or Avahi: everything the ambassador reads from files is read
   * again now rather than at the next poll — TLS certificate, key and CA, every auth-file — and
   * the sources that resolve names (--srv, --static host names) look again (re-reading
   * resolv.conf and /etc/hosts). Flags and the environment are not re-read (restart for those).
   * Resolves with what was read, for one log line; a file that fails keeps what was in use.
   */
  async reload(): Promise<Record<string, unknown>> {
    if (this.draining) return { skipped: 'stopping' };
    this.reloading = true;
    const report: Record<string, unknown> = {};
    try {
      if (this.tls) report.tls = (await this.tls.reload()) ? 're-read' : 'invalid: the previous certificate is kept';
      const credentials: string[] = [];
      let sources = 0;
      for (const c of this.connectors) {
        const reloaded = c.protocol?.reload?.();
        if (reloaded) credentials.push(`${c.spec.name} (${c.spec.bind}:${c.spec.port}): ${(await reloaded) ? 're-read' : 'invalid: the previous credentials are kept'}`);
        for (const s of c.sources) {
          if (s.refresh) {
            await s.refresh();
            sources++;
          }
        }
      }
      if (credentials.length) report.credentials = credentials;
      if (sources) report.sourcesRefreshed = sources;
    } finally {
      this.reloading = false;
    }
    return report;
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
    await this.preparing?.catch(() => {});
    this.stranded.stop();
    // Goodbyes first: peers stop sending new connections here before we stop accepting.
    for (const a of this.advertisements) a.sayGoodbye();
    // The host's address records get theirs at the end, unless another process here still
    // answers for them (ambassadors side by side): asked now, answered during the drain.
    this.engine?.askHostMates();
    // The registry too: keys deleted (bounded: an unreachable registry must not hold the stop up;
    // the lease or session then ends them one TTL later).
    if (this.registrar) await Promise.race([this.registrar.withdrawAll('shutdown'), new Promise((r) => setTimeout(r, 1000).unref())]);
    await this.directory?.stop();
    const drainMs = this.config.drainTimeout;
    await Promise.all([
      ...this.connectors.map((x) => x.stop(drainMs)),
      ...this.advertisements.map((a) => a.stop(drainMs)),
    ]);
    this.tls?.stop();
    this.liveness?.stop();
    this.answerer?.stop();
    await this.engine?.stop();
    if (this.ownsNetwork) this.hostNetwork.stop();
    else {
      this.hostNetwork.off('change', this.recheckLoops);
      this.hostNetwork.off('change', this.refreshRegistrations);
    }
    await this.registryClient?.close(1000);
    await this.admin?.close();
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
