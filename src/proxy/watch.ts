import { stat } from 'node:fs/promises';

/**
 * Notices when files change, by polling their stat (inode, size, mtime) on an unref'd timer.
 * Polling the path, unlike fs.watch on an inode, also follows atomic replacements: `mv new old`,
 * and the symlink swap Kubernetes does for mounted secrets.
 */
export class FileWatch {
  private timer: NodeJS.Timeout | undefined;
  private last = new Map<string, string>();
  private busy = false;

  constructor(
    readonly paths: readonly string[],
    private readonly onChange: () => void,
    readonly intervalMs = 1000,
  ) {}

  /** Take the current state as the baseline and start polling. */
  async start(): Promise<void> {
    for (const p of this.paths) this.last.set(p, await signature(p));
    this.timer ??= setInterval(() => void this.poll(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Check now (also what the timer does). Resolves true if something changed. */
  async poll(): Promise<boolean> {
    if (this.busy) return false;
    this.busy = true;
    try {
      let changed = false;
      for (const p of this.paths) {
        const sig = await signature(p);
        if (sig !== this.last.get(p)) {
          this.last.set(p, sig);
          changed = true;
        }
      }
      if (changed && this.timer) this.onChange();
      return changed;
    } finally {
      this.busy = false;
    }
  }
}

async function signature(path: string): Promise<string> {
  try {
    const s = await stat(path);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (err) {
    return `error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}`;
  }
}
