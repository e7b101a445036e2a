import { AdminServer } from './admin/server.js';
import { Advertisement } from './ambassador/advertisement.js';
import { Connector } from './ambassador/connector.js';
import type { Config } from './config/config.js';
import { ConfigError } from './config/specs.js';
import { DnsSrvSource, parseDnsServer } from './discovery/dns-srv.js';
import { MdnsSource } from './discovery/mdns.js';
import type { DiscoverySource } from './discovery/source.js';
import { StaticSource } from './discovery/static.js';
import type { Logger } from './logging/logger.js';
import { MdnsEngine } from './mdns/engine.js';
import { InterfaceError, resolveInterfaces } from './mdns/interfaces.js';

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
  private stopping?: Promise<void>;

  constructor(readonly config: Config, private readonly log: Logger) {}

  private needsMdns(): boolean {
    const c = this.config;
    const fixed = new Set([...c.static.map((s) => s.name), ...c.srv.map((s) => s.name)]);
    return c.advertise.length > 0 || c.connect.some((x) => !fixed.has(x.name));
  }

  async start(): Promise<void> {
    const c = this.config;
    // Flags of the public contract whose implementation lands in a later release: refuse them
    // clearly instead of silently running without encryption or without the admin endpoint.
    if (c.tls) throw new ConfigError('--tls-cert/--tls-key/--tls-ca: mutual TLS is not implemented in this version yet');
    if (c.admin) {
      // First, before any multicast: a bad admin port fails fast, and /healthz answers 503 while starting.
      const admin = new AdminServer(this, c.admin);
      try {
        await admin.listen();
      } catch (err) {
        throw new ConfigError(`--admin: ${(err as Error).message}`);
      }
      this.admin = admin;
      this.log.info({ admin: `http://${c.admin.host}:${admin.address()?.port}`, resources: ['/healthz', '/peers', '/metrics'] }, 'admin endpoint listening');
    }
    if (this.needsMdns()) {
      let interfaces;
      try {
        interfaces = resolveInterfaces(c.interfaces);
      } catch (err) {
        if (err instanceof InterfaceError) throw new ConfigError(err.message);
        throw err;
      }
      this.engine = new MdnsEngine({
        interfaces,
        hostname: c.hostname,
        ttl: c.ttl ? { host: c.ttl, txt: c.ttl, ptr: c.ttl } : undefined,
      });
      this.engine.on('host-renamed', (from, to, why) => this.log.warn({ from, to, why }, 'host name conflict: renamed'));
      try {
        await this.engine.start();
      } catch (err) {
        throw new ConfigError((err as Error).message);
      }
      this.log.info({ host: this.engine.hostName, interfaces: interfaces.map((i) => `${i.name} ${i.address}`) }, 'mDNS started');
    }

    for (const spec of c.connect) {
      const sources: DiscoverySource[] = [];
      for (const s of c.static.filter((x) => x.name === spec.name)) sources.push(new StaticSource(s.endpoints));
      for (const s of c.srv.filter((x) => x.name === spec.name)) {
        sources.push(new DnsSrvSource(s.query, { servers: c.dnsServers.map(parseDnsServer) }));
      }
      if (sources.length === 0) sources.push(new MdnsSource(this.engine!, spec.name));
      const conn = new Connector(spec, sources, this.log, {
        healthIntervalMs: c.healthInterval,
        healthTimeoutMs: c.healthTimeout,
        connectTimeoutMs: c.connectTimeout,
        noEndpointWaitMs: c.noEndpointWait,
        keepConnections: c.keepConnections,
      });
      this.connectors.push(conn);
      this.admin?.metrics.watchConnector(conn);
      try {
        await conn.start();
      } catch (err) {
        throw new ConfigError(`--connect ${spec.raw}: ${(err as Error).message}`);
      }
    }

    for (const spec of c.advertise) {
      const adv = new Advertisement(spec, this.engine!, this.log, {
        healthIntervalMs: c.healthInterval,
        healthTimeoutMs: c.healthTimeout,
        connectTimeoutMs: c.connectTimeout,
      });
      adv.on('state', (state, reason) => {
        const fields = { service: spec.name, instance: adv.instance, port: adv.announcedPort, state, reason };
        if (state === 'withdrawn' || state === 'waiting-for-target') this.log.warn(fields, 'advertisement');
        else this.log.info(fields, 'advertisement');
      });
      this.advertisements.push(adv);
      this.admin?.metrics.watchAdvertisement(adv);
      await adv.start();
    }
    this.started = true;
  }

  /** Idempotent graceful stop. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.draining = true;
    // Goodbyes first: peers stop sending new connections here before we stop accepting.
    for (const a of this.advertisements) a.sayGoodbye();
    const drainMs = this.config.drainTimeout;
    await Promise.all([
      ...this.connectors.map((x) => x.stop(drainMs)),
      ...this.advertisements.map((a) => a.stop(drainMs)),
    ]);
    await this.engine?.stop();
    await this.admin?.close();
  }
}
