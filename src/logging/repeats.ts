/**
 * Folds repeated log lines: a line for a key is written at most once per `intervalMs`, and the
 * next one written says how many were folded into it. No timer: a repeat costs a Map lookup.
 */
export class RepeatFilter {
  private readonly logged = new Map<string, { at: number; repeated: number }>();

  constructor(private readonly intervalMs = 10_000) {}

  /** Calls `log(repeated)` now, or counts a repeat if `key` was logged less than intervalMs ago. */
  log(key: string, log: (repeated: number) => void): void {
    const now = Date.now();
    const prev = this.logged.get(key);
    if (prev && now - prev.at < this.intervalMs) {
      prev.repeated++;
      return;
    }
    log(prev?.repeated ?? 0);
    this.logged.set(key, { at: now, repeated: 0 });
  }
}

/** What identifies a bug in logs: the stack of an Error (its message first), else its text. */
export function stackOf(err: unknown): string {
  return err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
}
