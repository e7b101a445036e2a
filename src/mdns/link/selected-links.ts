import { EventEmitter } from 'node:events';
import type { Clock } from '../../base/clock.js';
import { diffLinks, type HostNetwork, type LinkDiff, type LinkInfo } from '../../base/host-network.js';
import type { InterfaceSelection } from './interfaces.js';

export interface SelectedLinksOptions {
  /** The host's interfaces, looked at by one monitor for everyone. */
  network: HostNetwork;
  select: InterfaceSelection;
  clock: Clock;
  /** Keep IPv6 addresses (mDNS over ff02::fb); loopback never gets IPv6. Default true. */
  ipv6?: boolean;
}

/**
 * The interfaces mDNS may use, as the host network's looks show them: the selection
 * (--interface, --exclude-interface), interfaces with an address, no IPv6 where it is off or on
 * loopback. After every look of the host network it diffs its own view; a link that goes down
 * disappears from the list, one that comes back is 'added' again, and an interface whose index
 * changed (deleted and re-created) is removed, then added.
 *
 * Events: 'change' (diffs: LinkDiff[]).
 */
export class SelectedLinks extends EventEmitter<{ change: [diffs: LinkDiff[]] }> {
  private current = new Map<string, LinkInfo>();
  private started = false;
  /** When the set of usable interfaces last became empty (clock ms); undefined while there is one. */
  unusableSince: number | undefined;
  private readonly onLook = (links: readonly LinkInfo[]) => this.update(links);

  constructor(private readonly opts: SelectedLinksOptions) {
    super();
    this.unusableSince = opts.clock.now();
  }

  /** Takes the host network's current look (diffs are emitted synchronously), then follows it. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.update(this.opts.network.links());
    this.opts.network.on('look', this.onLook);
  }

  stop(): void {
    this.started = false;
    this.opts.network.off('look', this.onLook);
  }

  /** The usable interfaces as of the last look. */
  links(): LinkInfo[] {
    return [...this.current.values()];
  }

  /** The interfaces that would be used now, without taking them in (for --check). */
  peek(): LinkInfo[] {
    return [...this.usable(this.opts.network.links()).values()];
  }

  private usable(seen: readonly LinkInfo[]): Map<string, LinkInfo> {
    const next = new Map<string, LinkInfo>();
    for (const raw of seen) {
      if (!this.opts.select.selects(raw)) continue;
      const l = this.normalise(raw);
      if (l.ipv4.length === 0 && l.ipv6.length === 0) continue;
      next.set(l.name, l);
    }
    return next;
  }

  /** Takes a look in: emits and returns the diffs (empty when nothing changed). */
  private update(seen: readonly LinkInfo[]): LinkDiff[] {
    const next = this.usable(seen);
    const diffs = diffLinks(this.current, next);
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
}
