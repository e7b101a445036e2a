import { systemClock, type Clock, type TimerHandle } from '../base/clock.js';

/** Something with at most one deadline at a time in a DeadlineQueue (a client session). */
export interface Deadline {
  /** When it is due (clock ms); meaningful while queued. */
  due: number;
  /** Its place in the queue, -1 when not queued (owned by the queue: start it at -1). */
  slot: number;
  /** The deadline passed (called once per set()). */
  expire(): void;
}

/**
 * The deadlines of a listener's clients (race point, connect timeout, end of a wait, handshake
 * timeout: each client has one at a time), on one timer.
 *
 * A binary heap ordered by due time, its index kept on each item: setting, moving or clearing a
 * deadline is a few comparisons, with no Timeout object per client and no timer list created
 * and torn down each time the last pending connect completes, as setTimeout/clearTimeout per
 * connect would. The timer is re-armed only when the earliest deadline moves earlier; when it
 * fires with nothing due (deadlines cleared meanwhile, the common case) it re-arms for the next.
 *
 * The timer is unref'd: a deadline only matters while something else (a connecting socket, a
 * listening server) keeps the process alive.
 */
export class DeadlineQueue {
  private readonly heap: Deadline[] = [];
  private timer: TimerHandle | undefined;
  /** When the timer fires (Infinity: not armed). */
  private armedFor = Infinity;

  constructor(private readonly clock: Clock = systemClock) {}

  now(): number {
    return this.clock.now();
  }

  /** `item` is due at `at` (clock ms), instead of any deadline it had. */
  set(item: Deadline, at: number): void {
    if (item.slot >= 0) this.clear(item);
    item.due = at;
    item.slot = this.heap.length;
    this.heap.push(item);
    this.up(item.slot);
    if (at < this.armedFor) this.arm(at);
  }

  /** Forget `item`'s deadline (nothing if it has none). The timer stays armed (see above). */
  clear(item: Deadline): void {
    const i = item.slot;
    if (i < 0) return;
    item.slot = -1;
    const last = this.heap.pop()!;
    if (last === item) return;
    this.heap[i] = last;
    last.slot = i;
    this.down(i);
    this.up(last.slot);
  }

  get size(): number {
    return this.heap.length;
  }

  /** Items with a deadline now, in no particular order (a copy: safe to change the queue while reading). */
  items(): Deadline[] {
    return this.heap.slice();
  }

  private arm(at: number): void {
    this.timer?.cancel();
    this.armedFor = at;
    this.timer = this.clock.setTimeout(this.fire, Math.max(1, at - this.clock.now()));
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = this.clock.now();
    const heap = this.heap;
    // An expiry may set new deadlines (at least 1 ms later, see ClientSession) or clear others.
    while (heap.length > 0 && heap[0]!.due <= now) {
      const item = heap[0]!;
      this.clear(item);
      item.expire();
    }
    if (heap.length > 0 && heap[0]!.due < this.armedFor) this.arm(heap[0]!.due);
  };

  private up(i: number): void {
    const heap = this.heap;
    const item = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (parent.due <= item.due) break;
      heap[i] = parent;
      parent.slot = i;
      i = p;
    }
    heap[i] = item;
    item.slot = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && heap[c + 1]!.due < heap[c]!.due) c++;
      const child = heap[c]!;
      if (child.due >= item.due) break;
      heap[i] = child;
      child.slot = i;
      i = c;
    }
    heap[i] = item;
    item.slot = i;
  }
}
