import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { systemClock, type Clock, type TimerHandle } from '../base/clock.js';

/**
 * A sidecar that shares another container's network namespace (compose `network_mode:
 * service:X`, `docker run --network container:X`) is *stranded* when X stops: the namespace
 * loses every interface but `lo`, and when X starts again Docker gives it a new namespace that
 * the sidecar is not in. Nothing inside the old namespace can ever reach the network again, and
 * restarting the sidecar is the only way back; but a restart attempted while X is still stopped
 * fails ("cannot join network of a non running container") and Docker does not try again.
 *
 * So the watch tells three states apart, once a second:
 *   waiting   never had a non-loopback address (the network is not up yet): nothing to do
 *   networked has one now
 *   stranded  had one and has none left (a container's owner stopped, a cable, Wi-Fi off)
 * and, while stranded, whether the namespace's owner is up again elsewhere: Docker rewrites the
 * /etc/hosts it shares with the sidecar when the owner starts, mapping the host name to the
 * owner's new address (and drops that line when it stops). Stranded + owner back for `settleMs`
 * emits 'owner-back': the moment an exit lets the restart policy re-attach the sidecar. A link
 * that flaps on a laptop only goes stranded → networked and never changes /etc/hosts.
 */
export type StrandedState = 'waiting' | 'networked' | 'stranded';

/** What the watch reads each tick (injectable for tests). */
export interface NamespaceProbe {
  /** Non-loopback addresses on this network namespace's interfaces. */
  addresses(): number;
  /** The non-loopback address /etc/hosts gives this host's name, if any. */
  hostsAddress(): string | undefined;
}

export interface StrandedWatchOptions {
  probe?: NamespaceProbe;
  clock?: Clock;
  /** Poll period (ms). Default 1000. */
  intervalMs?: number;
  /** How long the owner must look back (ms) before 'owner-back': /etc/hosts is rewritten while it stops, too. Default 1500. */
  settleMs?: number;
}

/** Parses hosts(5) text: the first non-loopback address listed for `name`. */
export function hostsAddressOf(text: string, name: string): string | undefined {
  const want = name.toLowerCase();
  for (const raw of text.split('\n')) {
    const [addr, ...names] = raw.replace(/#.*/, '').trim().split(/\s+/);
    if (!addr || !names.some((n) => n.toLowerCase() === want)) continue;
    if (/^127\./.test(addr) || addr === '::1' || addr.startsWith('fe00:') || addr.startsWith('ff0')) continue;
    return addr;
  }
  return undefined;
}

export const systemProbe: NamespaceProbe = {
  addresses: () => Object.values(networkInterfaces()).reduce((n, list) => n + (list ?? []).filter((a) => !a.internal).length, 0),
  hostsAddress: () => {
    try {
      return hostsAddressOf(readFileSync('/etc/hosts', 'utf8'), hostname());
    } catch {
      return undefined;
    }
  },
};

/** Emits 'state' on stranded and on networked again after that; 'owner-back' once (see above). */
export class StrandedWatch extends EventEmitter<{ state: [state: StrandedState]; 'owner-back': [address: string] }> {
  state: StrandedState = 'waiting';
  private readonly probe: NamespaceProbe;
  private readonly clock: Clock;
  private readonly intervalMs: number;
  private readonly settleMs: number;
  private timer?: TimerHandle;
  private ownerSince?: number;
  private fired = false;

  constructor(options: StrandedWatchOptions = {}) {
    super();
    this.probe = options.probe ?? systemProbe;
    this.clock = options.clock ?? systemClock;
    this.intervalMs = options.intervalMs ?? 1000;
    this.settleMs = options.settleMs ?? 1500;
  }

  start(): this {
    this.tick();
    return this;
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private tick(): void {
    const has = this.probe.addresses() > 0;
    const next: StrandedState = has ? 'networked' : this.state === 'waiting' ? 'waiting' : 'stranded';
    if (next !== this.state) {
      const first = this.state === 'waiting';
      this.state = next;
      this.ownerSince = undefined;
      // The first interface is no news; losing them all and getting one back are.
      if (!first) this.emit('state', next);
    }
    if (this.state === 'stranded' && !this.fired) {
      const owner = this.probe.hostsAddress();
      if (!owner) this.ownerSince = undefined;
      else if (this.ownerSince === undefined) this.ownerSince = this.clock.now();
      else if (this.clock.now() - this.ownerSince >= this.settleMs) {
        this.fired = true;
        this.emit('owner-back', owner);
      }
    }
    this.timer = this.clock.setTimeout(() => this.tick(), this.intervalMs);
  }
}
