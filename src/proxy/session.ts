import type net from 'node:net';
import type { Endpoint } from '../cluster/endpoint.js';
import { ConnectAttempt, destroyQuietly, noop, type AttemptOwner } from './connect.js';
import { ProxyConnection } from './connection.js';
import type { Deadline, DeadlineQueue } from './deadlines.js';
import { HandshakeError, handshakeCode, type ClientHello, type Greeting, type Handshake } from './handshake.js';
import { NO_ENDPOINTS, NO_FAILURES, type FailedTries, type FailedTry, type Pick } from './pick.js';
import { SocketPipe, type PipeResult } from './pipe.js';

/**
 * One client of a listener, from accept to close: one state machine, driven by callbacks (its
 * connect attempts' socket events, its one deadline in the listener's DeadlineQueue, the
 * listener waking it when endpoints change, the handshake's promise).
 *
 *   phase      what is going on                leaves on                               to
 *   greet      (with a greeting) the protocol  'session': what it learned kept for     pick
 *              reads the client's first words    the handshake
 *              (the only promise); deadline:   'route': one attempt to that endpoint   connect (routed)
 *              handshakeTimeoutMs              'refuse': its reply sent                closed
 *                                              it failed, the client closed, the       closed (quietly)
 *                                              deadline
 *   pick       (within one call) the next      an endpoint to try                      connect
 *              step: at start, after a         nothing to try yet, attempts left       wait
 *              failure with nothing pending,   attempts used up, every endpoint full   closed
 *              on a wake
 *   connect    one attempt pending; deadline:  it connected                            handshake, open (pick: its
 *              its race point (raceDelayMs),                                             endpoint moved or left)
 *              then its timeout                it failed, or its endpoint went down    pick
 *              (connectTimeoutMs)              the race point                          race (connect: nothing to race)
 *                                              the timeout: failed (ETIMEDOUT)         pick
 *   race       two attempts pending;           one connected; the other lost the race  as connect
 *              deadline: the older one's       (the host's from then on)
 *              timeout                         one failed or timed out                 connect (the other alone, raced
 *                                                                                        again once past its race point)
 *   wait       nothing to try yet; deadline:   a usable endpoint that has not failed   pick
 *              startedAt + noEndpointWaitMs    for it at its address
 *                                              the deadline                            closed (no-endpoint, all-failed)
 *   handshake  the protocol's hook runs (the   it resolved                             open
 *              only promise); deadline:        it rejected, the upstream closed, the   pick (closed: rejected)
 *              handshakeTimeoutMs              deadline
 *   open       piped                           the pipe closed                         closed
 *   closed
 *
 * A routed session (a greeting's 'route', e.g. a PostgreSQL CancelRequest, which must reach the
 * server that issued its key) makes one attempt to its endpoint, whatever the endpoint's state:
 * no race, no other endpoint, no handshake, no evidence on the endpoint; connected → open,
 * failed → closed (all-failed).
 *
 * In every phase before open, close() (client reset, drain, stop) ends the session at once and
 * quietly: attempts dropped, deadline and wait cleared, greeting and handshake aborted. In every phase an
 * exception is an internal error: reported once (SessionHost.faulted), the client closed, the
 * process alive.
 *
 * The common case (an endpoint picked, connected within the race delay, no handshake) is pick →
 * connect → open: one ConnectAttempt (three socket listeners) and a deadline set and cleared; no
 * promise, timer or AbortSignal. Raced and retried clients go through the same transitions.
 */
export type SessionPhase = 'greet' | 'pick' | 'connect' | 'race' | 'wait' | 'handshake' | 'open' | 'closed';

export type ConnectFailurePhase = 'connect' | 'handshake';

/** 'rejected' = a handshake failed with `retry: false` (e.g. the credentials were refused). */
export type NoEndpointReason = 'no-endpoint' | 'all-failed' | 'rejected';

/** Why a session closed without an upstream; undefined: closed from outside (quietly). */
export type EndReason = NoEndpointReason | 'max-per-endpoint' | undefined;

/** Code of a connect given up because its endpoint went down (or moved) meanwhile. */
export const ENDPOINT_DOWN = 'EENDPOINTDOWN';

/** What a listener sets for its sessions. */
export interface SessionRules {
  connectTimeoutMs: number;
  /** A connect still pending after this long is raced by a second one (none when ≥ connectTimeoutMs). */
  raceDelayMs: number;
  maxConnectAttempts: number;
  noEndpointWaitMs: number;
  handshake: Handshake | undefined;
  /** Runs on the client before anything else (see Greeting); bounded by handshakeTimeoutMs. */
  greet: Greeting | undefined;
  handshakeTimeoutMs: number;
  /** Keep a connect that completes to an endpoint removed or moved meanwhile. */
  keepConnectionsOnRemoval: boolean;
  idleTimeoutMs: number | undefined;
  keepAliveInitialDelayMs: number | undefined;
}

/** A session's listener: what it needs, and what it tells (for events, counters and replies). */
export interface SessionHost {
  readonly rules: SessionRules;
  readonly deadlines: DeadlineQueue;
  readonly create: (ep: Endpoint) => net.Socket;
  /** The endpoint for the next attempt (see pickEndpoint). */
  pick(busy: readonly Endpoint[], failed: FailedTries): Pick;
  /**
   * A connect's (or handshake's) outcome as evidence on `ep`: `code` undefined = it worked;
   * `startedAt`: when the failed connect started (older than the endpoint's last success, a soft
   * failure says little).
   */
  evidence(ep: Endpoint, code: string | undefined, startedAt?: number): void;
  /** Call s.wake() whenever endpoints change, until stopWaiting(s). */
  waitForEndpoint(s: ClientSession): void;
  stopWaiting(s: ClientSession): void;
  accepted(s: ClientSession): void;
  connectFailed(s: ClientSession, ep: Endpoint, code: string, phase: ConnectFailurePhase): void;
  failover(s: ClientSession, from: Endpoint, to: Endpoint): void;
  raced(s: ClientSession, ep: Endpoint): void;
  /** `attempt`, still pending, lost the race to another attempt of `s`: it is the host's now (drop() it, or own its outcome). */
  lost(s: ClientSession, attempt: ConnectAttempt): void;
  /** Piped (s.pipe, s.endpoint set). */
  opened(s: ClientSession): void;
  /** The pipe closed: account for it, then s.markClosed(result). */
  closed(s: ClientSession, result: PipeResult): void;
  /** Closed without an upstream: tell the client why (unless `reason` is undefined), then s.markClosed(). */
  ended(s: ClientSession, reason: EndReason): void;
  /** The greeting refused the client: send `reply` (empty: nothing), close it, then s.markClosed(). */
  refused(s: ClientSession, reply: Buffer): void;
  /** An unexpected exception (a bug); the session closes itself. */
  faulted(s: ClientSession, error: unknown): void;
}

/** What failed for one client so far (made at its first failure). */
class Tries {
  readonly failed = new Map<Endpoint, FailedTry>();
  /** Failed, and no attempt started since (the next one is a failover). */
  lastFailed: Endpoint | undefined;
  code: string | undefined;
  /** Message of the last HandshakeError (safe to show). */
  message: string | undefined;
}

const NO_TRIES: { readonly code?: string; readonly message?: string } = {};

interface Handshaking {
  readonly ac: AbortController;
  readonly onClose: () => void;
}

export class ClientSession extends ProxyConnection implements AttemptOwner, Deadline {
  phase: SessionPhase = 'pick';
  due = 0;
  slot = -1;
  /** The pending attempt (the older one while racing). */
  private attempt: ConnectAttempt | undefined;
  /** The younger attempt while racing. */
  private racer: ConnectAttempt | undefined;
  private tries: Tries | undefined;
  private handshaking: Handshaking | undefined;
  /** The greeting running (aborted when given up on). */
  private greeting: AbortController | undefined;
  /** What the greeting learned from the client, for the handshake. */
  private hello: unknown;
  /** One attempt to the greeting's endpoint, nothing else (see above). */
  private routed = false;
  private faulted = false;

  constructor(
    private readonly host: SessionHost,
    client: net.Socket,
  ) {
    super(client, host.deadlines.now());
  }

  /** The last failure's code and message (for the client's error reply). */
  get lastFailure(): { readonly code?: string; readonly message?: string } {
    return this.tries ?? NO_TRIES;
  }

  start(): void {
    try {
      // While pending, a client that resets or errors ends the session. (A client FIN does not:
      // it may have sent a request and half-closed; that still gets forwarded.)
      this.client.on('error', this.onClientGone);
      this.client.on('close', this.onClientGone);
      this.host.accepted(this);
      if (this.phase !== 'pick') return; // closed by a listener of the event
      const greet = this.host.rules.greet;
      if (greet !== undefined) this.greet(greet);
      else this.next();
    } catch (err) {
      this.fault(err);
    }
  }

  // ---- callbacks ----

  /** AttemptOwner: one of this session's connects ended. */
  attemptDone(a: ConnectAttempt, socket: net.Socket | undefined, code: string): void {
    try {
      if (a !== this.attempt && a !== this.racer) {
        if (socket) destroyQuietly(socket);
      } else if (socket === undefined) this.attemptFailed(a, code);
      else this.connected(a, socket);
    } catch (err) {
      this.fault(err);
    }
  }

  /** Deadline: the phase's deadline passed. */
  expire(): void {
    try {
      const rules = this.host.rules;
      switch (this.phase) {
        case 'greet':
          return this.stopGreeting();
        case 'connect':
          if (this.host.deadlines.now() - this.attempt!.startedAt < rules.connectTimeoutMs) return this.race();
          return this.attempt!.cancel('ETIMEDOUT');
        case 'race':
          return this.attempt!.cancel('ETIMEDOUT');
        case 'wait':
          this.host.stopWaiting(this);
          return this.end(this.giveUp());
        case 'handshake':
          return this.handshakeFailed('ETIMEDOUT');
      }
    } catch (err) {
      this.fault(err);
    }
  }

  /** Endpoints changed while waiting: go on once one is usable that has not failed for this client at its address. */
  wake(healthy: readonly Endpoint[]): void {
    try {
      if (this.phase !== 'wait') return;
      const failed = this.tries?.failed;
      if (!healthy.some((ep) => failed?.get(ep)?.generation !== ep.generation)) return;
      this.host.stopWaiting(this);
      this.host.deadlines.clear(this);
      this.next();
    } catch (err) {
      this.fault(err);
    }
  }

  /** `ep` went down or moved: attempts pending to it give up now (ENDPOINT_DOWN), the client moves on. */
  endpointGone(ep: Endpoint): void {
    if (this.routed) return; // its endpoint, whatever its state
    const { attempt, racer } = this;
    if (racer?.ep === ep) racer.cancel(ENDPOINT_DOWN);
    if (attempt?.ep === ep) attempt.cancel(ENDPOINT_DOWN);
  }

  protected abandon(): void {
    try {
      if (this.phase === 'wait') this.host.stopWaiting(this);
      if (this.handshaking) this.stopHandshake(true);
      if (this.greeting) return this.stopGreeting();
      this.end(undefined);
    } catch (err) {
      this.fault(err);
    }
  }

  private readonly onClientGone = (): void => this.close('ECONNRESET');

  // ---- transitions ----

  private greet(hook: Greeting): void {
    this.phase = 'greet';
    const ac = new AbortController();
    this.greeting = ac;
    this.setDeadline(this.host.deadlines.now() + this.host.rules.handshakeTimeoutMs);
    let p: Promise<ClientHello>;
    try {
      p = hook(this.client, ac.signal);
    } catch {
      return this.stopGreeting();
    }
    p.then(
      (hello) => this.greeted(ac, hello),
      () => this.greeted(ac, undefined),
    );
  }

  /** The greeting's outcome (undefined: it failed). */
  private greeted(ac: AbortController, hello: ClientHello | undefined): void {
    try {
      if (this.greeting !== ac) return; // timed out or closed meanwhile
      if (hello === undefined || this.client.destroyed) return this.stopGreeting();
      this.greeting = undefined;
      this.host.deadlines.clear(this);
      switch (hello.kind) {
        case 'session':
          this.hello = hello.hello;
          return this.next();
        case 'route':
          this.routed = true;
          return this.launch(hello.endpoint);
        case 'refuse':
          this.phase = 'closed';
          this.client.removeListener('error', this.onClientGone);
          this.client.removeListener('close', this.onClientGone);
          return this.host.refused(this, hello.reply);
      }
    } catch (err) {
      this.fault(err);
    }
  }

  /** The greeting failed, timed out or its client went: closed without a word, then the greeting aborted. */
  private stopGreeting(): void {
    const ac = this.greeting!;
    this.greeting = undefined;
    this.end(undefined);
    ac.abort();
  }

  /** Nothing pending: the next attempt, a wait, or the end. */
  private next(): void {
    this.phase = 'pick';
    if (this.attempts >= this.host.rules.maxConnectAttempts) return this.end(this.giveUp());
    const ep = this.host.pick(NO_ENDPOINTS, this.tries?.failed ?? NO_FAILURES);
    if (this.phase !== 'pick') return; // closed by a listener of what the pick reported
    if (ep === 'full') return this.end('max-per-endpoint');
    if (ep === undefined) return this.wait();
    this.launch(ep);
  }

  /** One attempt pending past its race point: a second one beside it, if there is one to make. */
  private race(): void {
    const a = this.attempt!;
    if (this.canRace()) {
      const ep = this.host.pick([a.ep], this.tries?.failed ?? NO_FAILURES);
      if (this.phase === 'closed') return;
      if (ep !== undefined && ep !== 'full') return this.launch(ep);
    }
    this.phase = 'connect';
    this.setDeadline(a.startedAt + this.host.rules.connectTimeoutMs);
  }

  private launch(ep: Endpoint): void {
    const host = this.host;
    const rules = host.rules;
    const t = this.tries;
    if (t?.lastFailed !== undefined) {
      host.failover(this, t.lastFailed, ep);
      t.lastFailed = undefined;
    }
    const first = this.attempt;
    if (first !== undefined) host.raced(this, ep);
    if (this.phase === 'closed') return; // by a listener of those events
    this.attempts++;
    this.endpoint = ep;
    const now = host.deadlines.now();
    const a = new ConnectAttempt(this, ep, now);
    if (first === undefined) {
      this.attempt = a;
      this.phase = 'connect';
      this.setDeadline(now + (this.canRace() ? rules.raceDelayMs : rules.connectTimeoutMs));
    } else {
      this.racer = a;
      this.phase = 'race';
      this.setDeadline(first.startedAt + rules.connectTimeoutMs);
    }
    a.open(host.create); // may report a failure at once
  }

  private canRace(): boolean {
    const rules = this.host.rules;
    return !this.routed && rules.raceDelayMs < rules.connectTimeoutMs && this.attempts < rules.maxConnectAttempts;
  }

  private attemptFailed(a: ConnectAttempt, code: string): void {
    if (a === this.attempt) this.attempt = this.racer;
    this.racer = undefined;
    const ep = a.ep;
    const t = (this.tries ??= new Tries());
    if (this.routed) {
      t.code = code;
      this.host.connectFailed(this, ep, code, 'connect');
      if (this.phase === 'connect') this.end('all-failed');
      return;
    }
    // Cancelled because the endpoint went down: that is not one more failure of its own. A peer
    // with another address (IPv4 and IPv6) is tried there before it is blamed.
    if (code === ENDPOINT_DOWN) t.failed.set(ep, { generation: a.generation, hard: false });
    else if (!ep.failOver(a.dialled)) {
      // (May eject it, and cancel this client's other attempt to it, re-entering here: what
      // follows reads the state afresh.)
      this.host.evidence(ep, code, a.startedAt);
      t.failed.set(ep, { generation: a.generation, hard: code !== 'ETIMEDOUT' });
    }
    t.code = code;
    t.message = undefined;
    t.lastFailed = ep;
    this.host.connectFailed(this, ep, code, 'connect');
    if (this.phase === 'connect' || this.phase === 'race') this.proceed();
  }

  /** An attempt ended without carrying the client: the next step from what is still pending. */
  private proceed(): void {
    const a = this.attempt;
    if (a === undefined) return this.next();
    if (this.racer !== undefined) return; // still racing: its deadline stands
    // The other attempt carries on alone, raced in turn once past its own race point.
    this.phase = 'connect';
    const rules = this.host.rules;
    const raceAt = a.startedAt + rules.raceDelayMs;
    if (!this.canRace()) this.setDeadline(a.startedAt + rules.connectTimeoutMs);
    else if (raceAt > this.host.deadlines.now()) this.setDeadline(raceAt);
    else this.race();
  }

  private connected(a: ConnectAttempt, upstream: net.Socket): void {
    const loser = a === this.attempt ? this.racer : this.attempt;
    this.attempt = undefined;
    this.racer = undefined;
    this.host.deadlines.clear(this);
    if (loser !== undefined) this.host.lost(this, loser);
    const rules = this.host.rules;
    const ep = a.ep;
    if (this.routed) {
      this.endpoint = ep;
      this.endpointGeneration = a.generation;
      return this.open(upstream);
    }
    // With a handshake, success is reported once it is done (else an endpoint failing every
    // handshake would have its failure streak reset by each TCP connect and never be ejected).
    if (rules.handshake === undefined) this.host.evidence(ep, undefined);
    if (!rules.keepConnectionsOnRemoval && (ep.removed || ep.generation !== a.generation)) {
      // Vanished from discovery while we were connecting: another one, without blaming it.
      // Moved (this is its old address): the same one where it is now.
      destroyQuietly(upstream);
      if (ep.removed) (this.tries ??= new Tries()).failed.set(ep, { generation: a.generation, hard: true });
      return this.next();
    }
    this.endpoint = ep;
    this.endpointGeneration = a.generation;
    if (rules.handshake !== undefined) return this.handshake(upstream, ep, rules.handshake);
    this.open(upstream);
  }

  private wait(): void {
    const at = this.startedAt + this.host.rules.noEndpointWaitMs;
    if (at <= this.host.deadlines.now()) return this.end(this.giveUp());
    this.phase = 'wait';
    this.setDeadline(at);
    this.host.waitForEndpoint(this);
  }

  private handshake(upstream: net.Socket, ep: Endpoint, hook: Handshake): void {
    this.phase = 'handshake';
    this.upstream = upstream;
    // Until the pipe has its handlers: an error destroys the socket, seen as its 'close'.
    upstream.on('error', noop);
    const h: Handshaking = { ac: new AbortController(), onClose: () => this.handshakeSettled(h, 'ECONNRESET') };
    this.handshaking = h;
    upstream.once('close', h.onClose);
    this.setDeadline(this.host.deadlines.now() + this.host.rules.handshakeTimeoutMs);
    let p: Promise<void | net.Socket>;
    try {
      p = hook(upstream, ep, h.ac.signal, this.hello);
    } catch (err) {
      return this.handshakeFailed(handshakeCode(err), err);
    }
    p.then(
      (replaced) => this.handshakeSettled(h, undefined, undefined, replaced ?? undefined),
      (err: unknown) => this.handshakeSettled(h, handshakeCode(err), err),
    );
  }

  /** `replaced`: the socket the handshake piped through instead of the upstream (TLS over it). */
  private handshakeSettled(h: Handshaking, code: string | undefined, error?: unknown, replaced?: net.Socket): void {
    try {
      if (this.handshaking !== h) {
        // timed out, failed or closed meanwhile (its upstream is destroyed already)
        if (replaced) destroyQuietly(replaced);
        return;
      }
      const upstream = replaced ?? this.upstream!;
      if (code === undefined && upstream.destroyed) code = 'ECONNRESET';
      if (code !== undefined) {
        if (replaced) destroyQuietly(replaced);
        return this.handshakeFailed(code, error);
      }
      this.stopHandshake(false);
      this.host.evidence(this.endpoint!, undefined);
      this.open(upstream);
    } catch (err) {
      this.fault(err);
    }
  }

  private handshakeFailed(code: string, error?: unknown): void {
    const upstream = this.upstream!;
    const ep = this.endpoint!;
    this.stopHandshake(true);
    this.upstream = undefined;
    destroyQuietly(upstream);
    const verdict = error instanceof HandshakeError ? error : undefined;
    // A failure that says nothing about the endpoint's health is counted, not held against it.
    if (verdict?.blameEndpoint === false) ep.failures++;
    else this.host.evidence(ep, code);
    const t = (this.tries ??= new Tries());
    t.failed.set(ep, { generation: this.endpointGeneration, hard: true });
    t.code = code;
    t.message = verdict?.message;
    this.host.connectFailed(this, ep, code, 'handshake');
    if (this.phase !== 'handshake') return; // closed by a listener of the event
    if (verdict?.retry === false) return this.end('rejected');
    t.lastFailed = ep;
    this.next();
  }

  private stopHandshake(abort: boolean): void {
    const h = this.handshaking!;
    this.handshaking = undefined;
    this.host.deadlines.clear(this);
    this.upstream?.removeListener('close', h.onClose);
    if (abort) h.ac.abort();
  }

  private open(upstream: net.Socket): void {
    const client = this.client;
    if (client.destroyed) {
      // Gone while we connected ('close' not emitted yet).
      destroyQuietly(upstream);
      this.upstream = undefined;
      return this.end(undefined);
    }
    client.removeListener('error', this.onClientGone);
    client.removeListener('close', this.onClientGone);
    const rules = this.host.rules;
    this.upstream = upstream;
    this.pipe = new SocketPipe(client, upstream, {
      idleTimeoutMs: rules.idleTimeoutMs,
      keepAliveInitialDelayMs: rules.keepAliveInitialDelayMs,
      onClosed: (result) => this.pipeClosed(result),
    });
    this.phase = 'open';
    this.state = 'open';
    this.host.opened(this);
  }

  private pipeClosed(result: PipeResult): void {
    try {
      this.phase = 'closed';
      this.host.closed(this, result);
    } catch (err) {
      this.fault(err);
    }
  }

  /** Closes the client without an upstream: `reason` said to it, or quietly (undefined). */
  private end(reason: EndReason): void {
    this.phase = 'closed';
    this.attempt?.drop();
    this.racer?.drop();
    this.attempt = undefined;
    this.racer = undefined;
    this.host.deadlines.clear(this);
    const client = this.client;
    client.removeListener('error', this.onClientGone);
    client.removeListener('close', this.onClientGone);
    this.host.ended(this, client.destroyed ? undefined : reason);
  }

  private giveUp(): NoEndpointReason {
    return this.tries !== undefined && this.tries.failed.size > 0 ? 'all-failed' : 'no-endpoint';
  }

  private setDeadline(at: number): void {
    this.host.deadlines.set(this, at);
  }

  /** An unexpected exception: reported once, everything of this client closed, nothing thrown. */
  private fault(err: unknown): void {
    const first = !this.faulted;
    this.faulted = true;
    const was = this.phase;
    this.phase = 'closed';
    try {
      if (first) this.host.faulted(this, err);
    } catch {
      // a listener of the report failed too: the client is still closed below
    }
    this.attempt?.drop();
    this.racer?.drop();
    this.attempt = undefined;
    this.racer = undefined;
    this.host.deadlines.clear(this);
    if (was === 'wait') this.host.stopWaiting(this);
    if (this.handshaking) this.handshaking.ac.abort();
    this.handshaking = undefined;
    this.greeting?.abort();
    this.greeting = undefined;
    if (this.pipe) {
      this.pipe.destroy('EINTERNAL'); // its close callback accounts for the connection
      return;
    }
    if (this.upstream) destroyQuietly(this.upstream);
    destroyQuietly(this.client);
    if (was !== 'closed' && was !== 'open') {
      try {
        this.host.ended(this, undefined);
      } catch {
        // accounted as far as it went
      }
    }
    this.markClosed();
  }
}
