import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { isIPv6 } from 'node:net';
import { systemClock, type Clock, type TimerHandle } from '../base/clock.js';
import type { Cluster } from './cluster.js';
import type { Endpoint } from './endpoint.js';
import { isHardFailure, LossEstimate, missesToConvict } from './evidence.js';
import { decodeLiveness, encodeLiveness, MAX_PORTS, NONCE_BYTES, REPLY, REQUEST, SERVING } from './liveness-wire.js';

/** One UDP flow to a peer's probe port (a connected socket by default). */
export interface LivenessTransport {
  send(datagram: Buffer): void;
  close(): void;
}

export interface LivenessTransportHandlers {
  /** A datagram from the peer (a connected socket receives nothing from anyone else). */
  message(datagram: Buffer): void;
  /** An errno code: ECONNREFUSED when the host says nothing listens on the port (ICMP). */
  error(code: string): void;
}

export type CreateLivenessTransport = (address: string, port: number, handlers: LivenessTransportHandlers) => LivenessTransport;

export interface HostLivenessOptions {
  /** Time between probes of a peer host that answers. Default 500 ms. */
  intervalMs?: number;
  /**
   * A probe unanswered this long (or three round-trip times, on a slow path) is a miss; after a
   * miss the next probe goes out at once, so a streak of misses is this far apart. Default 100 ms
   * (a LAN answers in well under 1 ms; Wi-Fi in a few).
   */
  missAfterMs?: number;
  /** No verdict of death before the host has been silent this long (from its first unanswered probe). Default 800 ms. */
  minSilenceMs?: number;
  /** Fewest misses in a row for a verdict; more as loss on the path grows (evidence.ts). Default 3. */
  minMisses?: number;
  /** Most misses in a row ever needed. Default 25. */
  maxMisses?: number;
  /** Each interval is scaled by a random factor in [1 - jitter, 1 + jitter]. Default 0.1. */
  jitter?: number;
  clock?: Clock;
  /** Runs `fn` after the I/O already waiting (default setImmediate): a reply that arrived while this process was busy is read before a deadline is judged. */
  afterPendingIo?: (fn: () => void) => void;
  createTransport?: CreateLivenessTransport;
  /** Fills `bytes` with unpredictable values (default: Web Crypto getRandomValues). */
  randomBytes?: (bytes: Uint8Array) => void;
}

/** Totals over every peer host, for metrics. */
export interface HostLivenessStats {
  probesSent: number;
  bytesSent: number;
  repliesReceived: number;
  bytesReceived: number;
  /** Probes with no reply within missAfterMs (late replies still count as signs of life). */
  misses: number;
  /** Datagrams that were not a reply to a probe we sent (malformed, unknown nonce). */
  ignored: number;
  /** ICMP errors (refused, unreachable) reported on probe sockets. */
  errors: number;
}

export type HostLivenessEvents = {
  /** A peer host stopped answering (code 'ESILENT' after silence, or an errno such as EHOSTUNREACH). */
  'host-down': [peer: PeerHost, code: string];
  'host-up': [peer: PeerHost];
  /**
   * The peer's host says nothing listens on the probe port (ICMP port unreachable): its
   * ambassador is gone, the host and maybe its services are not. Nobody vouches for its
   * endpoints any more: whoever judged the others should judge them now (`isOrphaned`).
   */
  orphaned: [peer: PeerHost];
  /** An orphaned peer's ambassador answers again: its endpoints are judged by host probes again. */
  adopted: [peer: PeerHost];
  /** A probe went unanswered: `needed` misses in a row make a verdict (emitted only while someone listens). */
  miss: [peer: PeerHost, needed: number];
  /**
   * Whether host probes vouch for `endpoint` changed (it joined or left a peer host, or its
   * peer was orphaned or adopted): whoever judges the others should look at it again.
   */
  handover: [endpoint: Endpoint, cluster: Cluster];
};

interface Outstanding {
  seq: number;
  nonce: Buffer;
  sentAt: number;
}

const MAX_OUTSTANDING = 32;

/**
 * Liveness of one peer host: the ambassador listening on `address`:`probePort`, shared by every
 * endpoint (of every cluster) that this ambassador advertises.
 */
export class PeerHost {
  /** Endpoints judged through this host, with their cluster. */
  readonly members = new Map<Endpoint, Cluster>();
  alive = true;
  /** Why it is down ('ESILENT', 'EHOSTUNREACH', …). */
  downCode: string | undefined;
  /** Its ambassador is gone (ICMP port unreachable) while the host lives: probes vouch for nothing. */
  orphaned = false;
  readonly loss = new LossEstimate();
  /** Probes in a row without a reply. */
  misses = 0;
  /** Send time of the first unanswered probe of the current streak; 0 = none. */
  silentSince = 0;
  /** The current streak ended in a down verdict: its misses were a death, not loss. */
  convicted = false;
  sent = 0;
  replies = 0;
  lastReplyAt = 0;
  /** Smoothed round-trip time (ms) of replies. */
  rttMs: number | undefined;
  /** The answerer's last word on each port: SERVING or not. */
  readonly status = new Map<number, number>();
  /** @internal */ transport: LivenessTransport | undefined;
  /** @internal */ timer: TimerHandle | undefined;
  /** @internal */ readonly outstanding: Outstanding[] = [];
  /** @internal */ seq = 0;
  /** @internal */ awaiting: Outstanding | undefined;
  /** @internal */ appliedSeq = 0;

  constructor(
    readonly key: string,
    readonly address: string,
    readonly probePort: number,
  ) {}

  /** Distinct ports of the members, as sent in a request. */
  ports(): number[] {
    const set = new Set<number>();
    for (const ep of this.members.keys()) set.add(ep.port);
    return [...set].sort((a, b) => a - b).slice(0, MAX_PORTS);
  }
}

/**
 * Host liveness between ambassadors: one small UDP probe per peer host, answered by the peer's
 * ambassador itself, however many services and clusters use that host. Service health comes
 * with the answer (the advertiser checks its own targets: source check), so no connection is
 * ever opened to a peer's real service except to carry traffic.
 *
 * A host is down on a hard signal at once (ICMP port unreachable: its ambassador is gone; host or
 * network unreachable), or after a silence that ordinary loss would not explain: misses in a row,
 * their number growing with the loss seen on the path (evidence.ts), and at least minSilenceMs
 * of it. Marks endpoints through `cluster.setHealth(ep, …, 'host-probe' | 'source-check')`.
 */
export class HostLiveness extends EventEmitter<HostLivenessEvents> {
  readonly intervalMs: number;
  readonly missAfterMs: number;
  readonly minSilenceMs: number;
  readonly minMisses: number;
  readonly maxMisses: number;
  readonly jitter: number;
  readonly stats: HostLivenessStats = { probesSent: 0, bytesSent: 0, repliesReceived: 0, bytesReceived: 0, misses: 0, ignored: 0, errors: 0 };
  private readonly clock: Clock;
  private readonly afterPendingIo: (fn: () => void) => void;
  private readonly createTransport: CreateLivenessTransport;
  private readonly randomBytes: (bytes: Uint8Array) => void;
  private readonly peers = new Map<string, PeerHost>();
  private readonly peerOf = new Map<Endpoint, PeerHost>();
  private readonly watched = new Map<Cluster, { accept: (ep: Endpoint) => boolean; off: () => void }>();
  private stopped = false;

  constructor(options: HostLivenessOptions = {}) {
    super();
    this.intervalMs = Math.max(1, options.intervalMs ?? 500);
    this.missAfterMs = Math.max(1, options.missAfterMs ?? 100);
    this.minSilenceMs = Math.max(0, options.minSilenceMs ?? 800);
    this.minMisses = Math.max(1, options.minMisses ?? 3);
    this.maxMisses = Math.max(this.minMisses, options.maxMisses ?? 25);
    this.jitter = Math.min(0.5, Math.max(0, options.jitter ?? 0.1));
    this.clock = options.clock ?? systemClock;
    this.afterPendingIo = options.afterPendingIo ?? ((fn) => void setImmediate(fn));
    this.createTransport = options.createTransport ?? udpTransport;
    this.randomBytes = options.randomBytes ?? ((b) => void globalThis.crypto.getRandomValues(b));
    this.setMaxListeners(0); // one 'handover' listener per connector
  }

  /** Peer hosts probed now. */
  hosts(): PeerHost[] {
    return [...this.peers.values()];
  }

  /** The peer host judging `ep`, if any. */
  peerFor(ep: Endpoint): PeerHost | undefined {
    return this.peerOf.get(ep);
  }

  /** Whether `ep`'s peer ambassador is gone (its host refuses host probes): judge it another way. */
  isOrphaned(ep: Endpoint): boolean {
    return this.peerOf.get(ep)?.orphaned === true;
  }

  /** Misses in a row that would convict `peer` now. */
  missesNeeded(peer: PeerHost): number {
    return missesToConvict(peer.loss.rate, this.minMisses, this.maxMisses);
  }

  /**
   * Judge the endpoints of `cluster` for which `probePort(ep)` names a probe port (their
   * advertiser runs an ambassador); others are left to the cluster's own checks. Follows the
   * cluster's endpoints as they come, change and go.
   */
  watch(cluster: Cluster, probePort: (ep: Endpoint) => number | undefined): void {
    if (this.stopped || this.watched.has(cluster)) return;
    const sync = (ep: Endpoint): void => this.sync(cluster, ep, probePort(ep));
    const onRemoved = (ep: Endpoint): void => this.leave(ep, false);
    cluster.on('endpoint-added', sync);
    cluster.on('endpoint-updated', sync);
    cluster.on('endpoint-removed', onRemoved);
    this.watched.set(cluster, {
      accept: (ep) => probePort(ep) !== undefined,
      off: () => {
        cluster.off('endpoint-added', sync);
        cluster.off('endpoint-updated', sync);
        cluster.off('endpoint-removed', onRemoved);
      },
    });
    for (const ep of cluster.endpoints()) sync(ep);
  }

  /** Stop judging `cluster`'s endpoints (their verdicts are cleared). */
  unwatch(cluster: Cluster): void {
    const w = this.watched.get(cluster);
    if (!w) return;
    w.off();
    this.watched.delete(cluster);
    for (const [ep, peer] of [...this.peerOf]) if (peer.members.get(ep) === cluster) this.leave(ep, true);
  }

  stop(): void {
    if (this.stopped) return;
    for (const c of [...this.watched.keys()]) this.unwatch(c);
    for (const peer of [...this.peers.values()]) this.drop(peer);
    this.stopped = true;
  }

  private sync(cluster: Cluster, ep: Endpoint, probePort: number | undefined): void {
    if (this.stopped || ep.removed) return;
    const key = probePort === undefined ? undefined : peerKey(ep.host, probePort);
    const current = this.peerOf.get(ep);
    if (current && current.key === key) return;
    if (current) this.leave(ep, true);
    if (key === undefined || probePort === undefined) return;
    let peer = this.peers.get(key);
    const fresh = !peer;
    if (!peer) {
      peer = new PeerHost(key, ep.host, probePort);
      this.peers.set(key, peer);
    }
    peer.members.set(ep, cluster);
    this.peerOf.set(ep, peer);
    if (!peer.orphaned) {
      ep.healthOrigin = 'host-probe';
      // A newcomer takes the host's current word.
      if (!peer.alive) cluster.setHealth(ep, false, 'host-probe');
      const st = peer.status.get(ep.port);
      if (st !== undefined) cluster.setHealth(ep, st === SERVING, 'source-check');
      else if (!fresh && peer.alive) this.probeSoon(peer); // learn its port's status
    }
    if (fresh) this.open(peer);
    this.emit('handover', ep, cluster);
  }

  /** `ep` is no longer judged through its peer host; `clear` resets the verdicts it had from it. */
  private leave(ep: Endpoint, clear: boolean): void {
    const peer = this.peerOf.get(ep);
    if (!peer) return;
    const cluster = peer.members.get(ep);
    peer.members.delete(ep);
    this.peerOf.delete(ep);
    if (clear && cluster && !ep.removed) {
      if (ep.healthOrigin === 'host-probe') ep.healthOrigin = 'passive';
      cluster.setHealth(ep, true, 'host-probe');
      cluster.setHealth(ep, true, 'source-check');
      this.emit('handover', ep, cluster);
    }
    if (peer.members.size === 0) this.drop(peer);
  }

  private open(peer: PeerHost): void {
    try {
      peer.transport = this.createTransport(peer.address, peer.probePort, {
        message: (d) => this.onDatagram(peer, d),
        error: (code) => this.onError(peer, code),
      });
    } catch (err) {
      peer.transport = undefined;
      this.onError(peer, (err as NodeJS.ErrnoException).code ?? 'EINVAL');
      return;
    }
    this.send(peer);
  }

  private drop(peer: PeerHost): void {
    peer.timer?.cancel();
    peer.timer = undefined;
    peer.transport?.close();
    peer.transport = undefined;
    this.peers.delete(peer.key);
  }

  /** Probe now unless a probe is already awaiting its reply. */
  private probeSoon(peer: PeerHost): void {
    if (peer.awaiting || !this.peers.has(peer.key)) return;
    peer.timer?.cancel();
    this.send(peer);
  }

  private send(peer: PeerHost): void {
    peer.timer = undefined;
    if (this.peers.get(peer.key) !== peer) return;
    const nonce = Buffer.allocUnsafe(NONCE_BYTES);
    this.randomBytes(nonce);
    const datagram = encodeLiveness(REQUEST, nonce, peer.ports().map((port) => ({ port })));
    const probe: Outstanding = { seq: ++peer.seq, nonce, sentAt: this.clock.now() };
    peer.outstanding.push(probe);
    if (peer.outstanding.length > MAX_OUTSTANDING) peer.outstanding.shift();
    peer.awaiting = probe;
    peer.sent++;
    this.stats.probesSent++;
    this.stats.bytesSent += datagram.length;
    peer.transport?.send(datagram);
    // A path slower than missAfterMs (a congested Wi-Fi) gets a deadline that fits it, within bounds.
    const deadline = Math.min(4 * this.missAfterMs, Math.max(this.missAfterMs, Math.round(3 * (peer.rttMs ?? 0))));
    peer.timer = this.clock.setTimeout(() => this.afterPendingIo(() => this.onDeadline(peer, probe)), deadline);
  }

  private onDeadline(peer: PeerHost, probe: Outstanding): void {
    if (peer.awaiting !== probe || this.peers.get(peer.key) !== peer) return;
    peer.awaiting = undefined;
    peer.misses++;
    this.stats.misses++;
    if (peer.silentSince === 0) peer.silentSince = probe.sentAt;
    if (this.listenerCount('miss') > 0) this.emit('miss', peer, this.missesNeeded(peer));
    const now = this.clock.now();
    if (peer.alive && !peer.orphaned && peer.misses >= this.missesNeeded(peer) && now - peer.silentSince >= this.minSilenceMs) {
      this.convict(peer, 'ESILENT');
    }
    // Suspect: probe again at once; down (or orphaned): back to the normal pace, waiting for it.
    if (peer.alive && !peer.orphaned) this.send(peer);
    else this.schedule(peer, probe.sentAt);
  }

  private schedule(peer: PeerHost, lastSentAt: number): void {
    peer.timer?.cancel();
    const factor = 1 + this.jitter * (2 * this.clock.random() - 1);
    const due = lastSentAt + Math.round(this.intervalMs * factor);
    peer.timer = this.clock.setTimeout(() => this.send(peer), Math.max(0, due - this.clock.now()));
  }

  private onDatagram(peer: PeerHost, datagram: Buffer): void {
    if (this.peers.get(peer.key) !== peer) return;
    const msg = decodeLiveness(datagram);
    const i = msg && msg.type === REPLY ? peer.outstanding.findIndex((o) => o.nonce.equals(msg.nonce)) : -1;
    if (!msg || i < 0) {
      this.stats.ignored++;
      return;
    }
    const probe = peer.outstanding[i]!;
    peer.outstanding.splice(0, i + 1); // this one and every older one: answered or lost
    this.stats.repliesReceived++;
    this.stats.bytesReceived += datagram.length;
    peer.replies++;
    const now = this.clock.now();
    peer.lastReplyAt = now;
    // Any reply is a sign of life, late or not; the misses before it were losses, unless they
    // already convicted the host (then they were an outage, which says nothing about loss).
    if (!peer.convicted) peer.loss.answered(peer.misses);
    peer.misses = 0;
    peer.silentSince = 0;
    peer.convicted = false;
    const rtt = now - probe.sentAt;
    peer.rttMs = peer.rttMs === undefined ? rtt : peer.rttMs + (rtt - peer.rttMs) / 8;
    if (peer.awaiting === probe) {
      peer.awaiting = undefined;
      this.schedule(peer, probe.sentAt);
    } else if (!peer.awaiting) {
      this.schedule(peer, probe.sentAt);
    }
    if (peer.orphaned) {
      // Its ambassador is back on the same port: probes vouch for its endpoints again.
      peer.orphaned = false;
      for (const ep of peer.members.keys()) ep.healthOrigin = 'host-probe';
      this.emit('adopted', peer);
      for (const [ep, cluster] of peer.members) this.emit('handover', ep, cluster);
    }
    if (!peer.alive) {
      peer.alive = true;
      peer.downCode = undefined;
      for (const [ep, cluster] of peer.members) cluster.setHealth(ep, true, 'host-probe');
      this.emit('host-up', peer);
    }
    // Service health at the source: the newest word on each port wins.
    if (probe.seq > peer.appliedSeq) {
      peer.appliedSeq = probe.seq;
      for (const e of msg.entries) {
        peer.status.set(e.port, e.status);
        for (const [ep, cluster] of peer.members) if (ep.port === e.port) cluster.setHealth(ep, e.status === SERVING, 'source-check');
      }
    }
  }

  private onError(peer: PeerHost, code: string): void {
    if (this.peers.get(peer.key) !== peer) return;
    this.stats.errors++;
    if (code === 'ECONNREFUSED') {
      // The host itself answers that nothing listens on the probe port: the ambassador is gone,
      // the host is not, and its services may well be (a restart, a crash of the ambassador
      // alone). That says nothing about them: hand them to our own checks, as any endpoint with
      // no ambassador behind it, until it answers again or its announcement goes.
      if (!peer.orphaned) this.orphan(peer);
      return;
    }
    // The network's own answer, not a silence: the host cannot be reached.
    if (isHardFailure(code) && peer.alive && !peer.orphaned) this.convict(peer, code);
  }

  private orphan(peer: PeerHost): void {
    peer.orphaned = true;
    peer.alive = true;
    peer.downCode = undefined;
    peer.status.clear();
    for (const [ep, cluster] of peer.members) {
      cluster.setHealth(ep, true, 'host-probe');
      cluster.setHealth(ep, true, 'source-check');
    }
    this.emit('orphaned', peer);
    for (const [ep, cluster] of peer.members) this.emit('handover', ep, cluster);
  }

  private convict(peer: PeerHost, code: string): void {
    peer.alive = false;
    peer.downCode = code;
    peer.convicted = true;
    for (const [ep, cluster] of peer.members) cluster.setHealth(ep, false, 'host-probe');
    this.emit('host-down', peer, code);
    if (!peer.awaiting) this.schedule(peer, this.clock.now());
  }
}

function peerKey(address: string, port: number): string {
  return `${address}|${port}`;
}

/** A connected UDP socket: the kernel drops datagrams from anyone but the peer, and reports ICMP errors. */
export function udpTransport(address: string, port: number, h: LivenessTransportHandlers): LivenessTransport {
  const socket = dgram.createSocket({ type: isIPv6(address.replace(/%.*$/, '')) ? 'udp6' : 'udp4' });
  let connected = false;
  let closed = false;
  let queued: Buffer | undefined;
  socket.on('message', (d) => h.message(d));
  socket.on('error', (err: NodeJS.ErrnoException) => h.error(err.code ?? 'EIO'));
  socket.connect(port, address, (err?: Error) => {
    // A connect that failed (ENETUNREACH: no route to an address a registry or an announcement
    // named) leaves the socket unconnected, where send(data, callback) would throw: the peer is
    // unreachable, said as an error like any ICMP one.
    if (err) {
      if (!closed) h.error((err as NodeJS.ErrnoException).code ?? 'EIO');
      return;
    }
    connected = true;
    if (queued && !closed) socket.send(queued, onSent);
    queued = undefined;
  });
  function onSent(err: Error | null): void {
    if (err && !closed) h.error((err as NodeJS.ErrnoException).code ?? 'EIO');
  }
  return {
    send(d) {
      if (closed) return;
      if (connected) socket.send(d, onSent);
      else queued = d; // until the connect completes (next tick): only the newest matters
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        socket.close();
      } catch {
        /* already closed */
      }
    },
  };
}
