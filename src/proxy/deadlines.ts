/**
 * Deadlines that all lie the same delay after they are set, served by one timer.
 *
 * Every pending connect of a listener times out `delayMs` after it started, so deadlines expire
 * in the order they were set: a Map (kept in insertion order) is a queue sorted by deadline, and
 * one timer armed for its head serves them all. Setting or clearing a deadline is a Map set or
 * delete: no Timeout object per connection, and no timer list created and torn down each time
 * the last pending connect completes, as setTimeout/clearTimeout per connect would.
 *
 * The timer is unref'd: a deadline only matters while something else (a connecting socket, a
 * listening server) keeps the process alive.
 */
export class DeadlineQueue<T> {
  private readonly due = new Map<T, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly delayMs: number,
    private readonly onExpired: (item: T) => void,
  ) {}

  /** `item` expires delayMs from now, unless deleted before. */
  add(item: T): void {
    this.due.set(item, Date.now() + this.delayMs);
    if (this.timer === undefined) this.arm(this.delayMs);
  }

  /** Forget `item`. The timer stays armed: when it fires with nothing due it re-arms or stops. */
  delete(item: T): void {
    this.due.delete(item);
  }

  get size(): number {
    return this.due.size;
  }

  /** Items not yet expired, oldest first. */
  items(): IterableIterator<T> {
    return this.due.keys();
  }

  private arm(ms: number): void {
    this.timer = setTimeout(this.fire, ms);
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    const now = Date.now();
    for (const [item, at] of this.due) {
      if (at > now) {
        // onExpired may have added items (and armed the timer) meanwhile.
        if (this.timer === undefined) this.arm(at - now);
        return;
      }
      this.due.delete(item);
      this.onExpired(item);
    }
  };
}
