import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../../base/clock.js';
import type { InterfaceSelection, LinkInfo } from './interfaces.js';

/** How one interface changed between two looks. */
export interface LinkDiff {
  kind: 'added' | 'removed' | 'changed';
  name: string;
  /** The interface as it is now ('added', 'changed') or was ('removed'). */
  link: LinkInfo;
  /** Addresses that appeared / went away (all of them for 'added' / 'removed'). */
  added: string[];
  removed: string[];
}

export interface NetworkMonitorOptions {
  /** Reads the interfaces that are up now (readLinks(), or a fake in tests). */
  read: () => LinkInfo[];
  select: InterfaceSelection;
  clock: Clock;
  /** How often to look again (ms); 0 = only once (a fixed set of interfaces). Default 1000. */
  intervalMs?: number;
  /** Keep IPv6 addresses (mDNS over ff02::fb); loopback never gets IPv6. Default true. */
  ipv6?: boolean;
}

const addressesOf = (l: LinkInfo) => [...l.ipv4.map((a) => a.address), ...l.ipv6.map((a) => a.address)];

/**
 * Watches the interfaces mDNS may use and reports what changed. Node has no netlink binding, so
 * it polls (os.networkInterfaces() and the link flags, about once a second: a few syscalls) and
 * diffs; a link that goes down disappears from the list, one that comes back is 'added' again.
 * An interface whose index changed (deleted and re-created) is reported removed, then added.
 *
 * Events: 'change' (diffs: LinkDiff[]), 'warning' (Error).
 */
export class NetworkMonitor extends EventEmitter {
  private current = new Map<string, LinkInfo>();
  private timer?: TimerHandle;
  private stopped = false;
  /** When the set of usable interfaces last became empty (clock ms); undefined while there is one. */
  unusableSince: number | undefined;

  constructor(private readonly opts: NetworkMonitorOptions) {
    super();
    this.unusableSince = opts.clock.now();
  }

  /** First look (diffs are emitted synchronously), then polling. */
  start(): void {
    this.poll();
    this.schedule();
  }

  /** The usable interfaces as of the last look. */
  links(): LinkInfo[] {
    return [...this.current.values()];
  }

  /** Every interface up now, selected or not (for warnings about --interface values). */
  readAll(): LinkInfo[] {
    try {
      return this.opts.read();
    } catch {
      return [];
    }
  }

  private schedule(): void {
    const every = this.opts.intervalMs ?? 1000;
    if (every <= 0 || this.stopped) return;
    this.timer = this.opts.clock.setTimeout(() => {
      this.poll();
      this.schedule();
    }, every);
  }

  /** The interfaces that would be used now, without taking them in (for --check). */
  peek(): LinkInfo[] {
    return [...this.usable(this.readAll()).values()];
  }

  private usable(seen: LinkInfo[]): Map<string, LinkInfo> {
    const next = new Map<string, LinkInfo>();
    for (const raw of seen) {
      if (!this.opts.select.selects(raw)) continue;
      const l = this.normalise(raw);
      if (l.ipv4.length === 0 && l.ipv6.length === 0) continue;
      next.set(l.name, l);
    }
    return next;
  }

  /** Looks now; emits and returns the diffs (empty when nothing changed). */
  poll(): LinkDiff[] {
    if (this.stopped) return [];
    let seen: LinkInfo[];
    try {
      seen = this.opts.read();
    } catch (err) {
      this.emit('warning', new Error(`cannot list network interfaces: ${(err as Error).message}`));
      return [];
    }
    const next = this.usable(seen);
    const diffs: LinkDiff[] = [];
    for (const [name, before] of this.current) {
      const after = next.get(name);
      if (!after || (after.index && before.index && after.index !== before.index)) {
        diffs.push({ kind: 'removed', name, link: before, added: [], removed: addressesOf(before) });
      }
    }
    for (const [name, after] of next) {
      const before = this.current.get(name);
      if (!before || (after.index && before.index && after.index !== before.index)) {
        diffs.push({ kind: 'added', name, link: after, added: addressesOf(after), removed: [] });
        continue;
      }
      const was = new Set(addressesOf(before));
      const now = new Set(addressesOf(after));
      const added = [...now].filter((a) => !was.has(a));
      const removed = [...was].filter((a) => !now.has(a));
      if (added.length || removed.length || before.mtu !== after.mtu) {
        diffs.push({ kind: 'changed', name, link: after, added, removed });
      }
    }
    this.current = next;
    if (next.size === 0) this.unusableSince ??= this.opts.clock.now();
    else this.unusableSince = undefined;
    if (diffs.length) this.emit('change', diffs);
    return diffs;
  }

  /** No IPv6 when disabled or on loopback. Addresses keep the kernel's order (primary first). */
  private normalise(l: LinkInfo): LinkInfo {
    return this.opts.ipv6 === false || l.loopback ? { ...l, ipv6: [] } : l;
  }

  /** Forgets an interface, so the next look reports it 'added' again (a retry after a failure). */
  forget(name: string): void {
    this.current.delete(name);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }
}
