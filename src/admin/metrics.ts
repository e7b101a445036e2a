import type * as PromClient from 'prom-client';
import type { RegistryStatus } from '../discovery/registry/client.js';
import { requireCommonJs } from '../base/commonjs.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Endpoint } from '../cluster/endpoint.js';
import type { HealthChecker, LastCheck } from '../cluster/health-checker.js';
import type { HostLiveness } from '../cluster/host-liveness.js';
import type { LivenessAnswerer } from '../cluster/liveness-answerer.js';
import type { CredentialExposure } from '../config/credential-exposure.js';
import type { AdvertiseSpec, ConnectSpec } from '../config/specs.js';
import type { SourceKind } from '../discovery/source.js';
import type { MdnsEngine } from '../mdns/engine.js';
import { LIMIT_NAMES } from '../proxy/limits.js';
import { ConnectListener } from '../proxy/listener.js';
import type { RelayListener } from '../proxy/relay.js';
import { HAPROXY_CONNECT_FAILED, type HaproxyFrontend } from '../proxy/haproxy/frontend.js';
import type { HaproxyPlane } from '../proxy/haproxy/plane.js';

const { collectDefaultMetrics, Counter, Gauge, Registry } = requireCommonJs('prom-client') as typeof PromClient;
type Counter<T extends string> = PromClient.Counter<T>;

/** Resolution of the event-loop delay histogram behind nodejs_eventloop_lag_* (ms). */
const EVENT_LOOP_SAMPLE_MS = 100;

/**
 * What admin reads of a --connect (the ambassador's Connector). Declared here, in the floor's
 * own terms, so that admin stays below the ambassador it reports on.
 */
export interface ConnectorView {
  readonly spec: ConnectSpec;
  readonly sources: ReadonlyArray<{ readonly kind: SourceKind }>;
  readonly cluster: Cluster;
  /** The Node data plane's listener, or HAProxy's frontend for it (--data-plane haproxy). */
  readonly listener: ConnectListener | HaproxyFrontend;
  readonly checker: HealthChecker;
  /** Host liveness of the peer ambassadors behind its endpoints (mDNS only). */
  readonly liveness: HostLiveness | undefined;
  readonly credentials: CredentialExposure | undefined;
  /** Clients refused by the circuit breakers, in a burst now. */
  readonly refusals: { readonly inBurst: boolean };
}

/** What admin reads of an --advertise (the ambassador's Advertisement). Events: 'state' (state, reason). */
export interface AdvertisementView {
  readonly spec: AdvertiseSpec;
  /** One of ADVERTISEMENT_STATES. */
  readonly state: string;
  readonly reason: string;
  readonly instance: string | undefined;
  readonly announcedPort?: number;
  readonly relay?: RelayListener;
  readonly relayRefusing: boolean;
  /** Epoch ms of the last state change. */
  readonly stateSince: number;
  readonly checker: HealthChecker;
  /** The advertisement's own check of its target: healthy now, and the last check's result. */
  targetCheck(): { healthy: boolean; last: LastCheck | undefined };
  on(event: 'state', listener: (state: string, reason: string) => void): unknown;
}

/** Codes that mean the TCP connect worked but the protocol or TLS handshake after it did not. */
export function isHandshakeCode(code: string): boolean {
  return code === 'EHANDSHAKE' || code === 'EPROTO' || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code.includes('CERT');
}

/**
 * Labels of a --connect listener's series: `cluster` is the service name, `listener` its
 * address. A cluster belongs to a listener, not to a name: two --connect for one service (say
 * production and staging) are two clusters with series of their own.
 */
export function listenerLabels(c: Pick<ConnectorView, 'spec'>): { cluster: string; listener: string } {
  return { cluster: c.spec.name, listener: `${c.spec.bind}:${c.spec.port}` };
}

/** The states an advertisement reports (ambassador/advertisement.ts), each a series of ambassador_advertisement_state. */
export const ADVERTISEMENT_STATES = ['waiting-for-target', 'probing', 'announced', 'withdrawn', 'stopped'] as const;

/** What the metrics read: an Ambassador, or anything shaped like one (tests, the demo). */
export interface MetricsSubject {
  readonly connectors: readonly ConnectorView[];
  readonly advertisements: readonly AdvertisementView[];
  readonly engine?: MdnsEngine;
  /** Host liveness of peer ambassadors (connecting side). */
  readonly liveness?: HostLiveness;
  /** Answers peers' host probes (advertising side). */
  readonly answerer?: LivenessAnswerer;
  /** The HAProxy data plane, when some listeners are carried by HAProxy. */
  readonly haproxy?: HaproxyPlane;
  /** The registry connection (--registry), read-only. */
  readonly registryStatus?: Readonly<RegistryStatus>;
}

/** Connections open now per endpoint label (every endpoint of the cluster listed, 0 included). */
export function activeByEndpoint(c: ConnectorView): Map<string, number> {
  const counts = new Map<string, number>();
  for (const ep of c.cluster.endpoints()) counts.set(ep.label, 0);
  const l = c.listener;
  if (l instanceof ConnectListener) {
    for (const conn of l.connections) {
      if (conn.state === 'open' && conn.endpoint) counts.set(conn.endpoint.label, (counts.get(conn.endpoint.label) ?? 0) + 1);
    }
  } else {
    for (const [label, t] of l.endpointTotals()) if (t.active > 0 || counts.has(label)) counts.set(label, t.active);
  }
  return counts;
}

/** Clients waiting for an endpoint or a connect now (HAProxy: waiting in its queue). */
export function pendingClients(c: ConnectorView): number {
  const l = c.listener;
  if (!(l instanceof ConnectListener)) return l.queued;
  let n = 0;
  for (const conn of l.connections) if (conn.state === 'pending') n++;
  return n;
}

interface ByteTotals {
  received: number;
  sent: number;
}

/**
 * Prometheus metrics of one Ambassador, in a registry of its own (never the global one, so
 * several ambassadors can live in one process). Event counters are bumped once per connection
 * or per state change; everything else (bytes, active connections, endpoint states, mDNS
 * counters) is read from the live objects only when Prometheus scrapes. Nothing runs per byte.
 */
export class AmbassadorMetrics {
  readonly registry = new Registry();
  private readonly connectFailures: Counter<'cluster' | 'endpoint' | 'code'>;
  private readonly handshakeFailures: Counter<'cluster' | 'endpoint' | 'code'>;
  private readonly clientFailures: Counter<'cluster' | 'reason'>;
  private readonly retries: Counter<'cluster'>;
  private readonly raced: Counter<'cluster' | 'listener'>;
  private readonly panics: Counter<'cluster' | 'listener'>;
  private readonly panicAttempts: Counter<'cluster' | 'listener'>;
  private readonly flaps: Counter<'cluster' | 'listener' | 'endpoint' | 'was'>;
  private readonly transitions: Counter<'cluster' | 'endpoint' | 'to' | 'reason'>;
  private readonly healthChecks: Counter<'cluster' | 'endpoint' | 'result'>;
  private readonly advTransitions: Counter<'service' | 'state'>;
  private readonly relayAccepted: Counter<'service'>;
  private readonly relayFailures: Counter<'service' | 'code'>;
  private readonly refused: Counter<'cluster' | 'listener' | 'limit'>;
  private readonly relayRefused: Counter<'service'>;
  private readonly internalErrors: Counter<'cluster' | 'listener'>;
  private readonly relayInternalErrors: Counter<'service'>;
  /** Upstream bytes of connections already closed, per cluster → endpoint label. */
  private readonly closedBytes = new Map<ConnectorView, Map<string, ByteTotals>>();
  /** Connections established to endpoints no longer in their cluster, per connector → endpoint label. */
  private readonly removedEstablished = new Map<ConnectorView, Map<string, number>>();
  /** Connectors watched (read at scrape time). */
  private readonly connectors: ConnectorView[] = [];

  constructor(private readonly subject: MetricsSubject, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    // prom-client samples the event loop's delay every 10 ms by default: 100 wake-ups a second
    // for ever, about half of what an idle ambassador spent (350 -> 190 ms of CPU in 30 s with
    // --admin, measured). Every 100 ms still sees any lag past 100 ms and a shorter stall that
    // spans a sample.
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    const self = this;

    // Read from the listeners' and endpoints' own counters at scrape time: a connection costs
    // these metrics no label lookup (a label string built and hashed per inc()).
    new Counter({
      name: 'ambassador_connections_accepted_total', help: 'Client connections accepted by a --connect listener', labelNames: ['cluster', 'listener'], registers,
      collect() {
        this.reset();
        for (const c of self.connectors) this.inc(listenerLabels(c), c.listener.accepted);
      },
    });
    new Counter({
      name: 'ambassador_connections_established_total', help: 'Client connections piped to an endpoint (after retries and handshake)', labelNames: ['cluster', 'listener', 'endpoint'], registers,
      collect() {
        this.reset();
        for (const c of self.connectors) {
          const l = c.listener;
          const totals = new Map<string, number>();
          if (l instanceof ConnectListener) {
            for (const [label, n] of self.removedEstablished.get(c) ?? []) totals.set(label, n);
            for (const ep of c.cluster.endpoints()) totals.set(ep.label, (totals.get(ep.label) ?? 0) + ep.connections);
          } else {
            for (const [label, t] of l.endpointTotals()) totals.set(label, t.connections);
          }
          for (const [endpoint, n] of totals) if (n > 0) this.inc({ ...listenerLabels(c), endpoint }, n);
        }
      },
    });
    this.clientFailures = new Counter({ name: 'ambassador_connections_failed_total', help: 'Client connections closed without any upstream (reason: no-endpoint, all-failed)', labelNames: ['cluster', 'listener', 'reason'], registers });
    this.connectFailures = new Counter({ name: 'ambassador_connect_failures_total', help: 'Failed connects (or handshakes) to an endpoint, by error code', labelNames: ['cluster', 'listener', 'endpoint', 'code'], registers });
    this.handshakeFailures = new Counter({ name: 'ambassador_handshake_failures_total', help: 'Connects whose protocol (e.g. Redis AUTH) or TLS handshake failed', labelNames: ['cluster', 'listener', 'endpoint', 'code'], registers });
    this.retries = new Counter({ name: 'ambassador_connect_retries_total', help: 'Failovers: a client retried on the next endpoint after a failed connect', labelNames: ['cluster', 'listener'], registers });
    this.raced = new Counter({ name: 'ambassador_connect_attempts_raced_total', help: 'Connect attempts started beside a slow one (after --race-delay) instead of abandoning it', labelNames: ['cluster', 'listener'], registers });
    this.panics = new Counter({ name: 'ambassador_panic_mode_entered_total', help: 'Times every endpoint of a cluster looked down and those down only on health evidence were tried anyway', labelNames: ['cluster', 'listener'], registers });
    this.panicAttempts = new Counter({ name: 'ambassador_panic_attempts_total', help: 'Connect attempts to an endpoint judged down, in panic mode', labelNames: ['cluster', 'listener'], registers });
    this.flaps = new Counter({ name: 'ambassador_endpoint_flaps_total', help: 'Endpoints back up after being judged down while still announced (was: host-probe, health-check, outlier)', labelNames: ['cluster', 'listener', 'endpoint', 'was'], registers });
    this.transitions = new Counter({ name: 'ambassador_endpoint_transitions_total', help: 'Endpoint up/down transitions (reason: discovered, recovered, goodbye, removed, source-check, host-probe, health-check, outlier)', labelNames: ['cluster', 'listener', 'endpoint', 'to', 'reason'], registers });
    this.healthChecks = new Counter({ name: 'ambassador_health_checks_total', help: 'Our own active checks (TCP or Redis PING) of endpoints with no ambassador behind them; cluster advertise:NAME = an advertised target', labelNames: ['cluster', 'listener', 'endpoint', 'result'], registers });
    this.advTransitions = new Counter({ name: 'ambassador_advertisement_transitions_total', help: 'Advertisement state changes', labelNames: ['service', 'state'], registers });
    this.relayAccepted = new Counter({ name: 'ambassador_relay_connections_accepted_total', help: 'Connections accepted by an advertisement relay', labelNames: ['service'], registers });
    this.refused = new Counter({ name: 'ambassador_connections_refused_total', help: 'Clients refused at once by a circuit breaker (limit: max-connections, max-pending, max-per-endpoint); not in accepted_total', labelNames: ['cluster', 'listener', 'limit'], registers });
    this.relayRefused = new Counter({ name: 'ambassador_relay_connections_refused_total', help: 'Clients an advertisement relay refused at once (its max-connections were open)', labelNames: ['service'], registers });
    this.internalErrors = new Counter({ name: 'ambassador_internal_errors_total', help: 'Clients of a --connect listener closed by an unexpected exception (a bug; its stack is logged)', labelNames: ['cluster', 'listener'], registers });
    this.relayInternalErrors = new Counter({ name: 'ambassador_relay_internal_errors_total', help: 'Clients of an advertisement relay closed by an unexpected exception (a bug; its stack is logged)', labelNames: ['service'], registers });
    this.relayFailures = new Counter({ name: 'ambassador_relay_connect_failures_total', help: 'Relay connects to the advertised target that failed', labelNames: ['service', 'code'], registers });

    new Gauge({
      name: 'ambassador_connections_active', help: 'Proxied connections open now, per endpoint', labelNames: ['cluster', 'listener', 'endpoint'], registers,
      collect() {
        this.reset();
        for (const c of self.subject.connectors) {
          for (const [endpoint, n] of activeByEndpoint(c)) this.set({ ...listenerLabels(c), endpoint }, n);
        }
      },
    });
    new Gauge({
      name: 'ambassador_connections_pending', help: 'Client connections waiting for an endpoint or a connect', labelNames: ['cluster', 'listener'], registers,
      collect() {
        this.reset();
        for (const c of self.subject.connectors) this.set(listenerLabels(c), pendingClients(c));
      },
    });
    const bytes = (direction: keyof ByteTotals) => function (this: Counter<'cluster' | 'listener' | 'endpoint'>) {
      this.reset();
      for (const c of self.subject.connectors) {
        const totals = new Map<string, number>();
        const l = c.listener;
        if (!(l instanceof ConnectListener)) {
          for (const ep of c.cluster.endpoints()) totals.set(ep.label, 0);
          for (const [label, t] of l.endpointTotals()) totals.set(label, direction === 'received' ? t.bytesIn : t.bytesOut);
          for (const [endpoint, n] of totals) this.inc({ ...listenerLabels(c), endpoint }, n);
          continue;
        }
        for (const [endpoint, t] of self.closedBytes.get(c) ?? []) totals.set(endpoint, t[direction]);
        for (const ep of c.cluster.endpoints()) if (!totals.has(ep.label)) totals.set(ep.label, 0);
        for (const conn of l.connections) {
          if (conn.state !== 'open' || !conn.endpoint || !conn.upstream) continue;
          const live = direction === 'received' ? conn.upstream.bytesRead : conn.upstream.bytesWritten;
          totals.set(conn.endpoint.label, (totals.get(conn.endpoint.label) ?? 0) + live);
        }
        for (const [endpoint, n] of totals) this.inc({ ...listenerLabels(c), endpoint }, n);
      }
    };
    new Counter({ name: 'ambassador_upstream_bytes_received_total', help: 'Bytes received from endpoints (towards clients)', labelNames: ['cluster', 'listener', 'endpoint'], registers, collect: bytes('received') });
    new Counter({ name: 'ambassador_upstream_bytes_sent_total', help: 'Bytes sent to endpoints (from clients)', labelNames: ['cluster', 'listener', 'endpoint'], registers, collect: bytes('sent') });

    new Gauge({
      name: 'ambassador_endpoint_up', help: '1 while an endpoint is usable (discovered, healthy, not ejected), else 0', labelNames: ['cluster', 'listener', 'endpoint', 'source'], registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const c of self.subject.connectors) {
          for (const ep of c.cluster.endpoints()) this.set({ ...listenerLabels(c), endpoint: ep.label, source: ep.source }, ep.isUsable(now) ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'ambassador_endpoints', help: 'Endpoints known per cluster, by state', labelNames: ['cluster', 'listener', 'state'], registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const c of self.subject.connectors) {
          const all = c.cluster.endpoints();
          const up = all.filter((ep) => ep.isUsable(now)).length;
          this.set({ ...listenerLabels(c), state: 'up' }, up);
          this.set({ ...listenerLabels(c), state: 'down' }, all.length - up);
        }
      },
    });
    new Gauge({
      name: 'ambassador_endpoint_health_origin', help: '1 for who judges each endpoint: host-probe (its ambassador: source check + host probe), own-check, passive (outlier detection only)', labelNames: ['cluster', 'listener', 'endpoint', 'origin'], registers,
      collect() {
        this.reset();
        for (const c of self.subject.connectors) {
          for (const ep of c.cluster.endpoints()) this.set({ ...listenerLabels(c), endpoint: ep.label, origin: ep.healthOrigin }, 1);
        }
      },
    });
    new Gauge({
      name: 'ambassador_panic_mode', help: '1 while every endpoint of the cluster looks down and those down only on health evidence are tried anyway', labelNames: ['cluster', 'listener'], registers,
      collect() {
        this.reset();
        for (const c of self.subject.connectors) this.set(listenerLabels(c), c.cluster.inPanic ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ambassador_advertisement_state', help: '1 for the current state of each advertisement, 0 for the others', labelNames: ['service', 'state'], registers,
      collect() {
        this.reset();
        for (const a of self.subject.advertisements) {
          for (const s of ADVERTISEMENT_STATES) this.inc({ service: a.spec.name, state: s }, a.state === s ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'ambassador_relay_connections_active', help: 'Connections open through an advertisement relay', labelNames: ['service'], registers,
      collect() {
        this.reset();
        for (const a of self.subject.advertisements) {
          if (!a.relay) continue;
          let n = 0;
          for (const conn of a.relay.connections) if (conn.state === 'open') n++;
          this.set({ service: a.spec.name }, n);
        }
      },
    });

    // The HAProxy data plane, when there is one.
    const plane = (name: string, help: string, read: (p: HaproxyPlane) => number) =>
      new Counter({
        name, help, registers,
        collect() {
          this.reset();
          const p = self.subject.haproxy;
          if (p) this.inc(read(p));
        },
      });
    plane('ambassador_haproxy_restarts_total', 'Times HAProxy (the data plane) died and was started again with the current endpoints', (p) => p.restarts);
    plane('ambassador_haproxy_reloads_total', 'Seamless reloads of HAProxy (only when a backend runs out of server slots; membership changes never reload)', (p) => p.reloads);
    new Gauge({
      name: 'ambassador_haproxy_up', help: '1 while HAProxy (the data plane) serves, 0 while it is restarting', registers,
      collect() {
        this.reset();
        const p = self.subject.haproxy;
        if (p) this.set(p.running ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ambassador_haproxy_slots', help: 'HAProxy server slots per listener carried by HAProxy: used (an endpoint), retiring (its endpoint left; connections still open), free', labelNames: ['cluster', 'listener', 'state'], registers,
      collect() {
        this.reset();
        for (const c of self.subject.connectors) {
          const l = c.listener;
          if (l instanceof ConnectListener) continue;
          const n = { used: 0, retiring: 0, free: 0 };
          for (const slot of l.slots) n[slot.retiring ? 'retiring' : slot.endpoint === undefined ? 'free' : 'used']++;
          for (const [state, v] of Object.entries(n)) this.set({ ...listenerLabels(c), state }, v);
        }
      },
    });

    // mDNS engine counters, read at scrape time.
    const mdns = (name: string, help: string, read: (s: ReturnType<MdnsEngine['stats']>) => number) =>
      new Counter({
        name, help, registers,
        collect() {
          this.reset();
          const e = self.subject.engine;
          if (e) this.inc(read(e.stats()));
        },
      });
    mdns('ambassador_mdns_packets_received_total', 'mDNS packets received on our interfaces', (s) => s.packetsIn);
    mdns('ambassador_mdns_packets_sent_total', 'mDNS packets sent', (s) => s.packetsOut);
    mdns('ambassador_mdns_bytes_received_total', 'mDNS bytes received', (s) => s.bytesIn);
    mdns('ambassador_mdns_bytes_sent_total', 'mDNS bytes sent', (s) => s.bytesOut);
    mdns('ambassador_mdns_packets_malformed_total', 'mDNS packets dropped as malformed', (s) => s.malformed);
    mdns('ambassador_mdns_packets_ignored_total', 'Well-formed mDNS packets ignored (off-link source, response not from port 5353)', (s) => s.ignored);
    mdns('ambassador_mdns_send_errors_total', 'mDNS sends that failed', (s) => s.sendErrors);
    mdns('ambassador_mdns_probes_sent_total', 'mDNS probe queries sent', (s) => s.probesSent);
    mdns('ambassador_mdns_announcements_sent_total', 'mDNS announcements sent', (s) => s.announcementsSent);
    mdns('ambassador_mdns_goodbyes_sent_total', 'mDNS goodbye records sent', (s) => s.goodbyesSent);
    mdns('ambassador_mdns_conflicts_total', 'Name conflicts during probing or announced (led to renames)', (s) => s.conflicts);
    mdns('ambassador_mdns_queries_answered_total', 'mDNS queries answered', (s) => s.queriesAnswered);
    mdns('ambassador_mdns_rate_limited_total', 'mDNS answers held back by the RFC 6762 §6 rate limit', (s) => s.rateLimited);
    new Counter({
      name: 'ambassador_mdns_interface_changes_total', help: 'Interfaces coming up, going down, or changing addresses (change: up, down, address)', labelNames: ['change'], registers,
      collect() {
        this.reset();
        const e = self.subject.engine;
        if (!e) return;
        const s = e.stats();
        this.inc({ change: 'up' }, s.interfacesUp);
        this.inc({ change: 'down' }, s.interfacesDown);
        this.inc({ change: 'address' }, s.addressChanges);
      },
    });
    new Gauge({
      name: 'ambassador_registry_connected', help: '1 while the registry (--registry) answers, 0 while it is away (the last endpoints are kept meanwhile)', registers,
      collect() {
        this.reset();
        const r = self.subject.registryStatus;
        if (r) this.set(r.state === 'connected' ? 1 : 0);
      },
    });
    new Counter({
      name: 'ambassador_registry_requests_total', help: 'Requests sent to the registry (kind: read, write: keep-alives, registrations, deletions)', labelNames: ['kind'], registers,
      collect() {
        const r = self.subject.registryStatus;
        if (!r) return;
        this.reset();
        this.inc({ kind: 'read' }, r.reads);
        this.inc({ kind: 'write' }, r.requests - r.reads);
      },
    });
    new Counter({
      name: 'ambassador_registry_sessions_renewed_total', help: 'Registry leases / sessions found expired after a cut-off and taken anew (every registration written again)', registers,
      collect() {
        const r = self.subject.registryStatus;
        if (!r) return;
        this.reset();
        this.inc(r.sessionsRenewed);
      },
    });
    new Gauge({
      name: 'ambassador_mdns_interfaces', help: 'Network interfaces mDNS runs on now (0: waiting for one)', registers,
      collect() {
        this.reset();
        const e = self.subject.engine;
        if (e) this.set(e.stats().interfaces);
      },
    });
    new Gauge({
      name: 'ambassador_mdns_cache_records', help: 'Records in the mDNS cache', registers,
      collect() {
        this.reset();
        const e = self.subject.engine;
        if (e) this.set(e.stats().cacheSize);
      },
    });

    // Host probes, read at scrape time.
    const probe = (name: string, help: string, read: (p: HostLiveness) => number) =>
      new Counter({
        name, help, registers,
        collect() {
          this.reset();
          const p = self.subject.liveness;
          if (p) this.inc(read(p));
        },
      });
    probe('ambassador_host_probes_sent_total', 'Host probes sent to peer ambassadors', (p) => p.stats.probesSent);
    probe('ambassador_host_probe_bytes_sent_total', 'UDP payload bytes of host probes sent', (p) => p.stats.bytesSent);
    probe('ambassador_host_probe_replies_total', 'Host probe replies received', (p) => p.stats.repliesReceived);
    probe('ambassador_host_probe_bytes_received_total', 'UDP payload bytes of host probe replies received', (p) => p.stats.bytesReceived);
    probe('ambassador_host_probe_misses_total', 'Host probes not answered in time (loss, or a dead host)', (p) => p.stats.misses);
    probe('ambassador_host_probe_ignored_total', 'Datagrams on probe sockets that answered no probe of ours (dropped)', (p) => p.stats.ignored);
    probe('ambassador_host_probe_errors_total', 'ICMP errors on probe sockets (refused: the peer\'s ambassador is gone; unreachable)', (p) => p.stats.errors);
    new Gauge({
      name: 'ambassador_peer_host_up', help: '1 while a peer host answers host probes', labelNames: ['host'], registers,
      collect() {
        this.reset();
        for (const h of self.subject.liveness?.hosts() ?? []) this.set({ host: `${h.address}:${h.probePort}` }, h.alive ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ambassador_peer_host_loss_ratio', help: 'Share of host probes lost on the way to a peer host and back, while it answered', labelNames: ['host'], registers,
      collect() {
        this.reset();
        for (const h of self.subject.liveness?.hosts() ?? []) this.set({ host: `${h.address}:${h.probePort}` }, h.loss.rate);
      },
    });
    const answered = (name: string, help: string, read: (r: LivenessAnswerer) => number) =>
      new Counter({
        name, help, registers,
        collect() {
          this.reset();
          const r = self.subject.answerer;
          if (r) this.inc(read(r));
        },
      });
    answered('ambassador_host_probe_requests_received_total', 'Host probes received from connecting ambassadors', (r) => r.stats.requests);
    answered('ambassador_host_probe_replies_sent_total', 'Host probe replies sent', (r) => r.stats.replies);
    answered('ambassador_host_probe_request_bytes_received_total', 'UDP payload bytes received on the host probe port', (r) => r.stats.bytesIn);
    answered('ambassador_host_probe_reply_bytes_sent_total', 'UDP payload bytes of host probe replies', (r) => r.stats.bytesOut);
    new Counter({
      name: 'ambassador_host_probe_requests_dropped_total', help: 'Datagrams on the host probe port not answered (malformed, rate-limited)', labelNames: ['reason'], registers,
      collect() {
        this.reset();
        const r = self.subject.answerer;
        if (!r) return;
        this.inc({ reason: 'malformed' }, r.stats.malformed);
        this.inc({ reason: 'rate-limited' }, r.stats.rateLimited);
      },
    });

    for (const c of subject.connectors) this.watchConnector(c);
    for (const a of subject.advertisements) this.watchAdvertisement(a);
  }

  /** Counts a connector's events. Call before it starts; calling again for the same one does nothing. */
  watchConnector(c: ConnectorView): void {
    if (this.watched.has(c)) return;
    this.watched.add(c);
    this.connectors.push(c);
    const cl = listenerLabels(c);
    this.retries.inc(cl, 0);
    this.raced.inc(cl, 0);
    this.panics.inc(cl, 0);
    this.panicAttempts.inc(cl, 0);
    for (const limit of LIMIT_NAMES) this.refused.inc({ ...cl, limit }, 0);
    c.cluster.on('panic', (inPanic) => {
      if (inPanic) this.panics.inc(cl);
    });
    const l = c.listener;
    if (l instanceof ConnectListener) this.watchNodeListener(c, cl, l);
    else this.watchHaproxyFrontend(cl, l);
    const added = new WeakSet<Endpoint>();
    c.cluster.on('endpoint-added', (ep) => added.add(ep));
    c.cluster.on('endpoint-up', (ep, was) => {
      const reason = added.has(ep) ? 'discovered' : 'recovered';
      added.delete(ep);
      this.transitions.inc({ ...cl, endpoint: ep.label, to: 'up', reason });
      if (was === 'host-probe' || was === 'health-check' || was === 'outlier') this.flaps.inc({ ...cl, endpoint: ep.label, was });
    });
    c.cluster.on('endpoint-down', (ep, reason) => this.transitions.inc({ ...cl, endpoint: ep.label, to: 'down', reason }));
    this.watchChecker(cl, c.checker);
  }

  /** The Node data plane's listener: counted as its events come. */
  private watchNodeListener(c: ConnectorView, cl: { cluster: string; listener: string }, l: ConnectListener): void {
    l.on('connect-failed', (_conn, ep, code, phase) => {
      this.connectFailures.inc({ ...cl, endpoint: ep.label, code });
      // 'handshake': the TCP connect worked, the protocol handshake after it did not; TLS
      // failures show in their codes.
      if (phase === 'handshake' || isHandshakeCode(code)) this.handshakeFailures.inc({ ...cl, endpoint: ep.label, code });
    });
    // Keeps the established count of an endpoint that leaves (the counter must not go down), and
    // counts connections established to it afterwards (a connect in flight at its removal, with
    // keepConnectionsOnRemoval).
    const keepEstablished = (ep: Endpoint, n: number): void => {
      if (n === 0) return;
      let byLabel = this.removedEstablished.get(c);
      if (!byLabel) this.removedEstablished.set(c, (byLabel = new Map()));
      byLabel.set(ep.label, (byLabel.get(ep.label) ?? 0) + n);
    };
    c.cluster.on('endpoint-removed', (ep) => keepEstablished(ep, ep.connections));
    l.on('upstream-connected', (_conn, ep) => {
      if (ep.removed) keepEstablished(ep, 1);
    });
    l.on('failover', () => this.retries.inc(cl));
    l.on('connect-raced', () => this.raced.inc(cl));
    l.on('panic-attempt', () => this.panicAttempts.inc(cl));
    l.on('client-refused', (limit) => this.refused.inc({ ...cl, limit }));
    l.on('client-closed-no-endpoint', (_conn, reason) => this.clientFailures.inc({ ...cl, reason }));
    this.internalErrors.inc(cl, 0);
    l.on('internal-error', () => this.internalErrors.inc(cl));
    l.on('connection-closed', (conn, result) => {
      if (!result || !conn.endpoint) return;
      let byEp = this.closedBytes.get(c);
      if (!byEp) this.closedBytes.set(c, (byEp = new Map()));
      const t = byEp.get(conn.endpoint.label);
      if (t) {
        t.received += result.upstreamBytesRead;
        t.sent += result.upstreamBytesWritten;
      } else {
        byEp.set(conn.endpoint.label, { received: result.upstreamBytesRead, sent: result.upstreamBytesWritten });
      }
    });
  }

  /**
   * A listener carried by HAProxy: the same series, read from HAProxy's statistics (refreshed
   * before each scrape). HAProxy neither races connects nor says why one failed (code
   * ECONNFAILED); clients it finds no endpoint for are closed at once.
   */
  private watchHaproxyFrontend(cl: { cluster: string; listener: string }, l: HaproxyFrontend): void {
    l.on('connect-failed', (endpoint, n) => this.connectFailures.inc({ ...cl, endpoint, code: HAPROXY_CONNECT_FAILED }, n));
    l.on('failover', (n) => this.retries.inc(cl, n));
    l.on('client-refused', (limit, n) => this.refused.inc({ ...cl, limit }, n));
    l.on('client-closed-no-endpoint', (reason, n) => this.clientFailures.inc({ ...cl, reason }, n));
  }

  /** Counts an advertisement's state changes, target checks and relay connections (idempotent). */
  watchAdvertisement(a: AdvertisementView): void {
    if (this.watched.has(a)) return;
    this.watched.add(a);
    const service = a.spec.name;
    a.on('state', (state: string) => {
      this.advTransitions.inc({ service, state });
      const relay = a.relay;
      if (relay && !this.watchedRelays.has(relay)) {
        this.watchedRelays.add(relay);
        this.relayAccepted.inc({ service }, 0);
        relay.on('connection', () => this.relayAccepted.inc({ service }));
        relay.on('connect-failed', (_c, code) => this.relayFailures.inc({ service, code }));
        this.relayRefused.inc({ service }, 0);
        relay.on('client-refused', () => this.relayRefused.inc({ service }));
        this.relayInternalErrors.inc({ service }, 0);
        relay.on('internal-error', () => this.relayInternalErrors.inc({ service }));
      }
    });
    this.watchChecker({ cluster: `advertise:${service}`, listener: '' }, a.checker);
  }

  private readonly watchedRelays = new WeakSet<object>();
  private readonly watched = new WeakSet<object>();

  private watchChecker(labels: { cluster: string; listener: string }, checker: HealthChecker): void {
    checker.on('check', (ep, ok) => this.healthChecks.inc({ ...labels, endpoint: ep.label, result: ok ? 'ok' : 'fail' }));
  }

  /** Prometheus text exposition (HAProxy's statistics read first, when it carries listeners). */
  async text(): Promise<string> {
    await this.subject.haproxy?.refresh();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
