import { type Clock, type TimerHandle, systemClock } from '../base/clock.js';

/** What a burst was made of: how many events of each kind, over how long. */
export interface BurstSummary {
  total: number;
  byKind: Record<string, number>;
  durationMs: number;
}

export interface BurstLogOptions {
  /** The first event of a burst: log it (one line). */
  onStart: (kind: string) => void;
  /** The burst is over (no event for quietMs), or still going after reportEveryMs: log the counts. */
  onSummary: (summary: BurstSummary, ended: boolean) => void;
  /** A burst ends after this long without an event. Default 1000 ms. */
  quietMs?: number;
  /** A burst that goes on is summed up this often. Default 60 s. */
  reportEveryMs?: number;
  clock?: Clock;
}

/**
 * Logs a burst of events (clients refused by a circuit breaker, say) as two lines, never one per
 * event: the first event at once, and a summary with the counts when the burst is over. A
 * burst that goes on is summed up every reportEveryMs. An event costs a counter increment; the
 * only timer is the one of the burst in progress.
 */
export class BurstLog {
  private readonly clock: Clock;
  private readonly quietMs: number;
  private readonly reportEveryMs: number;
  private byKind: Record<string, number> = {};
  private total = 0;
  private startedAt = 0;
  private lastAt = 0;
  private reportedAt = 0;
  private timer: TimerHandle | undefined;

  constructor(private readonly opts: BurstLogOptions) {
    this.clock = opts.clock ?? systemClock;
    this.quietMs = opts.quietMs ?? 1000;
    this.reportEveryMs = opts.reportEveryMs ?? 60_000;
  }

  get inBurst(): boolean {
    return this.timer !== undefined;
  }

  /** `count` events of `kind` (more than one when they are read from another process's counters). */
  hit(kind: string, count = 1): void {
    const now = this.clock.now();
    this.lastAt = now;
    this.total += count;
    this.byKind[kind] = (this.byKind[kind] ?? 0) + count;
    if (this.timer) return;
    this.startedAt = this.reportedAt = now;
    this.opts.onStart(kind);
    this.timer = this.clock.setTimeout(this.check, this.quietMs);
  }

  /** Ends a burst in progress (summed up) and its timer. */
  stop(): void {
    if (!this.timer) return;
    this.timer.cancel();
    this.finish();
  }

  private readonly check = (): void => {
    const now = this.clock.now();
    if (now - this.lastAt >= this.quietMs) {
      this.finish();
      return;
    }
    if (now - this.reportedAt >= this.reportEveryMs) {
      this.opts.onSummary({ total: this.total, byKind: this.byKind, durationMs: now - this.startedAt }, false);
      this.reportedAt = now;
    }
    this.timer = this.clock.setTimeout(this.check, Math.max(1, this.lastAt + this.quietMs - now));
  };

  private finish(): void {
    this.timer = undefined;
    const summary = { total: this.total, byKind: this.byKind, durationMs: Math.max(0, this.lastAt - this.startedAt) };
    this.total = 0;
    this.byKind = {};
    this.opts.onSummary(summary, true);
  }
}
