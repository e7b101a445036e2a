import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Cluster } from './cluster.js';
import type { Endpoint } from './endpoint.js';

export interface HealthCheckOptions {
  /** Time between rounds. Default 1000 ms. */
  intervalMs?: number;
  /** A connect that takes longer fails. Default 500 ms. */
  timeoutMs?: number;
  /**
   * Failed checks in a row that mark an endpoint down. Default 2. After a failure the next check
   * runs at once instead of a whole interval later (as HAProxy's `fastinter` or Envoy's
   * `unhealthy_edge_interval`): one lost SYN still cannot take an endpoint down, and a dead one
   * is down after the threshold's timeouts, not after as many intervals.
   */
  unhealthyThreshold?: number;
  /** Successful checks in a row that mark a down endpoint up again. Default 1. */
  healthyThreshold?: number;
  /** Each interval is scaled by a random factor in [1 - jitter, 1 + jitter]. Default 0.1. */
  jitter?: number;
  /** Opens the check connection (default net.connect to host:port); must emit 'connect' or 'error'. */
  createConnection?: (endpoint: Endpoint) => net.Socket;
}

export type HealthCheckerEvents = {
  /** Every finished check: `error` is an errno code ('ECONNREFUSED', 'ETIMEDOUT', …) on failure. */
  check: [endpoint: Endpoint, ok: boolean, error: string | undefined];
};

interface CheckState {
  failures: number;
  successes: number;
  socket: net.Socket | undefined;
  timer: NodeJS.Timeout | undefined;
  /** A confirming re-check scheduled after a failure. */
  confirm?: NodeJS.Immediate | undefined;
}

/**
 * Active TCP-connect health checks for every endpoint of a cluster. Marks endpoints up/down via
 * `cluster.setHealth`, so the cluster emits endpoint-up / endpoint-down('health-check').
 * One check per endpoint at a time; `stop()` cancels the schedule and every in-flight socket.
 */
export class HealthChecker extends EventEmitter<HealthCheckerEvents> {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
  readonly jitter: number;
  private readonly createConnection: (endpoint: Endpoint) => net.Socket;
  private readonly states = new Map<Endpoint, CheckState>();
  private roundTimer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    readonly cluster: Cluster,
    options: HealthCheckOptions = {},
  ) {
    super();
    this.intervalMs = Math.max(1, options.intervalMs ?? 1000);
    this.timeoutMs = Math.max(1, options.timeoutMs ?? 500);
    this.unhealthyThreshold = Math.max(1, options.unhealthyThreshold ?? 2);
    this.healthyThreshold = Math.max(1, options.healthyThreshold ?? 1);
    this.jitter = Math.min(0.5, Math.max(0, options.jitter ?? 0.1));
    this.createConnection =
      options.createConnection ?? ((ep) => net.connect({ host: ep.host, port: ep.port }));
  }

  get isRunning(): boolean {
    return this.running;
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
    if (this.roundTimer) clearTimeout(this.roundTimer);
    this.roundTimer = undefined;
    for (const st of this.states.values()) cancel(st);
    this.states.clear();
  }

  /** Run one check of `ep` now (no-op if one is in flight); resolves when it finished. */
  check(ep: Endpoint): Promise<void> {
    if (!this.running || ep.removed) return Promise.resolve();
    let st = this.states.get(ep);
    if (!st) {
      st = { failures: 0, successes: 0, socket: undefined, timer: undefined };
      this.states.set(ep, st);
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
      const finish = (ok: boolean, code: string | undefined): void => {
        if (state.socket !== socket) return;
        clearTimeout(state.timer);
        state.timer = undefined;
        state.socket = undefined;
        socket.removeListener('connect', onConnect);
        socket.removeListener('error', onError);
        socket.on('error', noop); // late errors after destroy must not be unhandled
        socket.destroy();
        this.record(ep, state, generation, ok, code);
        resolve();
      };
      const onConnect = (): void => finish(true, undefined);
      const onError = (err: Error): void => finish(false, errorCode(err));
      socket.once('connect', onConnect);
      socket.once('error', onError);
      state.timer = setTimeout(() => finish(false, 'ETIMEDOUT'), this.timeoutMs);
      // A stop() or removal cancels: resolve too so awaiting callers never hang.
      socket.once('close', () => {
        if (state.socket === socket) finish(false, 'ECANCELED');
        resolve();
      });
    });
  }

  private record(ep: Endpoint, st: CheckState, generation: number, ok: boolean, code: string | undefined): void {
    if (!this.running || ep.removed || ep.generation !== generation || this.states.get(ep) !== st) return;
    this.emit('check', ep, ok, code);
    if (ok) {
      st.failures = 0;
      st.successes++;
      if (!ep.checkHealthy && st.successes >= this.healthyThreshold) this.cluster.setHealth(ep, true);
    } else {
      st.successes = 0;
      st.failures++;
      if (ep.checkHealthy && st.failures >= this.unhealthyThreshold) this.cluster.setHealth(ep, false);
      else if (ep.checkHealthy) {
        // Confirm at once (the finished check's socket is gone, so this starts a new one).
        st.confirm ??= setImmediate(() => {
          st.confirm = undefined;
          void this.check(ep);
        });
      }
    }
  }

  private round(): void {
    this.roundTimer = undefined;
    if (!this.running) return;
    for (const ep of this.cluster.endpoints()) void this.check(ep);
    const factor = 1 + this.jitter * (2 * Math.random() - 1);
    this.roundTimer = setTimeout(() => this.round(), Math.max(1, Math.round(this.intervalMs * factor)));
    this.roundTimer.unref();
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
    if (!addressChanged) return;
    // New address: forget the streaks of the old one and check the new one at once.
    this.onRemoved(ep);
    void this.check(ep);
  };
}

function cancel(st: CheckState): void {
  clearTimeout(st.timer);
  st.timer = undefined;
  if (st.confirm) clearImmediate(st.confirm);
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
