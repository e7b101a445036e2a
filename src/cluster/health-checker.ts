import { EventEmitter } from 'node:events';
import net from 'node:net';
import { systemClock, type Clock, type TimerHandle } from '../base/clock.js';
import type { Cluster } from './cluster.js';
import type { Endpoint } from './endpoint.js';
import { isHardFailure, LossEstimate, missesToConvict } from './evidence.js';

/**
 * What a check asks. 'tcp': the port accepts a connection. 'redis': it also answers PING with
 * +PONG (or -NOAUTH: alive, wants a password), as HAProxy's redis-check: a frozen (SIGSTOPped)
 * server still completes TCP handshakes in the kernel, but answers nothing.
 */
export type CheckKind = 'tcp' | 'redis';
export const CHECK_KINDS: readonly CheckKind[] = ['tcp', 'redis'];

export interface HealthCheckOptions {
  /** Time between rounds. Default 1000 ms. */
  intervalMs?: number;
  /** A check (connect, and for 'redis' the reply) that takes longer fails. Default 500 ms. */
  timeoutMs?: number;
  /**
   * Fewest failed checks in a row that mark an endpoint down when they are timeouts or resets
   * (soft failures: a lost SYN looks the same). Default 2. The number grows with the loss seen on
   * the path while the endpoint answered (see evidence.ts), up to `maxMisses`. A hard failure
   * (refused, unreachable, a wrong reply) marks it down at once. After a failure the next check
   * runs at once instead of a whole interval later (as HAProxy's `fastinter`), so a dead endpoint
   * is down after that many timeouts, not after as many intervals.
   */
  unhealthyThreshold?: number;
  /** Most soft failures in a row ever needed for a verdict. Default 12. */
  maxMisses?: number;
  /** Successful checks in a row that mark a down endpoint up again. Default 1. */
  healthyThreshold?: number;
  /** Each interval is scaled by a random factor in [1 - jitter, 1 + jitter]. Default 0.1. */
  jitter?: number;
  /** What to ask. Default 'tcp'. */
  kind?: CheckKind;
  /** Endpoints judged by someone else (a peer ambassador's host probe): not checked here. */
  skip?: (endpoint: Endpoint) => boolean;
  /** Opens the check connection (default net.connect to host:port); must emit 'connect' or 'error'. */
  createConnection?: (endpoint: Endpoint) => net.Socket;
  /** Time source (a FakeClock in tests). */
  clock?: Clock;
  /**
   * Runs `fn` after the I/O that is already waiting (default setImmediate): a timeout is judged
   * only after a reply that arrived while this process was busy has been read.
   */
  afterPendingIo?: (fn: () => void) => void;
}

export type HealthCheckerEvents = {
  /** Every finished check: `error` is an errno code ('ECONNREFUSED', 'ETIMEDOUT', …) on failure. */
  check: [endpoint: Endpoint, ok: boolean, error: string | undefined];
};

/** A finished check: when (clock ms), whether it passed, and the errno-style code when it did not. */
export interface LastCheck {
  at: number;
  ok: boolean;
  code: string | undefined;
}

interface CheckState {
  /** Failed checks in a row. */
  misses: number;
  /** The current streak of misses ended in a down verdict (its misses were no loss). */
  convicted: boolean;
  successes: number;
  loss: LossEstimate;
  socket: net.Socket | undefined;
  timer: TimerHandle | undefined;
  /** The last finished check (the status page's evidence). */
  last?: LastCheck;
  /** A confirming re-check scheduled after a failure. */
  confirm?: TimerHandle | undefined;
}

const PING = 'PING\r\n';
const MAX_REPLY_LINE = 512;

/**
 * Active health checks (TCP connect, or Redis PING) for every endpoint of a cluster that nobody
 * else judges. Marks endpoints up/down via `cluster.setHealth`, so the cluster emits endpoint-up /
 * endpoint-down('health-check'). One check per endpoint at a time; `stop()` cancels the schedule
 * and every in-flight socket.
 */
export class HealthChecker extends EventEmitter<HealthCheckerEvents> {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly unhealthyThreshold: number;
  readonly maxMisses: number;
  readonly healthyThreshold: number;
  readonly jitter: number;
  readonly kind: CheckKind;
  private readonly createConnection: (endpoint: Endpoint) => net.Socket;
  private readonly skip: (endpoint: Endpoint) => boolean;
  private readonly clock: Clock;
  private readonly afterPendingIo: (fn: () => void) => void;
  private readonly states = new Map<Endpoint, CheckState>();
  private roundTimer: TimerHandle | undefined;
  private running = false;

  constructor(
    readonly cluster: Cluster,
    options: HealthCheckOptions = {},
  ) {
    super();
    this.intervalMs = Math.max(1, options.intervalMs ?? 1000);
    this.timeoutMs = Math.max(1, options.timeoutMs ?? 500);
    this.unhealthyThreshold = Math.max(1, options.unhealthyThreshold ?? 2);
    this.maxMisses = Math.max(this.unhealthyThreshold, options.maxMisses ?? 12);
    this.healthyThreshold = Math.max(1, options.healthyThreshold ?? 1);
    this.jitter = Math.min(0.5, Math.max(0, options.jitter ?? 0.1));
    this.kind = options.kind ?? 'tcp';
    this.skip = options.skip ?? (() => false);
    this.clock = options.clock ?? systemClock;
    this.afterPendingIo = options.afterPendingIo ?? ((fn) => void setImmediate(fn));
    this.createConnection =
      options.createConnection ?? ((ep) => net.connect({ host: ep.host, port: ep.port }));
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Loss rate seen on the checks of `ep` while it answered (undefined if it is not checked here). */
  lossRate(ep: Endpoint): number | undefined {
    return this.states.get(ep)?.loss.rate;
  }

  /** The last finished check of `ep` (undefined if none yet, or it is not checked here). */
  lastCheck(ep: Endpoint): LastCheck | undefined {
    return this.states.get(ep)?.last;
  }

  /** Check every endpoint now, then every interval; new endpoints are checked as they arrive. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.cluster.on('endpoint-added', this.onAdded);
    this.cluster.on('endpoint-removed', this.onRemoved);
    this.cluster.on('endpoint-updated', this.onUpdated);
    this.round();
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.cluster.off('endpoint-added', this.onAdded);
    this.cluster.off('endpoint-removed', this.onRemoved);
    this.cluster.off('endpoint-updated', this.onUpdated);
    this.roundTimer?.cancel();
    this.roundTimer = undefined;
    for (const st of this.states.values()) cancel(st);
    this.states.clear();
  }

  /** Run one check of `ep` now (no-op if one is in flight or `ep` is skipped); resolves when it finished. */
  check(ep: Endpoint): Promise<void> {
    if (!this.running || ep.removed) return Promise.resolve();
    if (this.skip(ep)) {
      this.release(ep);
      return Promise.resolve();
    }
    let st = this.states.get(ep);
    if (!st) {
      st = { misses: 0, convicted: false, successes: 0, loss: new LossEstimate(), socket: undefined, timer: undefined };
      this.states.set(ep, st);
      ep.healthOrigin = 'own-check';
    }
    if (st.socket) return Promise.resolve();
    const state = st;
    const generation = ep.generation;
    return new Promise<void>((resolve) => {
      let socket: net.Socket;
      try {
        socket = this.createConnection(ep);
      } catch (err) {
        this.record(ep, state, generation, false, errorCode(err));
        resolve();
        return;
      }
      state.socket = socket;
      let reply = '';
      const finish = (ok: boolean, code: string | undefined): void => {
        if (state.socket !== socket) return;
        state.timer?.cancel();
        state.timer = undefined;
        state.socket = undefined;
        socket.removeListener('connect', onConnect);
        socket.removeListener('error', onError);
        socket.removeListener('data', onData);
        socket.on('error', noop); // late errors after destroy must not be unhandled
        socket.destroy();
        this.record(ep, state, generation, ok, code);
        resolve();
      };
      const onConnect = (): void => {
        if (this.kind === 'tcp') return finish(true, undefined);
        socket.setEncoding('latin1');
        socket.on('data', onData);
        socket.write(PING);
      };
      const onData = (chunk: string): void => {
        reply += chunk;
        const eol = reply.indexOf('\r\n');
        if (eol < 0) {
          if (reply.length > MAX_REPLY_LINE) finish(false, 'EBADREPLY');
          return;
        }
        const line = reply.slice(0, eol);
        const alive = line === '+PONG' || line.startsWith('-NOAUTH');
        finish(alive, alive ? undefined : 'EBADREPLY');
      };
      const onError = (err: Error): void => finish(false, errorCode(err));
      socket.once('connect', onConnect);
      socket.once('error', onError);
      // Judged after the I/O already waiting: a connect or reply that arrived while this process
      // was busy is not a timeout.
      state.timer = this.clock.setTimeout(() => this.afterPendingIo(() => finish(false, 'ETIMEDOUT')), this.timeoutMs);
      // A stop() or removal cancels: resolve too so awaiting callers never hang.
      socket.once('close', () => {
        if (state.socket === socket) finish(false, this.kind === 'redis' ? 'ECONNRESET' : 'ECANCELED');
        resolve();
      });
    });
  }

  private record(ep: Endpoint, st: CheckState, generation: number, ok: boolean, code: string | undefined): void {
    if (!this.running || ep.removed || ep.generation !== generation || this.states.get(ep) !== st) return;
    st.last = { at: this.clock.now(), ok, code };
    this.emit('check', ep, ok, code);
    if (ok) {
      // The misses since the last answer were losses, unless they were a death.
      if (!st.convicted) st.loss.answered(st.misses);
      st.misses = 0;
      st.convicted = false;
      st.successes++;
      if (!ep.checkHealthy && st.successes >= this.healthyThreshold) this.cluster.setHealth(ep, true);
      return;
    }
    st.successes = 0;
    st.misses++;
    if (!ep.checkHealthy) return; // down already: checked again on the interval
    const needed = isHardFailure(code) || code === 'EBADREPLY'
      ? 1
      : missesToConvict(st.loss.rate, this.unhealthyThreshold, this.maxMisses);
    if (st.misses >= needed) {
      st.convicted = true;
      this.cluster.setHealth(ep, false);
      return;
    }
    // Confirm at once (the finished check's socket is gone, so this starts a new one).
    st.confirm ??= this.clock.setTimeout(() => {
      st.confirm = undefined;
      void this.check(ep);
    }, 0);
  }

  /** Stop judging `ep` (someone else does now): forget its state and clear our verdict. */
  private release(ep: Endpoint): void {
    const st = this.states.get(ep);
    if (!st) return;
    this.states.delete(ep);
    cancel(st);
    if (ep.healthOrigin === 'own-check') ep.healthOrigin = 'passive';
    this.cluster.setHealth(ep, true);
  }

  private round(): void {
    this.roundTimer = undefined;
    if (!this.running) return;
    for (const ep of this.cluster.endpoints()) void this.check(ep);
    const factor = 1 + this.jitter * (2 * this.clock.random() - 1);
    this.roundTimer = this.clock.setTimeout(() => this.round(), Math.max(1, Math.round(this.intervalMs * factor)));
  }

  private readonly onAdded = (ep: Endpoint): void => {
    void this.check(ep);
  };

  private readonly onRemoved = (ep: Endpoint): void => {
    const st = this.states.get(ep);
    if (!st) return;
    this.states.delete(ep);
    cancel(st);
  };

  private readonly onUpdated = (ep: Endpoint, addressChanged: boolean): void => {
    if (this.skip(ep)) return this.release(ep);
    if (!addressChanged && this.states.has(ep)) return;
    // New address (or newly ours): forget the streaks of the old one and check at once.
    this.onRemoved(ep);
    void this.check(ep);
  };
}

function cancel(st: CheckState): void {
  st.timer?.cancel();
  st.timer = undefined;
  st.confirm?.cancel();
  st.confirm = undefined;
  const s = st.socket;
  st.socket = undefined;
  if (s) {
    s.on('error', noop);
    s.destroy();
  }
}

function noop(): void {}

export function errorCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.name : 'EUNKNOWN';
}
