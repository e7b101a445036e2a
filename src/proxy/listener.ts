import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { createBalancer, type Balancer } from '../cluster/balancer.js';
import type { Cluster, EndpointDownReason } from '../cluster/cluster.js';
import type { Endpoint, HealthJudge } from '../cluster/endpoint.js';
import { destroyQuietly, noop, type AttemptOwner, type ConnectAttempt } from './connect.js';
import type { ProxyConnection } from './connection.js';
import type { Clock } from '../base/clock.js';
import { DeadlineQueue, type Deadline } from './deadlines.js';
import type { Greeting, Handshake } from './handshake.js';
import { MAX_LINGERING_REFUSALS, type LimitName, type ListenerLimits } from './limits.js';
import { pickEndpoint, type FailedTries, type Pick } from './pick.js';
import type { PipeResult } from './pipe.js';
import { connectWithReader } from './reader.js';
import { Refusals, sendAndClose } from './refusal.js';
import { retireAtPause } from './retire.js';
import { ProxyServer, type CloseOptions } from './server.js';
import {
  ClientSession,
  type ConnectFailurePhase,
  type EndReason,
  type NoEndpointReason,
  type SessionHost,
  type SessionRules,
} from './session.js';

export { HandshakeError, type ClientHello, type Greeting, type Handshake } from './handshake.js';
export { ENDPOINT_DOWN, type ConnectFailurePhase, type NoEndpointReason } from './session.js';

/** Opens the upstream socket (default: net.connect). A tls.TLSSocket is awaited until 'secureConnect'. */
export type CreateConnection = (endpoint: Endpoint) => net.Socket;

export interface ConnectListenerOptions {
  cluster: Cluster;
  /** Port to listen on (0 = ephemeral). */
  port: number;
  /** Address to bind. Default 127.0.0.1. */
  host?: string;
  /** Also accept on this address, same port (`::1` beside `127.0.0.1`; skipped where the host has no such address). */
  alsoHost?: string;
  /** Balancer instance or strategy name. Default 'round-robin'. */
  balancer?: Balancer | string;
  /** Per-attempt connect timeout. Default 2000 ms. */
  connectTimeoutMs?: number;
  /**
   * A connect still pending after this long is raced by another attempt — to the next endpoint,
   * or to the same one when it is the only one — and kept: the first to complete carries the
   * client. Default 250 ms (RFC 8305's connection attempt delay).
   */
  raceDelayMs?: number;
  /** Endpoints tried per client before giving up (never more than are usable). Default 5. */
  maxConnectAttempts?: number;
  /** How long a client waits for an endpoint when none is usable. Default 5000 ms. */
  noEndpointWaitMs?: number;
  /** Close a connection after this long without traffic. Default 0 = never. */
  idleTimeoutMs?: number;
  /** TCP keep-alive initial delay, both sides. Default 30000 ms. */
  keepAliveInitialDelayMs?: number;
  /**
   * Keep proxied connections open when their endpoint is removed from discovery or fails its
   * health checks. Default false: they are closed so clients reconnect to a live endpoint.
   * (An outlier ejection never closes existing connections: connects failing does not mean the
   * established ones are broken, and killing them would add load to a struggling peer.)
   */
  keepConnectionsOnRemoval?: boolean;
  /**
   * When an endpoint leaves discovery (goodbye, TTL expiry) or moves to another address, its
   * open connections are closed at their first pause of this long with no byte in either
   * direction, not at once: leaving discovery means "no new connections here", and the old
   * location usually still serves, so a request in flight at that instant (typically on a
   * connection opened a moment before the goodbye arrived) gets its reply instead of a reset.
   * Default 250 ms. (Failed health checks still close at once: the peer is gone.)
   */
  retireQuietMs?: number;
  /** Upper bound on that wait: a connection that never pauses is closed after this. Default 5000 ms. */
  retireMaxMs?: number;
  handshake?: Handshake;
  /** Runs on every client before an endpoint is picked (see Greeting). */
  greet?: Greeting;
  /** Bound on the handshake, and on the greeting. Default 5000 ms. */
  handshakeTimeoutMs?: number;
  createConnection?: CreateConnection;
  /**
   * Encodes a one-line message in the client's protocol (e.g. a RESP error), sent to a client
   * that is closed without an upstream before the close. Default: the client is just closed.
   * `code` says why: the HandshakeError's code when the handshake was rejected, else the
   * NoEndpointReason, or the limit that refused the client.
   */
  errorReply?: (message: string, code: string) => Buffer | string;
  /** Circuit breakers; past one a client is refused at once ('client-refused'). Default: none. */
  limits?: Partial<ListenerLimits>;
  /**
   * Time of the clients' deadlines (race point, connect and handshake timeouts, waits). Default
   * the system clock; a test steps a FakeClock so a loaded machine cannot reorder them.
   */
  clock?: Clock;
}

export type ConnectListenerEvents = {
  /** A client was accepted. */
  connection: [conn: ProxyConnection];
  /** The client is now piped to `endpoint` (after `attempt` tries, handshake done). */
  'upstream-connected': [conn: ProxyConnection, endpoint: Endpoint, attempt: number];
  /**
   * A connect (or handshake) to `endpoint` failed; `code` e.g. ECONNREFUSED, ETIMEDOUT, EHANDSHAKE;
   * `phase` 'handshake' when the TCP (and TLS) connect worked and the protocol handshake did not.
   */
  'connect-failed': [conn: ProxyConnection, endpoint: Endpoint, code: string, phase: ConnectFailurePhase];
  /** After a failure on `from`, the client is being retried on `to`. */
  failover: [conn: ProxyConnection, from: Endpoint, to: Endpoint];
  /** A connect was slow: another attempt (to `endpoint`) starts beside it. */
  'connect-raced': [conn: ProxyConnection, endpoint: Endpoint];
  /** Every endpoint is down: a client is tried on `endpoint` anyway (panic mode). */
  'panic-attempt': [endpoint: Endpoint];
  /**
   * The client was closed without an upstream: 'no-endpoint' = none became usable within
   * noEndpointWaitMs; 'all-failed' = every attempt failed.
   */
  'client-closed-no-endpoint': [conn: ProxyConnection, reason: NoEndpointReason, attempts: number];
  /** A connection ended (result undefined if it never got an upstream). */
  'connection-closed': [conn: ProxyConnection, result: PipeResult | undefined];
  /**
   * A client was refused at once by a circuit breaker (with `errorReply` when there is one). No
   * 'connection' nor 'connection-closed' for it: refusing must cost next to nothing.
   */
  'client-refused': [limit: LimitName];
  /** The server failed after it was listening (rare). */
  'listener-error': [error: Error];
  /**
   * An unexpected exception while serving a client (a bug): the client was closed, the process
   * goes on. Once per client.
   */
  'internal-error': [conn: ProxyConnection, error: unknown];
};


/**
 * `--connect NAME=[BIND:]PORT`: accepts clients and forwards each to an endpoint of a cluster,
 * retrying on the next endpoint when a connect fails, before the client notices anything. Each
 * client is a ClientSession (session.ts); the listener follows the cluster (waking waiting
 * clients, cancelling connects to endpoints that went down, closing or retiring connections to
 * endpoints that left) and turns what sessions report into events.
 */
export class ConnectListener extends EventEmitter<ConnectListenerEvents> {
  readonly cluster: Cluster;
  readonly balancer: Balancer;
  readonly connectTimeoutMs: number;
  readonly raceDelayMs: number;
  readonly maxConnectAttempts: number;
  readonly noEndpointWaitMs: number;
  readonly handshakeTimeoutMs: number;
  readonly retireQuietMs: number;
  readonly retireMaxMs: number;
  readonly limits: Readonly<ListenerLimits>;
  /** Clients accepted so far (refused ones not included; read by the metrics at scrape time). */
  accepted = 0;
  private readonly sessions: ConnectSessions;
  private readonly proxy: ProxyServer;
  private attached = false;

  constructor(options: ConnectListenerOptions) {
    super();
    this.cluster = options.cluster;
    this.balancer =
      typeof options.balancer === 'object' ? options.balancer : createBalancer(options.balancer ?? 'round-robin');
    this.connectTimeoutMs = Math.max(1, options.connectTimeoutMs ?? 2000);
    this.raceDelayMs = Math.max(1, options.raceDelayMs ?? 250);
    this.maxConnectAttempts = Math.max(1, options.maxConnectAttempts ?? 5);
    this.noEndpointWaitMs = Math.max(0, options.noEndpointWaitMs ?? 5000);
    this.handshakeTimeoutMs = Math.max(1, options.handshakeTimeoutMs ?? 5000);
    this.retireQuietMs = Math.max(0, options.retireQuietMs ?? 250);
    this.retireMaxMs = Math.max(this.retireQuietMs, options.retireMaxMs ?? 5000);
    const l = options.limits ?? {};
    this.limits = {
      maxConnections: Math.max(1, l.maxConnections ?? Infinity),
      maxPending: Math.max(1, l.maxPending ?? Infinity),
      maxPerEndpoint: Math.max(1, l.maxPerEndpoint ?? Infinity),
    };
    this.sessions = new ConnectSessions(this, options);
    this.proxy = new ProxyServer(options.host ?? '127.0.0.1', options.port, this.onClient, (err) => this.emit('listener-error', err));
    if (options.alsoHost !== undefined) this.proxy.alsoListenOn(options.alsoHost);
    if (this.limits.maxConnections !== Infinity) {
      this.proxy.setLimit(this.limits.maxConnections, (c) => this.sessions.refuse(c, 'max-connections'), MAX_LINGERING_REFUSALS + 16,
        () => this.emit('client-refused', 'max-connections'));
    }
  }

  /** Live connections (pending and open). */
  get connections(): ReadonlySet<ProxyConnection> {
    return this.proxy.connections;
  }

  get server(): net.Server {
    return this.proxy.server;
  }

  /** Start listening; rejects with a one-line error (EADDRINUSE, …) naming the address. */
  async listen(): Promise<net.AddressInfo> {
    const addr = await this.proxy.listen();
    if (!this.attached) {
      this.attached = true;
      this.cluster.on('endpoint-removed', this.onEndpointRemoved);
      this.cluster.on('endpoint-health', this.onEndpointHealth);
      this.cluster.on('endpoint-updated', this.onEndpointUpdated);
      this.cluster.on('endpoint-down', this.onEndpointDown);
      this.cluster.on('changed', this.onClusterChanged);
    }
    return addr;
  }

  address(): net.AddressInfo | undefined {
    return this.proxy.address();
  }

  /** Every address:port it accepts on (with alsoHost: both). */
  addresses(): net.AddressInfo[] {
    return this.proxy.addresses();
  }

  /** Stop accepting; let open connections finish for up to drainMs, then destroy what is left. */
  async close(options: CloseOptions = {}): Promise<void> {
    for (const d of this.sessions.deadlines.items()) if (d instanceof LostAttempt) d.drop();
    if (this.attached) {
      this.attached = false;
      this.cluster.off('endpoint-removed', this.onEndpointRemoved);
      this.cluster.off('endpoint-health', this.onEndpointHealth);
      this.cluster.off('endpoint-updated', this.onEndpointUpdated);
      this.cluster.off('endpoint-down', this.onEndpointDown);
      this.cluster.off('changed', this.onClusterChanged);
    }
    await this.proxy.close(options);
  }

  /**
   * Bytes received from / sent to `ep`, including connections still open (Endpoint.bytesIn/Out
   * are only updated when a connection closes). O(open connections): meant for scrapes, not hot paths.
   */
  bytesFor(ep: Endpoint): { bytesIn: number; bytesOut: number } {
    let bytesIn = ep.bytesIn;
    let bytesOut = ep.bytesOut;
    for (const c of this.proxy.connections) {
      if (c.state === 'open' && c.endpoint === ep && c.upstream) {
        bytesIn += c.upstream.bytesRead;
        bytesOut += c.upstream.bytesWritten;
      }
    }
    return { bytesIn, bytesOut };
  }

  /** Close every connection open to `ep` (used on removal / failed health checks). */
  closeConnectionsTo(ep: Endpoint, code = 'EREMOVED'): number {
    let n = 0;
    for (const c of this.proxy.connections) {
      if (c.state === 'open' && c.endpoint === ep) {
        c.close(code);
        n++;
      }
    }
    return n;
  }

  /**
   * Close every connection open to `ep` — or, with `onlyMoved`, to an address `ep` no longer
   * has — at its first pause of retireQuietMs (bounded by `maxMs`, default retireMaxMs; Infinity
   * waits for a real pause however long it takes). Returns how many.
   */
  retireConnectionsTo(ep: Endpoint, code = 'EREMOVED', onlyMoved = false, maxMs = this.retireMaxMs): number {
    let n = 0;
    for (const c of this.proxy.connections) {
      if (c.state !== 'open' || c.endpoint !== ep) continue;
      if (onlyMoved && c.endpointGeneration === ep.generation) continue;
      retireAtPause(c, code, this.retireQuietMs, maxMs);
      n++;
    }
    return n;
  }

  /** A client was accepted: the circuit breaker on pending clients, then its session. */
  private readonly onClient = (client: net.Socket): void => {
    const sessions = this.sessions;
    if (sessions.pending >= this.limits.maxPending) return sessions.refuse(client, 'max-pending');
    sessions.pending++;
    this.accepted++;
    const s = new ClientSession(sessions, client);
    this.proxy.track(s);
    s.start();
  };

  /** Clients waiting for an endpoint go on once one they have not failed on is usable. */
  private readonly onClusterChanged = (): void => {
    const waiting = this.sessions.waiting;
    if (waiting.size === 0) return;
    const healthy = this.cluster.healthy();
    for (const s of [...waiting]) s.wake(healthy);
  };

  private readonly onEndpointRemoved = (ep: Endpoint): void => {
    // A peer that announced its drain is the one to end its connections: a relaying ambassador
    // closes them when its drain ends, a service on the LAN address outlives its ambassador.
    // Closing them here would cut every held connection at the goodbye.
    if (ep.draining) return;
    if (!this.sessions.rules.keepConnectionsOnRemoval) this.retireConnectionsTo(ep, 'EREMOVED');
  };

  /**
   * The endpoint moved (migration, renumbering): connections to its old address go as on a
   * removal, and connects still pending there are retried at the new address now.
   */
  private readonly onEndpointUpdated = (ep: Endpoint, addressChanged: boolean): void => {
    if (!addressChanged) return;
    this.cancelConnectsTo(ep);
    if (!this.sessions.rules.keepConnectionsOnRemoval) this.retireConnectionsTo(ep, 'EMOVED', true);
  };

  /**
   * An endpoint found unreachable (health checks, or other clients' connects failing): clients
   * still waiting for their connect to it move on to the next endpoint now instead of waiting out
   * --connect-timeout. (Not on a goodbye: a leaving endpoint usually still accepts.)
   */
  private readonly onEndpointDown = (ep: Endpoint, reason: EndpointDownReason): void => {
    if (reason === 'goodbye') return;
    // With nothing else usable, those connects are the clients' best chance (panic mode).
    if (reason !== 'removed' && this.cluster.healthy().length === 0) return;
    this.cancelConnectsTo(ep);
  };

  /**
   * Connects pending to `ep` give up with ENDPOINT_DOWN: their clients move on; those that lost
   * their race end without a verdict. (Every one has a deadline.)
   */
  private cancelConnectsTo(ep: Endpoint): void {
    for (const d of this.sessions.deadlines.items()) {
      if (d instanceof ClientSession) d.endpointGone(ep);
      else if (d instanceof LostAttempt && d.attempt.ep === ep) d.drop();
    }
  }

  /**
   * Our checks or host probes found the endpoint dead: its connections go at once (the peer is
   * gone). Its own ambassador saying the service stopped (source check) is a withdrawal, handled
   * like a goodbye: connections go at their first pause.
   */
  private readonly onEndpointHealth = (ep: Endpoint, healthy: boolean, judge: HealthJudge): void => {
    if (healthy || this.sessions.rules.keepConnectionsOnRemoval) return;
    // A draining peer stops answering probes and checks as it goes; that is its drain, not a
    // death (see onEndpointRemoved). TCP keep-alive still ends a connection to a peer that dies.
    if (ep.draining) return;
    if (judge === 'source-check') this.retireConnectionsTo(ep, 'EWITHDRAWN');
    else this.closeConnectionsTo(ep, 'EUNHEALTHY');
  };
}

/** The listener's side of its sessions: the rules, the pick, the evidence, the events. */
class ConnectSessions implements SessionHost {
  readonly rules: SessionRules;
  readonly deadlines: DeadlineQueue;
  readonly create: (ep: Endpoint) => net.Socket;
  /** Sessions waiting for an endpoint (woken on the cluster's 'changed'). */
  readonly waiting = new Set<ClientSession>();
  /** Clients accepted and not yet piped nor closed (compared with limits.maxPending). */
  pending = 0;
  private readonly refusals = new Refusals();
  private readonly errorReply: ((message: string, code: string) => Buffer | string) | undefined;

  constructor(
    private readonly listener: ConnectListener,
    options: ConnectListenerOptions,
  ) {
    this.rules = {
      connectTimeoutMs: listener.connectTimeoutMs,
      raceDelayMs: listener.raceDelayMs,
      maxConnectAttempts: listener.maxConnectAttempts,
      noEndpointWaitMs: listener.noEndpointWaitMs,
      handshake: options.handshake,
      greet: options.greet,
      handshakeTimeoutMs: listener.handshakeTimeoutMs,
      keepConnectionsOnRemoval: options.keepConnectionsOnRemoval ?? false,
      idleTimeoutMs: options.idleTimeoutMs,
      keepAliveInitialDelayMs: options.keepAliveInitialDelayMs,
    };
    this.deadlines = new DeadlineQueue(options.clock);
    this.create = options.createConnection ?? ((ep) => connectWithReader(ep.host, ep.port));
    this.errorReply = options.errorReply;
  }

  pick(busy: readonly Endpoint[], failed: FailedTries): Pick {
    const { cluster, balancer, limits } = this.listener;
    const ep = pickEndpoint(cluster, balancer, limits.maxPerEndpoint, busy, failed);
    if (typeof ep === 'object' && cluster.inPanic && !ep.isUsable()) this.listener.emit('panic-attempt', ep);
    return ep;
  }

  evidence(ep: Endpoint, code: string | undefined, startedAt?: number): void {
    if (code === undefined) this.listener.cluster.reportConnectSuccess(ep);
    else this.listener.cluster.reportConnectFailure(ep, code, startedAt);
  }

  waitForEndpoint(s: ClientSession): void {
    this.waiting.add(s);
  }

  stopWaiting(s: ClientSession): void {
    this.waiting.delete(s);
  }

  accepted(s: ClientSession): void {
    this.listener.emit('connection', s);
  }

  connectFailed(s: ClientSession, ep: Endpoint, code: string, phase: ConnectFailurePhase): void {
    this.listener.emit('connect-failed', s, ep, code, phase);
  }

  failover(s: ClientSession, from: Endpoint, to: Endpoint): void {
    this.listener.emit('failover', s, from, to);
  }

  raced(s: ClientSession, ep: Endpoint): void {
    this.listener.emit('connect-raced', s, ep);
  }

  lost(s: ClientSession, attempt: ConnectAttempt): void {
    new LostAttempt(this, s, attempt);
  }

  /** A connect that lost its race ended: evidence like any connect's (see LostAttempt). */
  lostSettled(conn: ClientSession, a: ConnectAttempt, socket: net.Socket | undefined, code: string): void {
    try {
      const ep = a.ep;
      if (socket !== undefined) {
        destroyQuietly(socket);
        // With a handshake, only a finished handshake is a success (see ClientSession.connected).
        if (this.rules.handshake === undefined) this.listener.cluster.reportConnectSuccess(ep);
        return;
      }
      if (ep.removed) return;
      if (!ep.failOver(a.dialled)) this.listener.cluster.reportConnectFailure(ep, code, a.startedAt);
      this.listener.emit('connect-failed', conn, ep, code, 'connect');
    } catch (err) {
      this.faulted(conn, err);
    }
  }

  opened(s: ClientSession): void {
    this.pending--;
    const ep = s.endpoint!;
    ep.active++;
    ep.connections++;
    this.listener.emit('upstream-connected', s, ep, s.attempts);
  }

  closed(s: ClientSession, result: PipeResult): void {
    const ep = s.endpoint!;
    ep.active--;
    ep.bytesIn += result.upstreamBytesRead;
    ep.bytesOut += result.upstreamBytesWritten;
    s.markClosed(result);
    this.listener.emit('connection-closed', s, result);
  }

  ended(s: ClientSession, reason: EndReason): void {
    this.pending--;
    const client = s.client;
    if (s.upstream) destroyQuietly(s.upstream);
    if (reason === 'max-per-endpoint') {
      s.endpoint = undefined;
      this.refuse(client, reason);
    } else {
      client.on('error', noop);
      const code = reason === 'rejected' ? s.lastFailure.code ?? reason : reason;
      const reply = reason !== undefined && this.errorReply ? this.errorReply(this.refusal(reason, s), code!) : undefined;
      if (reply !== undefined) sendAndClose(client, reply);
      else client.destroy();
      if (reason !== undefined) this.listener.emit('client-closed-no-endpoint', s, reason, s.attempts);
      s.endpoint = undefined;
    }
    s.markClosed();
    this.listener.emit('connection-closed', s, undefined);
  }

  refused(s: ClientSession, reply: Buffer): void {
    this.pending--;
    const client = s.client;
    client.on('error', noop);
    if (reply.length > 0 && !client.destroyed) sendAndClose(client, reply);
    else client.destroy();
    s.markClosed();
    this.listener.emit('connection-closed', s, undefined);
  }

  faulted(s: ClientSession, error: unknown): void {
    this.listener.emit('internal-error', s, error);
  }

  /** Closes a client refused by a circuit breaker, with the error reply while few are closing. */
  refuse(client: net.Socket, limit: LimitName): void {
    const errorReply = this.errorReply;
    this.refusals.close(client, errorReply && (() =>
      errorReply(`ambassador: too many clients for '${this.listener.cluster.name}' (${limit}=${this.limitOf(limit)}); try again later`, limit)));
    this.listener.emit('client-refused', limit);
  }

  private limitOf(limit: LimitName): number {
    const l = this.listener.limits;
    return limit === 'max-connections' ? l.maxConnections : limit === 'max-pending' ? l.maxPending : l.maxPerEndpoint;
  }

  /** What a client closed without an upstream is told. */
  private refusal(reason: NoEndpointReason, s: ClientSession): string {
    const name = this.listener.cluster.name;
    const last = s.lastFailure;
    if (reason === 'rejected' && last.message) return `ambassador: ${last.message}`;
    if (reason === 'no-endpoint') return `ambassador: no endpoint for '${name}' (waited ${this.rules.noEndpointWaitMs} ms)`;
    const why = last.message ?? last.code;
    return `ambassador: no endpoint for '${name}' took the connection (${s.attempts} attempt(s)${why ? `, last: ${why}` : ''})`;
  }
}

/**
 * A connect that lost its client's race, still pending: it goes on without its client, up to
 * the connect timeout, as a probe of its endpoint (else an endpoint whose SYNs are dropped would
 * lose every race and never be seen to time out). A timeout counts towards ejection; a late
 * connect is a sign of life, closed at once. One socket per lost race, for at most the timeout.
 */
class LostAttempt implements AttemptOwner, Deadline {
  due = 0;
  slot = -1;

  constructor(
    private readonly sessions: ConnectSessions,
    private readonly conn: ClientSession,
    readonly attempt: ConnectAttempt,
  ) {
    attempt.owner = this;
    sessions.deadlines.set(this, attempt.startedAt + sessions.rules.connectTimeoutMs);
  }

  expire(): void {
    this.attempt.cancel('ETIMEDOUT');
  }

  /** Ends it without a verdict (its endpoint went down, the listener stops). */
  drop(): void {
    this.sessions.deadlines.clear(this);
    this.attempt.drop();
  }

  attemptDone(a: ConnectAttempt, socket: net.Socket | undefined, code: string): void {
    this.sessions.deadlines.clear(this);
    this.sessions.lostSettled(this.conn, a, socket, code);
  }
}
