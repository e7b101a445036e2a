import type net from 'node:net';
import type { Endpoint } from '../cluster/endpoint.js';
import { ConnectError } from './connect.js';
import { codeOf } from './pipe.js';

/** One connect attempt of a client to an endpoint. */
export interface Attempt {
  readonly ep: Endpoint;
  /** The endpoint's generation (address) when the attempt started. */
  readonly generation: number;
  /** The address dialled (a peer may have several: IPv4 and IPv6). */
  readonly dialled: string;
  /** Epoch ms when the attempt started (a failure older than the endpoint's last success says little). */
  readonly startedAt: number;
  /** The socket being connected, to close it if the attempt loses the race. */
  socket: net.Socket | undefined;
  settled: boolean;
  /**
   * Another attempt of the same client won. A lost attempt still pending is not closed: it goes on
   * (up to the connect timeout) as a probe of its endpoint, and its outcome is handed to
   * `lostAttemptSettled` instead of the client.
   */
  lost: boolean;
  /** The client went away (or the race gave up): closed, its outcome ignored. */
  abandoned: boolean;
}

/** What happened to an attempt: it connected, failed (`code`), or is slow (still pending after the race delay). */
export type AttemptOutcome =
  | { kind: 'connected'; attempt: Attempt; socket: net.Socket }
  | { kind: 'failed'; attempt: Attempt; code: string }
  | { kind: 'slow'; attempt: Attempt };

/** Who opens the attempts (the listener). */
export interface AttemptOpener {
  /** Resolves with the connected socket; calls `onSlow` once if it is still pending after the race delay. */
  openAttempt(attempt: Attempt, signal: AbortSignal, onSlow: () => void): Promise<net.Socket>;
  /**
   * Like openAttempt for an attempt whose socket is already connecting and past the race delay
   * (a fast-path connect handed over, see ClientHandler): no `onSlow`.
   */
  adoptAttempt(attempt: Attempt, signal: AbortSignal): Promise<net.Socket>;
  /** Called once per attempt when it settled (connected or failed), before its outcome is queued. */
  attemptSettled(attempt: Attempt): void;
}

/**
 * A lost attempt settled: the evidence it brings about its endpoint (a connect that never
 * completes is a timeout, one that completes late a sign of life). A connected socket is the
 * callee's to close.
 */
export type LostAttemptSettled = (outcome: AttemptOutcome & { kind: 'connected' | 'failed' }) => void;

const NO_ENDPOINTS: readonly Endpoint[] = [];

/**
 * The connect attempts of one client, raced as Happy Eyeballs (RFC 8305) races addresses: an
 * attempt still pending after the race delay is not abandoned, another one starts beside it, and
 * the first to connect carries the client; the others are closed. A SYN lost on the way is then
 * retransmitted by TCP in the first attempt while the second goes through, instead of the
 * client paying a whole retransmission timeout or failing.
 *
 * The listener drives it: `start()` attempts, `next()` outcomes one at a time, `close()` once
 * it has its winner (or gives up). The losers are not dropped: each goes on to its own end, up to
 * the connect timeout, and that end is evidence about its endpoint (`onLost`) — else
 * an endpoint whose SYNs are dropped would lose every race and never be seen to time out. One
 * socket per lost race lives on for at most the connect timeout.
 */
export class ConnectRace {
  private readonly attempts: Attempt[] = [];
  private readonly queue: AttemptOutcome[] = [];
  private wake: ((o: AttemptOutcome) => void) | undefined;
  /**
   * Aborts the attempts: the client going away before a winner, or the listener stopping. Lost
   * attempts outlive their client, so they cannot hang on its signal.
   */
  private readonly ac = new AbortController();
  private won = false;
  private closed = false;

  /**
   * @param clientSignal aborts when the client goes away
   * @param stopSignal aborts when the listener stops (lost attempts end then too)
   * @param onLost where the outcomes of lost attempts go
   */
  constructor(
    private readonly opener: AttemptOpener,
    private readonly clientSignal: AbortSignal,
    private readonly stopSignal?: AbortSignal,
    private readonly onLost: LostAttemptSettled = closeLate,
  ) {
    if (clientSignal.aborted || stopSignal?.aborted) this.ac.abort();
    clientSignal.addEventListener('abort', this.onClientAbort, { once: true });
    stopSignal?.addEventListener('abort', this.onStop, { once: true });
  }

  private readonly onClientAbort = (): void => {
    if (!this.won) this.ac.abort();
  };

  private readonly onStop = (): void => this.ac.abort();

  private get signal(): AbortSignal {
    return this.ac.signal;
  }

  /** Attempts started and not settled yet. */
  get pending(): number {
    let n = 0;
    for (const a of this.attempts) if (!a.settled) n++;
    return n;
  }

  /** Whether an attempt to `ep` is still pending. */
  isPending(ep: Endpoint): boolean {
    for (const a of this.attempts) if (!a.settled && a.ep === ep) return true;
    return false;
  }

  /** Endpoints with an attempt still pending. */
  pendingEndpoints(): readonly Endpoint[] {
    let out: Endpoint[] | undefined;
    for (const a of this.attempts) if (!a.settled && !out?.includes(a.ep)) (out ??= []).push(a.ep);
    return out ?? NO_ENDPOINTS;
  }

  start(ep: Endpoint): Attempt {
    const attempt: Attempt = {
      ep, generation: ep.generation, dialled: ep.host, startedAt: Date.now(), socket: undefined, settled: false, lost: false, abandoned: false,
    };
    this.attempts.push(attempt);
    this.track(attempt, this.opener.openAttempt(attempt, this.signal, () => this.push({ kind: 'slow', attempt })));
    return attempt;
  }

  /**
   * Takes over an attempt started elsewhere (a fast-path connect still pending after the race
   * delay): it is pending here from now on, as if start() had made it and it had been slow.
   */
  adopt(ep: Endpoint, generation: number, dialled: string, startedAt: number, socket: net.Socket): Attempt {
    const attempt: Attempt = { ep, generation, dialled, startedAt, socket, settled: false, lost: false, abandoned: false };
    this.attempts.push(attempt);
    this.track(attempt, this.opener.adoptAttempt(attempt, this.signal));
    return attempt;
  }

  private track(attempt: Attempt, connected: Promise<net.Socket>): void {
    connected.then(
      (socket) => {
        attempt.settled = true;
        this.opener.attemptSettled(attempt);
        this.push({ kind: 'connected', attempt, socket });
        this.detachWhenDone();
      },
      (err: unknown) => {
        attempt.settled = true;
        this.opener.attemptSettled(attempt);
        this.push({ kind: 'failed', attempt, code: err instanceof ConnectError ? err.code : codeOf(err) });
        this.detachWhenDone();
      },
    );
  }

  /** Once closed and nothing is pending, the signals are let go (a race may end long after its client). */
  private detachWhenDone(): void {
    if (!this.closed || this.pending > 0) return;
    this.clientSignal.removeEventListener('abort', this.onClientAbort);
    this.stopSignal?.removeEventListener('abort', this.onStop);
  }

  /** The next outcome (in the order they happened). Only one caller may wait at a time. */
  next(): Promise<AttemptOutcome> {
    const o = this.queue.shift();
    if (o) return Promise.resolve(o);
    return new Promise((resolve) => (this.wake = resolve));
  }

  /**
   * The race is over. With a `winner`, the other attempts lost: those still pending go on as
   * probes of their endpoints, and outcomes queued but not read yet are evidence too (see
   * onLost). Without one (the client went away, or every try failed), pending
   * attempts are closed and their outcomes dropped.
   */
  close(winner?: Attempt): void {
    this.closed = true;
    if (winner) this.won = true;
    for (const a of this.attempts) {
      if (a === winner || a.lost || a.abandoned) continue;
      if (winner && !a.settled) {
        a.lost = true;
      } else {
        a.abandoned = true;
        if (!a.settled) a.socket?.destroy();
      }
    }
    for (const o of this.queue.splice(0)) {
      if (o.kind === 'slow' || o.attempt === winner) continue;
      if (winner) {
        // Settled a moment after the winner, before the listener read it: evidence all the same.
        o.attempt.lost = true;
        this.onLost(o);
      } else if (o.kind === 'connected') {
        o.socket.destroy();
      }
    }
    this.detachWhenDone();
  }

  private push(o: AttemptOutcome): void {
    if (o.attempt.abandoned) {
      if (o.kind === 'connected') o.socket.destroy(); // connected a moment too late
      return;
    }
    if (o.attempt.lost) {
      if (o.kind !== 'slow') this.onLost(o);
      return;
    }
    const wake = this.wake;
    if (wake) {
      this.wake = undefined;
      wake(o);
    } else {
      this.queue.push(o);
    }
  }
}

/** Without an `onLost`: a lost attempt that connects after all is closed. */
function closeLate(outcome: AttemptOutcome): void {
  if (outcome.kind === 'connected') outcome.socket.destroy();
}
