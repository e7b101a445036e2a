/**
 * Time source for the mDNS engine. Every timer in the engine goes through a Clock so the
 * cache, refresh schedule and probe/announce sequences can be unit-tested with FakeClock.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Uniform random number in [0, 1); injectable for deterministic tests. */
  random(): number;
}

/** Node fires a timer longer than 2^31-1 ms after 1 ms: longer waits are chained. */
const MAX_TIMER_MS = 0x7fffffff;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    let t: NodeJS.Timeout;
    const arm = (left: number) => {
      t = setTimeout(left > MAX_TIMER_MS ? () => arm(left - MAX_TIMER_MS) : fn, Math.min(Math.max(0, left), MAX_TIMER_MS));
      t.unref?.();
    };
    arm(ms);
    return { cancel: () => clearTimeout(t) };
  },
  random: Math.random,
};

/** A manually advanced clock for tests. Timers fire in time order inside advance(). */
export class FakeClock implements Clock {
  private current: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  private seed = 1;

  constructor(start = 1_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { at: this.current + Math.max(0, ms), fn });
    return { cancel: () => this.timers.delete(id) };
  }

  /** Deterministic LCG so tests are reproducible. */
  random(): number {
    this.seed = (this.seed * 1103515245 + 12345) % 2147483648;
    return this.seed / 2147483648;
  }

  advance(ms: number): void {
    const end = this.current + ms;
    for (;;) {
      let nextId = -1;
      let nextAt = Infinity;
      for (const [id, t] of this.timers) {
        if (t.at < nextAt || (t.at === nextAt && id < nextId)) {
          nextAt = t.at;
          nextId = id;
        }
      }
      if (nextId < 0 || nextAt > end) break;
      const t = this.timers.get(nextId)!;
      this.timers.delete(nextId);
      this.current = Math.max(this.current, t.at);
      t.fn();
    }
    this.current = end;
  }

  pending(): number {
    return this.timers.size;
  }
}
