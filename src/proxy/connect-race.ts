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
  /** The socket being connected, to close it if the attempt loses the race. */
  socket: net.Socket | undefined;
  settled: boolean;
  /** Another attempt of the same client won: this one is closed and its outcome ignored. */
  lost: boolean;
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

const NO_ENDPOINTS: readonly Endpoint[] = [];

/**
 * The connect attempts of one client, raced as Happy Eyeballs (RFC 8305) races addresses: an
 * attempt still pending after the race delay is not abandoned, another one starts beside it, and
 * the first to connect carries the client; the others are closed. A SYN lost on the way is then
 * retransmitted by TCP in the first attempt while the second goes through, instead of the
 * client paying a whole retransmission timeout or failing.
 *
 * The listener drives it: `start()` attempts, `next()` outcomes one at a time, `close()` the
 * losers once it has its winner.
 */
export class ConnectRace {
  private readonly attempts: Attempt[] = [];
  private readonly queue: AttemptOutcome[] = [];
  private wake: ((o: AttemptOutcome) => void) | undefined;

  constructor(
    private readonly opener: AttemptOpener,
    private readonly signal: AbortSignal,
  ) {}

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
    const attempt: Attempt = { ep, generation: ep.generation, dialled: ep.host, socket: undefined, settled: false, lost: false };
    this.attempts.push(attempt);
    this.track(attempt, this.opener.openAttempt(attempt, this.signal, () => this.push({ kind: 'slow', attempt })));
    return attempt;
  }

  /**
   * Takes over an attempt started elsewhere (a fast-path connect still pending after the race
   * delay): it is pending here from now on, as if start() had made it and it had been slow.
   */
  adopt(ep: Endpoint, generation: number, dialled: string, socket: net.Socket): Attempt {
    const attempt: Attempt = { ep, generation, dialled, socket, settled: false, lost: false };
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
      },
      (err: unknown) => {
        attempt.settled = true;
        this.opener.attemptSettled(attempt);
        this.push({ kind: 'failed', attempt, code: err instanceof ConnectError ? err.code : codeOf(err) });
      },
    );
  }

  /** The next outcome (in the order they happened). Only one caller may wait at a time. */
  next(): Promise<AttemptOutcome> {
    const o = this.queue.shift();
    if (o) return Promise.resolve(o);
    return new Promise((resolve) => (this.wake = resolve));
  }

  /** Close every attempt but `winner` (they lost); their outcomes are dropped. */
  close(winner?: Attempt): void {
    for (const a of this.attempts) {
      if (a === winner || a.lost) continue;
      a.lost = true;
      if (!a.settled) a.socket?.destroy();
    }
    for (const o of this.queue.splice(0)) if (o.kind === 'connected' && o.attempt !== winner) o.socket.destroy();
  }

  private push(o: AttemptOutcome): void {
    if (o.attempt.lost) {
      if (o.kind === 'connected') o.socket.destroy(); // connected a moment too late
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
