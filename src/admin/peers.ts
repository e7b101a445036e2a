import type { HostNetwork } from '../base/host-network.js';
import { redactTxt } from '../base/redaction.js';
import type { Endpoint } from '../cluster/endpoint.js';
import type { LastCheck } from '../cluster/health-checker.js';
import type { RegistryStatus } from '../discovery/registry/client.js';
import type { MetricsSubject } from './metrics.js';

/**
 * A registry connection (etcd, ZooKeeper) as /peers and the status page show it: read-only, no
 * credentials (a URL's user:password part is removed here all the same).
 */
export interface RegistryView {
  /** 'etcd', 'zookeeper', … */
  readonly kind: string;
  /** Where it connects (every member). */
  readonly url: string;
  /** 'connected', 'connecting', 'unreachable', … a word the page shows as it is. */
  readonly state: string;
  /** Epoch ms since when it is in that state. */
  readonly since?: number;
  /** Why, in words (the last error, a lost session …). */
  readonly reason?: string;
  /** Whether the registry authenticated us (its endpoints then count as named by the operator). */
  readonly authenticated?: boolean;
}

/** Which data plane carries a listener's bytes: 'node' (embedded) unless another one says so. */
export interface DataPlaneView {
  readonly kind: string;
  readonly state?: string;
  readonly reason?: string;
}

export interface PeersSubject extends MetricsSubject {
  readonly draining: boolean;
  /**
   * The one "no network" verdict of this host, from its interface monitor (base/host-network.ts):
   * /healthz says no-network while it is 'stranded'.
   */
  readonly hostNetwork?: Pick<HostNetwork, 'verdict' | 'noNetworkSince'>;
  /** The registry connection, when there is one (--registry). */
  readonly registry?: RegistryView | { status(): RegistryView };
  /** The --connect listeners of the ambassadors on the network (loops are refused against them). */
  readonly directory?: { list(): Array<{ instance: string; host: string; addresses: string[]; port: number; bind: string; service: string }> };
  /** The registry connection (--registry), read-only. */
  readonly registryStatus?: Readonly<RegistryStatus>;
  /** The registry instance name and state of each advertisement. */
  readonly registrar?: { instanceOf(owner: object): { instance: string; state: string } | undefined };
}

const verdict = (ok: boolean): 'up' | 'down' => (ok ? 'up' : 'down');

/**
 * Where an endpoint's health comes from. 'host-probe': its advertiser's ambassador checks the
 * service (sourceCheck, reported in host probe replies) and answers our probes of its host
 * (hostProbe). 'own-check': we check it ourselves (ownCheck). Passive outlier detection always
 * runs (outlier).
 */
function healthJson(c: MetricsSubject['connectors'][number], ep: Endpoint, now: number) {
  const peer = c.liveness?.peerFor(ep);
  const own = ep.healthOrigin === 'own-check';
  return {
    from: ep.healthOrigin,
    sourceCheck: ep.healthOrigin === 'host-probe' ? verdict(ep.sourceServing) : null,
    hostProbe: peer
      ? {
        state: peer.orphaned ? 'no-ambassador' : verdict(peer.alive),
        host: `${peer.address}:${peer.probePort}`,
        downCode: peer.downCode ?? null,
        lossRate: Math.round(peer.loss.rate * 1000) / 1000,
        missesToConvict: c.liveness!.missesNeeded(peer),
        rttMs: peer.rttMs === undefined ? null : Math.round(peer.rttMs * 10) / 10,
        lastReplyMsAgo: peer.lastReplyAt ? now - peer.lastReplyAt : null,
        lastReplyAt: peer.lastReplyAt ? new Date(peer.lastReplyAt).toISOString() : null,
      }
      : null,
    ownCheck: own ? { state: verdict(ep.checkHealthy), kind: c.checker.kind, lossRate: round3(c.checker.lossRate(ep)), last: lastCheckJson(c.checker.lastCheck(ep)) } : null,
    outlier: { ejected: ep.ejectedUntil > now, consecutiveFailures: ep.consecutiveFailures },
    flaps: ep.flaps,
  };
}

function lastCheckJson(last: LastCheck | undefined) {
  return last ? { at: new Date(last.at).toISOString(), ok: last.ok, code: last.code ?? null } : null;
}

/** A URL without its user:password@ part. */
function withoutCredentials(url: string): string {
  return url.replace(/\/\/[^/@]*@/g, '//');
}

function registryJson(r: NonNullable<PeersSubject['registry']>) {
  const v = 'status' in r ? r.status() : r;
  return {
    kind: v.kind,
    url: withoutCredentials(v.url),
    state: v.state,
    since: v.since === undefined ? null : new Date(v.since).toISOString(),
    reason: v.reason ?? null,
    authenticated: v.authenticated ?? null,
  };
}

function registryDetails(r: Readonly<RegistryStatus> | undefined) {
  if (!r) return {};
  return {
    member: r.member,
    lastError: r.lastError,
    requests: r.requests,
    reads: r.reads,
    sessionsRenewed: r.sessionsRenewed,
    endpointsTrusted: r.authenticated ? 'named-endpoints' : 'like-mdns',
    keepingLastEndpoints: r.state !== 'connected',
  };
}

/** A listener's data plane: what the connector says (a string or a view), else the embedded one. */
function dataPlaneJson(c: object): DataPlaneView {
  const d = (c as { dataPlane?: string | DataPlaneView }).dataPlane;
  if (d === undefined) return { kind: 'node' };
  return typeof d === 'string' ? { kind: d } : { kind: d.kind, state: d.state, reason: d.reason };
}

const limitJson = (n: number) => (Number.isFinite(n) ? n : null);

function round3(x: number | undefined): number | null {
  return x === undefined ? null : Math.round(x * 1000) / 1000;
}

function endpointJson(c: MetricsSubject['connectors'][number], ep: Endpoint, now: number) {
  const { bytesIn, bytesOut } = c.listener.bytesFor(ep);
  let active = 0;
  for (const conn of c.listener.connections) if (conn.state === 'open' && conn.endpoint === ep) active++;
  const down = ep.downReasonAt(now);
  return {
    label: ep.label,
    source: ep.source,
    /** Every source that reports it (mDNS and the registry: one endpoint). */
    via: ep.via,
    /** Injected credentials may go to it as to a --static endpoint: an authenticated registry named it. */
    namedByOperator: ep.named || ep.source === 'static' || ep.source === 'srv',
    address: ep.host,
    /** Every address of the peer, likeliest first (a failed connect moves on to the next). */
    addresses: ep.addresses,
    port: ep.port,
    priority: ep.priority,
    weight: ep.weight,
    txt: redactTxt(ep.txt),
    state: down === undefined ? 'up' : 'down',
    downReason: down ?? null,
    /** Since when it is in that state (up or down). */
    stateSince: new Date(ep.stateSince).toISOString(),
    ejectedForMs: ep.ejectedUntil > now ? ep.ejectedUntil - now : 0,
    health: healthJson(c, ep, now),
    activeConnections: active,
    connections: ep.connections,
    connectFailures: ep.failures,
    bytesFromEndpoint: bytesIn,
    bytesToEndpoint: bytesOut,
    lastSeen: new Date(ep.lastSeen).toISOString(),
    /** Seconds until the discovery record expires (mDNS TTL, DNS SRV TTL); null = no TTL (static). */
    ttlLeft: ep.expiresAt === undefined ? null : Math.max(0, Math.round((ep.expiresAt - now) / 1000)),
  };
}

type Connector = PeersSubject['connectors'][number];

/** What a caller adds to the snapshot (the status page: rate history, departed endpoints). */
export interface SnapshotExtras<E extends object, C extends object> {
  endpoint?: (c: Connector, ep: Endpoint) => E;
  cluster?: (c: Connector) => C;
}

/** The JSON of GET /peers: every cluster with its endpoints, every advertisement. */
export function peersSnapshot<E extends object = object, C extends object = object>(subject: PeersSubject, extras: SnapshotExtras<E, C> = {}) {
  const now = Date.now();
  const net = subject.engine?.network();
  return {
    host: subject.engine?.hostName ?? null,
    draining: subject.draining,
    /**
     * This host's network (every interface): 'waiting' (none but loopback ever had an address),
     * 'networked', 'stranded' (had one, none left: /healthz says no-network), and since when none has.
     */
    hostNetwork: subject.hostNetwork ? {
      verdict: subject.hostNetwork.verdict,
      noNetworkSince: subject.hostNetwork.noNetworkSince === undefined ? null : new Date(subject.hostNetwork.noNetworkSince).toISOString(),
    } : null,
    /** mDNS interfaces in use (name, addresses, up since); null when nothing uses multicast. */
    network: net ? {
      interfaces: net.interfaces.map((i) => ({ name: i.name, addresses: i.addresses, since: new Date(i.since).toISOString() })),
      noInterfaceSince: net.unusableSince === undefined ? null : new Date(net.unusableSince).toISOString(),
    } : null,
    /**
     * The registry connection (--registry); null without one. With this ambassador's own client
     * also: the member in use, requests and reads sent, leases/sessions renewed after a cut-off,
     * which trust its endpoints get ('named-endpoints' when it authenticated us, else
     * 'like-mdns'), and whether the last endpoints are being kept (static stability).
     */
    registry: subject.registry ? { ...registryJson(subject.registry), ...registryDetails(subject.registryStatus) } : null,
    clusters: subject.connectors.map((c) => {
      const addr = c.listener.address();
      let pending = 0;
      for (const conn of c.listener.connections) if (conn.state === 'pending') pending++;
      const limits = c.listener.limits;
      return {
        name: c.spec.name,
        listen: addr ? `${addr.address}:${addr.port}` : null,
        balance: c.spec.balance,
        where: c.spec.where,
        sources: c.sources.map((s) => s.kind),
        /** Which data plane carries the bytes ('node': the embedded one). */
        dataPlane: dataPlaneJson(c),
        /** Circuit breakers (null: no limit), and whether they refuse clients now. */
        limits: { maxConnections: limitJson(limits.maxConnections), maxPending: limitJson(limits.maxPending), maxPerEndpoint: limitJson(limits.maxPerEndpoint) },
        refusing: c.refusals.inBurst,
        /** Where injected credentials may go ('mutual-tls', 'named-endpoints', 'trusted-lan'); null = none injected. */
        credentials: c.credentials?.trust ?? null,
        warnings: c.credentials?.warnings ?? [],
        acceptedConnections: c.listener.accepted,
        pendingConnections: pending,
        panic: c.cluster.inPanic,
        endpoints: c.cluster.endpoints().map((ep) => ({ ...endpointJson(c, ep, now), ...extras.endpoint?.(c, ep) })),
        /** Instances announced but kept out by the where. filter, and why. */
        filteredOut: c.cluster.filteredOut().map(({ spec, why }) => ({
          label: spec.label, source: spec.source, address: spec.host, port: spec.port, txt: redactTxt(spec.txt), why,
        })),
        /** Instances of a backend that another instance stands for already (announced twice), and why. */
        duplicates: c.cluster.duplicates().map(({ spec, why }) => ({
          label: spec.label, source: spec.source, address: spec.host, port: spec.port, txt: redactTxt(spec.txt), why,
        })),
        /** Instances that must never be endpoints (a loop: one of our listeners, another ambassador's), and why. */
        refused: c.cluster.refused().map(({ spec, why }) => ({
          label: spec.label, source: spec.source, address: spec.host, port: spec.port, txt: redactTxt(spec.txt), why,
        })),
        ...extras.cluster?.(c),
      };
    }),
    /** Host probes this ambassador sends (connecting side) and answers (advertising side). */
    hostProbes: {
      sent: subject.liveness ? { ...subject.liveness.stats } : null,
      hosts: (subject.liveness?.hosts() ?? []).map((h) => ({
        host: `${h.address}:${h.probePort}`,
        state: h.orphaned ? 'no-ambassador' : verdict(h.alive),
        downCode: h.downCode ?? null,
        lossRate: Math.round(h.loss.rate * 1000) / 1000,
        missesToConvict: subject.liveness!.missesNeeded(h),
        probes: h.sent,
        replies: h.replies,
        endpoints: [...h.members.keys()].map((e) => e.label),
      })),
      answered: subject.answerer ? { port: subject.answerer.port, ...subject.answerer.stats } : null,
    },
    advertisements: subject.advertisements.map((a) => {
      const relayAddr = a.relay?.address();
      let relayActive = 0;
      for (const conn of a.relay?.connections ?? []) if (conn.state === 'open') relayActive++;
      const check = a.targetCheck();
      return {
        service: a.spec.name,
        instance: a.instance ?? a.spec.instance ?? null,
        target: `${a.spec.targetHost ?? '127.0.0.1'}:${a.spec.port}`,
        announcedPort: a.announcedPort ?? null,
        relay: relayAddr ? { port: relayAddr.port, activeConnections: relayActive } : null,
        priority: a.spec.priority,
        weight: a.spec.weight,
        txt: redactTxt(a.spec.txt),
        state: a.state,
        reason: a.reason,
        /** Since when it is in that state, for that reason. */
        since: new Date(a.stateSince).toISOString(),
        check: a.spec.check,
        /** The target's check: its verdict and the last one that finished. */
        targetCheck: { state: verdict(check.healthy), last: lastCheckJson(check.last) },
        /** Its registration in the registry (instance name there, registered / pending / withdrawn); null without --registry. */
        registry: subject.registrar?.instanceOf(a) ?? null,
      };
    }),
    /**
     * --connect listeners of the ambassadors on the network (this one's included) that forward to
     * mDNS endpoints: never endpoints nor advertised targets here (they would make loops).
     */
    ambassadorListeners: (subject.directory?.list() ?? []).map((l) => ({
      instance: l.instance, host: l.host, addresses: l.addresses, port: l.port, bind: l.bind, service: l.service,
    })),
  };
}
