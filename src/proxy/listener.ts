import { EventEmitter } from 'node:events';
import net from 'node:net';
import { createBalancer, type Balancer } from '../cluster/balancer.js';
import type { Cluster, EndpointDownReason } from '../cluster/cluster.js';
import type { Endpoint, HealthJudge } from '../cluster/endpoint.js';
import { awaitConnect, ConnectAttempt, connectSocket, noop } from './connect.js';
import { ConnectRace, type Attempt, type AttemptOpener, type AttemptOutcome } from './connect-race.js';
import { ProxyConnection } from './connection.js';
import { DeadlineQueue } from './deadlines.js';
import { type LimitName, type ListenerLimits, MAX_LINGERING_REFUSALS } from './limits.js';
import { codeOf, SocketPipe, type PipeResult } from './pipe.js';
import { connectWithReader } from './reader.js';
import { ProxyServer, type CloseOptions } from './server.js';

/**
 * Runs on a freshly connected upstream before piping starts (e.g. Redis AUTH / SELECT). Client
 * bytes stay held meanwhile and are sent, in order, afterwards. The hook may read from and write
 * to `upstream`; when it resolves it must have removed its own listeners and pushed back
 * (`upstream.unshift`) any bytes it read but did not consume. Reject to fail this endpoint (the
 * next one is tried). `signal` aborts on timeout, upstream close or client close.
 */
export type Handshake = (upstream: net.Socket, endpoint: Endpoint, signal: AbortSignal) => Promise<void>;

/**
 * A handshake failure with a verdict. `retry: false` (e.g. the upstream rejected our
 * credentials): the client is not tried on other endpoints, it gets `message` (through
 * `errorReply`) and is closed. `blameEndpoint: false`: the failure says nothing about the
 * endpoint's health, so it does not count towards outlier ejection. The message is shown to the
 * client and logged: it must never contain a secret.
 */
export class HandshakeError extends Error {
  readonly code: string;
  readonly retry: boolean;
  readonly blameEndpoint: boolean;
  constructor(message: string, code = 'EHANDSHAKE', opts: { retry?: boolean; blameEndpoint?: boolean } = {}) {
    super(message);
    this.name = 'HandshakeError';
    this.code = code;
    this.retry = opts.retry ?? true;
    this.blameEndpoint = opts.blameEndpoint ?? true;
  }
}

/** Opens the upstream socket (default: net.connect). A tls.TLSSocket is awaited until 'secureConnect'. */
export type CreateConnection = (endpoint: Endpoint) => net.Socket;

export interface ConnectListenerOptions {
  cluster: Cluster;
  /** Port to listen on (0 = ephemeral). */
  port: number;
  /** Address to bind. Default 127.0.0.1. */
  host?: string;
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
  /** Bound on the handshake. Default 5000 ms. */
  handshakeTimeoutMs?: number;
  createConnection?: CreateConnection;
  /**
   * Encodes a one-line message in the client's protocol (e.g. a RESP error), sent to a client
   * that is closed without an upstream before the close. Default: the client is just closed.
   */
  errorReply?: (message: string) => Buffer | string;
  /** Circuit breakers; past one a client is refused at once ('client-refused'). Default: none. */
  limits?: Partial<ListenerLimits>;
}

export type ConnectFailurePhase = 'connect' | 'handshake';

/** 'rejected' = a handshake failed with `retry: false` (e.g. the credentials were refused). */
export type NoEndpointReason = 'no-endpoint' | 'all-failed' | 'rejected';

export type ConnectListenerEvents = {
  /** A client was accepted. */
  connection: [conn: ProxyConnection];
  /** The client is now piped to `endpoint` (after `attempt` tries, handshake done). */
  'upstream-connected': [conn: ProxyConnection, endpoint: Endpoint, attempt: number];
  /**
   * A connect (or handshake) to `endpoint` failed; `code` e.g. ECONNREFUSED, ETIMEDOUT, EHANDSHAKE;
   * `phase` 'handshake' when the TCP (and TLS) connect worked and the protocol handshake did not.
   * Also for an attempt that lost its race and then failed (the client was served by another).
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
};

/** Code of a connect given up because its endpoint went down (or moved) meanwhile. */
export const ENDPOINT_DOWN = 'EENDPOINTDOWN';

/**
 * `--connect NAME=[BIND:]PORT`: accepts clients and forwards each to an endpoint of a cluster,
 * retrying on the next endpoint when a connect fails, before the client notices anything.
 */
export class ConnectListener extends EventEmitter<ConnectListenerEvents> implements AttemptOpener {
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
  /** Clients accepted and not yet piped nor closed (compared with limits.maxPending). */
  private pending = 0;
  /** Refused clients still getting their error reply (bounded by MAX_LINGERING_REFUSALS). */
  private lingering = 0;
  /** Clients accepted so far (refused ones not included; read by the metrics at scrape time). */
  accepted = 0;
  /**
   * @internal Fast-path connects in flight (ClientHandler), each due min(raceDelayMs,
   * connectTimeoutMs) after it started, on one timer; also how those to an endpoint that goes
   * down are found.
   */
  readonly fastConnects: DeadlineQueue<ConnectAttempt<ClientHandler>>;
  private readonly retiring = new WeakSet<ProxyConnection>();
  /** Aborted by close(): attempts that lost their race (and outlive their client) end then. */
  private readonly stopped = new AbortController();
  /** Pending connects of the slow path per endpoint, so they can give up at once when it goes down. */
  private readonly connecting = new Map<Endpoint, Set<(code: string) => void>>();
  /** @internal (ClientHandler) */
  readonly options: ConnectListenerOptions;
  private readonly proxy: ProxyServer;
  /** @internal (ClientHandler) */
  readonly create: CreateConnection;
  private attached = false;

  constructor(options: ConnectListenerOptions) {
    super();
    this.options = options;
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
    this.create =
      options.createConnection ?? ((ep) => connectWithReader(ep.host, ep.port));
    this.fastConnects = new DeadlineQueue(Math.min(this.raceDelayMs, this.connectTimeoutMs), expireFastConnect);
    this.proxy = new ProxyServer(options.host ?? '127.0.0.1', options.port, this.onClient, (err) => this.emit('listener-error', err));
    const l = options.limits ?? {};
    this.limits = {
      maxConnections: Math.max(1, l.maxConnections ?? Infinity),
      maxPending: Math.max(1, l.maxPending ?? Infinity),
      maxPerEndpoint: Math.max(1, l.maxPerEndpoint ?? Infinity),
    };
    if (this.limits.maxConnections !== Infinity) {
      this.proxy.setLimit(this.limits.maxConnections, (c) => this.refuseClient(c, 'max-connections'), MAX_LINGERING_REFUSALS + 16,
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
    }
    return addr;
  }

  address(): net.AddressInfo | undefined {
    return this.proxy.address();
  }

  /** Stop accepting; let open connections finish for up to drainMs, then destroy what is left. */
  async close(options: CloseOptions = {}): Promise<void> {
    this.stopped.abort();
    if (this.attached) {
      this.attached = false;
      this.cluster.off('endpoint-removed', this.onEndpointRemoved);
      this.cluster.off('endpoint-health', this.onEndpointHealth);
      this.cluster.off('endpoint-updated', this.onEndpointUpdated);
      this.cluster.off('endpoint-down', this.onEndpointDown);
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
      this.retire(c, code, maxMs);
      n++;
    }
    return n;
  }

  private retire(conn: ProxyConnection, code: string, maxMs: number): void {
    const upstream = conn.upstream;
    if (this.retiring.has(conn) || !upstream) return;
    this.retiring.add(conn);
    const client = conn.client;
    const quiet = this.retireQuietMs;
    const until = Date.now() + maxMs;
    let last = Date.now();
    let timer: NodeJS.Timeout | undefined;
    // Extra 'data' listeners only observe: they do not change the sockets' flowing mode, so the
    // pipe's back-pressure handling is untouched. (They run after the pipe's own listener, which
    // may have released the chunk already: only its arrival counts here, not its bytes.)
    const bump = (): void => {
      last = Date.now();
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      client.off('data', bump);
      upstream.off('data', bump);
    };
    const check = (): void => {
      if (conn.state !== 'open') return cleanup();
      const now = Date.now();
      if (now - last >= quiet || now >= until) {
        cleanup();
        conn.close(code);
        return;
      }
      timer = setTimeout(check, Math.max(1, Math.min(last + quiet, until) - now));
    };
    client.on('data', bump);
    upstream.on('data', bump);
    void conn.done.then(cleanup);
    timer = setTimeout(check, quiet);
  }

  private readonly onEndpointRemoved = (ep: Endpoint): void => {
    // A peer that announced its drain is the one to end its connections: a relaying ambassador
    // closes them when its drain ends, a service on the LAN address outlives its ambassador.
    // Closing them here would cut every held connection at the goodbye (issue 19: 3).
    if (ep.draining) return;
    if (!this.options.keepConnectionsOnRemoval) this.retireConnectionsTo(ep, 'EREMOVED');
  };

  /**
   * The endpoint moved (migration, renumbering): connections to its old address go as on a
   * removal, and connects still pending there are retried at the new address now.
   */
  private readonly onEndpointUpdated = (ep: Endpoint, addressChanged: boolean): void => {
    if (!addressChanged) return;
    this.cancelConnectsTo(ep);
    if (!this.options.keepConnectionsOnRemoval) this.retireConnectionsTo(ep, 'EMOVED', true);
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

  /** Connects pending to `ep` (slow path and fast) give up with ENDPOINT_DOWN: their clients move on. */
  private cancelConnectsTo(ep: Endpoint): void {
    const pending = this.connecting.get(ep);
    if (pending) for (const cancel of [...pending]) cancel(ENDPOINT_DOWN);
    let doomed: ConnectAttempt<ClientHandler>[] | undefined;
    for (const a of this.fastConnects.items()) if (a.owner.endpoint === ep) (doomed ??= []).push(a);
    if (doomed) for (const a of doomed) a.cancel(ENDPOINT_DOWN);
  }

  /**
   * Our checks or host probes found the endpoint dead: its connections go at once (the peer is
   * gone). Its own ambassador saying the service stopped (source check) is a withdrawal, handled
   * like a goodbye: connections go at their first pause.
   */
  private readonly onEndpointHealth = (ep: Endpoint, healthy: boolean, judge: HealthJudge): void => {
    if (healthy || this.options.keepConnectionsOnRemoval) return;
    // A draining peer stops answering probes and checks as it goes; that is its drain, not a
    // death (see onEndpointRemoved). TCP keep-alive still ends a connection to a peer that dies.
    if (ep.draining) return;
    if (judge === 'source-check') this.retireConnectionsTo(ep, 'EWITHDRAWN');
    else this.closeConnectionsTo(ep, 'EUNHEALTHY');
  };

  /**
   * Closes a client refused by a circuit breaker: with the error reply (and a graceful close) while
   * few are closing, else at once. @internal (also ClientHandler)
   */
  refuseClient(client: net.Socket, limit: LimitName): void {
    client.on('error', noop);
    const reply = this.options.errorReply && this.lingering < MAX_LINGERING_REFUSALS
      ? this.options.errorReply(`ambassador: too many clients for '${this.cluster.name}' (${limit}=${this.limitOf(limit)}); try again later`)
      : undefined;
    if (reply === undefined) {
      client.destroy();
    } else {
      this.lingering++;
      client.once('close', () => this.lingering--);
      refuse(client, reply);
    }
    this.emit('client-refused', limit);
  }

  private limitOf(limit: LimitName): number {
    return limit === 'max-connections' ? this.limits.maxConnections : limit === 'max-pending' ? this.limits.maxPending : this.limits.maxPerEndpoint;
  }

  /** A client was accepted: the circuit breaker on pending clients, then a ClientHandler. */
  private readonly onClient = (client: net.Socket): void => {
    if (this.pending >= this.limits.maxPending) return this.refuseClient(client, 'max-pending');
    this.pending++;
    this.accepted++;
    const conn = new ProxyConnection(client);
    this.proxy.track(conn);
    new ClientHandler(this, conn).start();
  };

  /**
   * @internal (ClientHandler) The slow path: the raced, retried, waiting, handshaking connect,
   * from `start` (what the fast path already did) to an upstream, or the reason there is none.
   */
  async connectSlowly(conn: ProxyConnection, last: LastFailure, start: SlowStart): Promise<net.Socket | NoEndpointReason | 'max-per-endpoint'> {
    try {
      return await this.connectWithRetry(conn, last, start);
    } catch {
      return 'no-endpoint';
    }
  }

  /**
   * @internal (ClientHandler) The client's pending time is over: pipe it to `upstream` (connected
   * to conn.endpoint at `generation`), or close it without one, telling it why.
   */
  finish(conn: ProxyConnection, upstream: net.Socket | undefined, reason: NoEndpointReason | 'max-per-endpoint', last: LastFailure, generation: number): void {
    const client = conn.client;
    this.pending--;
    const aborted = conn.cancelled || client.destroyed;
    if (reason === 'max-per-endpoint' && !upstream && !aborted) {
      conn.endpoint = undefined;
      this.refuseClient(client, reason);
      conn.markClosed();
      this.emit('connection-closed', conn, undefined);
      return;
    }
    if (!upstream || aborted) {
      if (upstream) destroyQuietly(upstream);
      client.on('error', noop);
      const reply = aborted || !this.options.errorReply ? undefined : this.options.errorReply(this.refusal(reason as NoEndpointReason, conn, last));
      if (reply !== undefined) refuse(client, reply);
      else client.destroy();
      if (!aborted) this.emit('client-closed-no-endpoint', conn, reason as NoEndpointReason, conn.attempts);
      conn.endpoint = undefined;
      conn.markClosed();
      this.emit('connection-closed', conn, undefined);
      return;
    }

    const ep = conn.endpoint!;
    conn.onCancel = undefined;
    conn.upstream = upstream;
    conn.endpointGeneration = generation;
    conn.pipe = new SocketPipe(client, upstream, {
      idleTimeoutMs: this.options.idleTimeoutMs,
      keepAliveInitialDelayMs: this.options.keepAliveInitialDelayMs,
      onClosed: (result) => {
        ep.active--;
        ep.bytesIn += result.upstreamBytesRead;
        ep.bytesOut += result.upstreamBytesWritten;
        conn.markClosed(result);
        this.emit('connection-closed', conn, result);
      },
    });
    conn.state = 'open';
    ep.active++;
    ep.connections++;
    this.emit('upstream-connected', conn, ep, conn.attempts);
  }

  /** Resolves with a ready (handshaken) upstream, or the reason there is none. */
  private refusal(reason: NoEndpointReason, conn: ProxyConnection, last: LastFailure): string {
    const name = this.cluster.name;
    if (reason === 'rejected' && last.message) return `ambassador: ${last.message}`;
    if (reason === 'no-endpoint') return `ambassador: no endpoint for '${name}' (waited ${this.noEndpointWaitMs} ms)`;
    const why = last.message ?? last.code;
    return `ambassador: no endpoint for '${name}' took the connection (${conn.attempts} attempt(s)${why ? `, last: ${why}` : ''})`;
  }

  private async connectWithRetry(conn: ProxyConnection, last: LastFailure, start: SlowStart): Promise<net.Socket | NoEndpointReason | 'max-per-endpoint'> {
    const signal = conn.signal;
    // Endpoints that failed for this client, with the generation (address) tried — one that moved
    // since is worth a retry — and whether the failure was hard (refused: not worth repeating).
    const failed = start.failed ?? new Map<Endpoint, FailedTry>();
    const race = new ConnectRace(this, signal, this.stopped.signal, (o) => this.lostAttemptSettled(conn, o));
    // Before any await: a released fast-path socket must be watched at once.
    if (start.adopt) race.adopt(start.adopt.ep, start.adopt.generation, start.adopt.dialled, start.adopt.startedAt, start.adopt.socket);
    const waitUntil = conn.startedAt + this.noEndpointWaitMs;
    let lastFailed = start.lastFailed;
    let wantAttempt = start.wantAttempt;
    const done = <R extends net.Socket | NoEndpointReason | 'max-per-endpoint'>(r: R): R => {
      if (typeof r === 'string') race.close();
      return r;
    };
    // Bounded: at most maxConnectAttempts attempts, and waits only until waitUntil.
    for (let round = 0; round < 1000; round++) {
      if (signal.aborted) return done('no-endpoint');
      if (wantAttempt && conn.attempts < this.maxConnectAttempts) {
        wantAttempt = false;
        const ep = this.pickAttempt(race.pendingEndpoints(), failed);
        if (ep === 'full') return done('max-per-endpoint');
        if (ep) {
          if (lastFailed) this.emit('failover', conn, lastFailed, ep);
          lastFailed = undefined;
          if (race.pending > 0) this.emit('connect-raced', conn, ep);
          conn.attempts++;
          conn.endpoint = ep;
          race.start(ep);
        }
      }
      if (race.pending === 0) {
        if (conn.attempts >= this.maxConnectAttempts) return done(failed.size > 0 ? 'all-failed' : 'no-endpoint');
        // Nothing (new) to try: wait, within the same bound, for an endpoint to appear, move or
        // come back — e.g. the genuine owner of a name reclaiming it from a rogue announcement.
        const remaining = waitUntil - Date.now();
        const fresh = (ep: Endpoint): boolean => failed.get(ep)?.generation !== ep.generation;
        if (remaining <= 0 || !(await this.cluster.waitForEndpoint(remaining, signal, fresh))) {
          return done(failed.size > 0 ? 'all-failed' : 'no-endpoint');
        }
        wantAttempt = true;
        continue;
      }
      const outcome = await race.next();
      if (outcome.kind === 'slow') {
        // Still connecting after the race delay: race it, keep it.
        wantAttempt = true;
        continue;
      }
      const { ep, generation } = outcome.attempt;
      if (outcome.kind === 'failed') {
        if (signal.aborted) return done('no-endpoint');
        const code = outcome.code;
        // Cancelled because the endpoint went down: that is not one more failure of its own.
        // A peer with another address (IPv4 and IPv6) is tried there before it is blamed.
        if (code === ENDPOINT_DOWN) failed.set(ep, { generation, hard: false });
        else if (!ep.failOver(outcome.attempt.dialled)) {
          this.cluster.reportConnectFailure(ep, code, outcome.attempt.startedAt);
          failed.set(ep, { generation, hard: code !== 'ETIMEDOUT' });
        }
        last.code = code;
        last.message = undefined;
        this.emit('connect-failed', conn, ep, code, 'connect');
        lastFailed = ep;
        wantAttempt = true;
        continue;
      }
      // Connected: the other attempts lost.
      race.close(outcome.attempt);
      const upstream = outcome.socket;
      conn.endpoint = ep;
      if (signal.aborted) {
        upstream.destroy();
        return 'no-endpoint';
      }
      // With a handshake, success is reported once it is done (else an endpoint failing every
      // handshake would have its failure streak reset by each TCP connect and never be ejected).
      if (!this.options.handshake) this.cluster.reportConnectSuccess(ep);
      if (ep.removed && !this.options.keepConnectionsOnRemoval) {
        // Vanished from discovery while we were connecting: try another without blaming it.
        upstream.destroy();
        failed.set(ep, { generation, hard: true });
        wantAttempt = true;
        continue;
      }
      if (ep.generation !== generation && !this.options.keepConnectionsOnRemoval) {
        // Moved while we were connecting (this is its old address): try it where it is now.
        upstream.destroy();
        wantAttempt = true;
        continue;
      }
      if (this.options.handshake) {
        conn.upstream = upstream;
        const failure = await this.runHandshake(upstream, ep, signal);
        if (failure !== undefined) {
          upstream.destroy();
          if (signal.aborted) return 'no-endpoint';
          const verdict = failure.error instanceof HandshakeError ? failure.error : undefined;
          if (verdict?.blameEndpoint === false) ep.failures++;
          else this.cluster.reportConnectFailure(ep, failure.code);
          failed.set(ep, { generation, hard: true });
          last.code = failure.code;
          last.message = verdict?.message;
          this.emit('connect-failed', conn, ep, failure.code, 'handshake');
          if (verdict?.retry === false) return 'rejected';
          lastFailed = ep;
          wantAttempt = true;
          continue;
        }
        this.cluster.reportConnectSuccess(ep);
      }
      last.generation = generation;
      return upstream;
    }
    return done(failed.size > 0 ? 'all-failed' : 'no-endpoint');
  }

  /** @internal (ConnectRace) An attempt: connectSocket, registered for cancellation when its endpoint goes down. */
  openAttempt(attempt: Attempt, signal: AbortSignal, onSlow: () => void): Promise<net.Socket> {
    const ep = attempt.ep;
    let pending = this.connecting.get(ep);
    if (pending === undefined) this.connecting.set(ep, (pending = new Set()));
    return connectSocket(() => (attempt.socket = this.create(ep)), this.connectTimeoutMs, signal, pending, this.raceDelayMs, onSlow);
  }

  /** @internal (ConnectRace) A fast-path connect past the race delay: awaited for what is left of connectTimeoutMs. */
  adoptAttempt(attempt: Attempt, signal: AbortSignal): Promise<net.Socket> {
    const ep = attempt.ep;
    let pending = this.connecting.get(ep);
    if (pending === undefined) this.connecting.set(ep, (pending = new Set()));
    return awaitConnect(attempt.socket!, Math.max(1, this.connectTimeoutMs - this.raceDelayMs), signal, pending);
  }

  /**
   * An attempt that lost its race ended: what it says about its endpoint
   * counts as any other connect's would. A timeout counts towards ejection (an endpoint whose
   * SYNs are dropped loses every race and is known by this alone); a late connect is a sign of
   * life. Not blamed: a connect cancelled because the endpoint went down or the listener stopped.
   */
  private lostAttemptSettled(conn: ProxyConnection, outcome: AttemptOutcome & { kind: 'connected' | 'failed' }): void {
    const { ep, dialled, startedAt } = outcome.attempt;
    if (outcome.kind === 'connected') {
      destroyQuietly(outcome.socket);
      // With a handshake, only a finished handshake is a success (see connectWithRetry).
      if (!this.options.handshake) this.cluster.reportConnectSuccess(ep);
      return;
    }
    const code = outcome.code;
    if (code === ENDPOINT_DOWN || code === 'ECANCELED' || ep.removed) return;
    if (!ep.failOver(dialled)) this.cluster.reportConnectFailure(ep, code, startedAt);
    this.emit('connect-failed', conn, ep, code, 'connect');
  }

  /** @internal (ConnectRace) An attempt settled: forget its endpoint's registry of pending connects once empty. */
  attemptSettled(attempt: Attempt): void {
    const pending = this.connecting.get(attempt.ep);
    if (pending?.size === 0) this.connecting.delete(attempt.ep);
  }

  /**
   * The endpoint for a client's next attempt: a usable one not tried yet; racing a slow attempt
   * with nothing else left, the same endpoint again (a fresh SYN beside the one TCP is
   * retransmitting); when none is usable, those down only on health evidence (panic mode);
   * last, one that only timed out for this client (a timeout proves nothing on a lossy path).
   * 'full': every usable endpoint is at max-per-endpoint, and nothing is being tried. `busy`:
   * endpoints with an attempt of this client pending. @internal (also ClientHandler)
   */
  pickAttempt(busy: readonly Endpoint[], failed: ReadonlyMap<Endpoint, FailedTry>): Endpoint | undefined | 'full' {
    const max = this.limits.maxPerEndpoint;
    const withRoom = (eps: Endpoint[]): Endpoint[] => (max === Infinity ? eps : eps.filter((ep) => ep.active < max));
    const healthy = this.cluster.healthy();
    const usable = withRoom(healthy);
    if (usable.length === 0 && healthy.length > 0 && busy.length === 0) return 'full';
    let exclude: Set<Endpoint> | undefined;
    if (failed.size > 0 || busy.length > 0) {
      exclude = new Set(busy);
      for (const [ep, f] of failed) if (f.generation === ep.generation) exclude.add(ep);
    }
    let ep = this.balancer.pick(usable, exclude);
    if (ep) return ep;
    if (busy.length > 0) {
      for (const b of busy) exclude!.delete(b);
      ep = this.balancer.pick(usable, exclude);
      if (ep) return ep;
    }
    if (usable.length === 0 || usable.every((u) => exclude?.has(u))) {
      ep = this.balancer.pick(withRoom(this.cluster.panicCandidates()), exclude);
      if (ep) {
        if (this.cluster.inPanic) this.emit('panic-attempt', ep);
        return ep;
      }
    }
    if (busy.length === 0 && failed.size > 0) {
      const retry = [...usable, ...this.cluster.panicCandidates()].filter((e) => {
        const f = failed.get(e);
        return f !== undefined && !f.hard && f.generation === e.generation;
      });
      return this.balancer.pick(retry);
    }
    return undefined;
  }

  /** Runs the handshake hook, bounded; resolves undefined on success or the failure. */
  private runHandshake(
    upstream: net.Socket,
    ep: Endpoint,
    clientSignal: AbortSignal,
  ): Promise<{ code: string; error?: unknown } | undefined> {
    const hook = this.options.handshake!;
    const ac = new AbortController();
    return new Promise((resolve) => {
      let settled = false;
      const settle = (code: string | undefined, error?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        upstream.off('close', onClose);
        clientSignal.removeEventListener('abort', onClientAbort);
        if (code !== undefined) ac.abort();
        resolve(code === undefined ? undefined : { code, error });
      };
      const onClose = (): void => settle('ECONNRESET');
      const onClientAbort = (): void => settle('ECANCELED');
      const timer = setTimeout(() => settle('ETIMEDOUT'), this.handshakeTimeoutMs);
      upstream.once('close', onClose);
      clientSignal.addEventListener('abort', onClientAbort, { once: true });
      let p: Promise<void>;
      try {
        p = hook(upstream, ep, ac.signal);
      } catch (err) {
        settle(handshakeCode(err), err);
        return;
      }
      p.then(
        () => settle(upstream.destroyed ? 'ECONNRESET' : undefined),
        (err: unknown) => settle(handshakeCode(err), err),
      );
    });
  }
}

/** Where the slow path starts: what the fast path did before it handed the client over. */
interface SlowStart {
  failed?: Map<Endpoint, FailedTry>;
  lastFailed?: Endpoint;
  /** Pick an attempt first (false: the fast path found none to pick: wait for an endpoint). */
  wantAttempt: boolean;
  /** A fast-path connect still pending after the race delay: raced from the start. */
  adopt?: { ep: Endpoint; generation: number; dialled: string; startedAt: number; socket: net.Socket };
}

interface FailedTry {
  generation: number;
  /** Refused, reset, handshake failed: deterministic, not retried for this client. */
  hard: boolean;
}

interface LastFailure {
  code?: string;
  /** Message of the last HandshakeError (safe to show). */
  message?: string;
  /** Endpoint.generation (address) the upstream returned was connected at. */
  generation?: number;
}

const NO_ENDPOINTS: readonly Endpoint[] = [];
const NO_FAILURES: ReadonlyMap<Endpoint, FailedTry> = new Map();

/**
 * One client of a ConnectListener while it waits for an upstream: the fast path.
 *
 * The common case — an endpoint is usable, its connect succeeds within the race delay, no
 * handshake — is callbacks only: one ConnectAttempt (three socket listeners, a deadline in the
 * listener's shared queue), no promise, no timer, no AbortSignal. Anything else hands the client
 * to the listener's promise-based slow path (connectWithRetry: raced connects, retries, panic,
 * waiting for an endpoint, handshakes) in the state the fast path left, so every slow behaviour
 * is the slow path's own:
 * - a handshake is configured, or the client was closed at once: slow path from the start;
 * - no endpoint to pick: slow path, waiting for one;
 * - the connect failed: reported and counted as the slow path does, then the slow path retries;
 * - still connecting after the race delay: the slow path adopts the socket and races it;
 * - the endpoint vanished or moved while connecting: the slow path tries again.
 */
class ClientHandler {
  /** Endpoint of the fast-path attempt (read by the listener to cancel attempts to an endpoint that went down). */
  endpoint: Endpoint | undefined;
  private generation = 0;
  private dialled = '';
  private attempt: ConnectAttempt<ClientHandler> | undefined;

  constructor(
    private readonly listener: ConnectListener,
    private readonly conn: ProxyConnection,
  ) {}

  start(): void {
    const { listener, conn } = this;
    const client = conn.client;
    // While pending: a client that resets or errors aborts the attempt. (A client FIN does not:
    // it may have sent a request and half-closed; that still gets forwarded.)
    client.on('error', this.onEarlyError);
    client.on('close', this.onEarlyError);
    listener.emit('connection', conn);
    if (listener.options.handshake !== undefined || conn.cancelled) return this.slow({ wantAttempt: true });
    const ep = listener.pickAttempt(NO_ENDPOINTS, NO_FAILURES);
    if (ep === 'full') return this.done(undefined, 'max-per-endpoint', {});
    if (ep === undefined) return this.slow({ wantAttempt: false });
    conn.attempts++;
    conn.endpoint = ep;
    this.endpoint = ep;
    this.generation = ep.generation;
    this.dialled = ep.host;
    const attempt = new ConnectAttempt(this, () => listener.create(ep), listener.fastConnects, this.onConnectDone);
    // (A socket that could not even be made has reported already.)
    if (attempt.pending) {
      this.attempt = attempt;
      conn.onCancel = this.onCancel;
    }
  }

  /** The race delay (or the connect timeout, whichever is first) passed: see expireFastConnect. */
  expire(): void {
    const attempt = this.attempt!;
    const { listener } = this;
    if (listener.connectTimeoutMs <= listener.raceDelayMs) {
      attempt.cancel('ETIMEDOUT', `connect timed out after ${listener.connectTimeoutMs} ms`);
      return;
    }
    const socket = attempt.release()!;
    this.attempt = undefined;
    this.conn.onCancel = undefined;
    // (The fast attempt started as the client was accepted.)
    this.slow({ wantAttempt: true, adopt: { ep: this.endpoint!, generation: this.generation, dialled: this.dialled, startedAt: this.conn.startedAt, socket } });
  }

  private readonly onEarlyError = (): void => this.conn.close('ECONNRESET');

  /** close() while the fast attempt is pending: it ends, and its callback closes the client. */
  private readonly onCancel = (): void => this.attempt?.cancel('ECANCELED', 'connect aborted');

  private readonly onConnectDone = (upstream: net.Socket | undefined, code: string): void => {
    const { listener, conn } = this;
    const ep = this.endpoint!;
    const generation = this.generation;
    this.attempt = undefined;
    conn.onCancel = undefined;
    if (upstream === undefined) {
      if (conn.cancelled) return this.done(undefined, 'no-endpoint', {});
      // As connectWithRetry does with a failed attempt (see there).
      const failed = new Map<Endpoint, FailedTry>();
      if (code === ENDPOINT_DOWN) failed.set(ep, { generation, hard: false });
      else if (!ep.failOver(this.dialled)) {
        listener.cluster.reportConnectFailure(ep, code, conn.startedAt);
        failed.set(ep, { generation, hard: code !== 'ETIMEDOUT' });
      }
      const last: LastFailure = { code };
      listener.emit('connect-failed', conn, ep, code, 'connect');
      return this.slow({ failed, lastFailed: ep, wantAttempt: true }, last);
    }
    if (conn.cancelled) {
      destroyQuietly(upstream);
      return this.done(undefined, 'no-endpoint', {});
    }
    const keep = listener.options.keepConnectionsOnRemoval;
    listener.cluster.reportConnectSuccess(ep);
    if (ep.removed && !keep) {
      // Vanished from discovery while we were connecting: try another without blaming it.
      destroyQuietly(upstream);
      return this.slow({ failed: new Map([[ep, { generation, hard: true }]]), wantAttempt: true });
    }
    if (ep.generation !== generation && !keep) {
      // Moved while we were connecting (this is its old address): try it where it is now.
      destroyQuietly(upstream);
      return this.slow({ wantAttempt: true });
    }
    this.done(upstream, 'no-endpoint', { generation });
  };

  private slow(start: SlowStart, last: LastFailure = {}): void {
    void this.listener.connectSlowly(this.conn, last, start).then((r) => {
      if (typeof r === 'string') this.done(undefined, r, last);
      else this.done(r, 'no-endpoint', last);
    });
  }

  private done(upstream: net.Socket | undefined, reason: NoEndpointReason | 'max-per-endpoint', last: LastFailure): void {
    const client = this.conn.client;
    client.removeListener('error', this.onEarlyError);
    client.removeListener('close', this.onEarlyError);
    this.listener.finish(this.conn, upstream, reason, last, last.generation ?? 0);
  }
}

/** The DeadlineQueue callback of fast-path connects. */
function expireFastConnect(attempt: ConnectAttempt<ClientHandler>): void {
  attempt.owner.expire();
}

function destroyQuietly(socket: net.Socket): void {
  socket.on('error', noop);
  socket.destroy();
}

/**
 * Send `reply` and close gracefully: the client's unread input is discarded (so the close does
 * not turn into a reset that could destroy the reply in flight), and the socket is destroyed
 * once the client closes its side, or after a bound.
 */
function refuse(client: net.Socket, reply: Buffer | string): void {
  const timer = setTimeout(() => client.destroy(), 2000);
  timer.unref();
  client.once('close', () => clearTimeout(timer));
  client.on('data', noop);
  client.resume();
  client.end(reply);
}

function handshakeCode(err: unknown): string {
  const c = codeOf(err);
  return c === 'Error' || c === 'EUNKNOWN' ? 'EHANDSHAKE' : c;
}

