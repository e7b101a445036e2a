import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { systemClock, type Clock } from '../base/clock.js';
import type { HostNetwork, NetworkVerdict } from '../base/host-network.js';

/**
 * A sidecar that shares another container's network namespace (compose `network_mode:
 * service:X`, `docker run --network container:X`) is *stranded* when X stops: the namespace
 * loses every interface but `lo`, and when X starts again Docker gives it a new namespace that
 * the sidecar is not in. Nothing inside the old namespace can ever reach the network again, and
 * restarting the sidecar is the only way back; but a restart attempted while X is still stopped
 * fails ("cannot join network of a non running container") and Docker does not try again.
 *
 * The host network's verdict tells the three states apart at each of its looks (once a second):
 * waiting (never had a non-loopback address: the network is not up yet), networked, stranded
 * (had one and has none left: a container's owner stopped, a cable, Wi-Fi off). This watch adds,
 * while stranded, whether the namespace's owner is up again elsewhere: Docker rewrites the
 * /etc/hosts it shares with the sidecar when the owner starts, mapping the host name to the
 * owner's new address (and drops that line when it stops). Stranded + owner back for `settleMs`
 * emits 'owner-back': the moment an exit lets the restart policy re-attach the sidecar. A link
 * that flaps on a laptop only goes stranded → networked and never changes /etc/hosts.
 */
export type StrandedState = NetworkVerdict;

export interface StrandedWatchOptions {
  /** The non-loopback address /etc/hosts gives this host's name, if any (injectable for tests). */
  hostsAddress?: () => string | undefined;
  clock?: Clock;
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

function systemHostsAddress(): string | undefined {
  try {
    return hostsAddressOf(readFileSync('/etc/hosts', 'utf8'), hostname());
  } catch {
    return undefined;
  }
}

/**
 * Follows the host network's looks. Emits 'state' on stranded and on networked again after
 * that; 'owner-back' once (see above).
 */
export class StrandedWatch extends EventEmitter<{ state: [state: StrandedState]; 'owner-back': [address: string] }> {
  state: StrandedState = 'waiting';
  private readonly hostsAddress: () => string | undefined;
  private readonly clock: Clock;
  private readonly settleMs: number;
  private ownerSince?: number;
  private fired = false;
  private watching = false;
  private readonly onLook = () => this.tick();

  constructor(private readonly network: HostNetwork, options: StrandedWatchOptions = {}) {
    super();
    this.hostsAddress = options.hostsAddress ?? systemHostsAddress;
    this.clock = options.clock ?? systemClock;
    this.settleMs = options.settleMs ?? 1500;
  }

  /** Takes the network's verdict now, then at each of its looks. */
  start(): this {
    if (this.watching) return this;
    this.watching = true;
    this.network.links(); // a first look, if the network had none yet
    this.tick();
    this.network.on('look', this.onLook);
    return this;
  }

  stop(): void {
    this.watching = false;
    this.network.off('look', this.onLook);
  }

  private tick(): void {
    const next = this.network.verdict;
    if (next !== this.state) {
      const first = this.state === 'waiting';
      this.state = next;
      this.ownerSince = undefined;
      // The first interface is no news; losing them all and getting one back are.
      if (!first) this.emit('state', next);
    }
    if (this.state === 'stranded' && !this.fired) {
      const owner = this.hostsAddress();
      if (!owner) this.ownerSince = undefined;
      else if (this.ownerSince === undefined) this.ownerSince = this.clock.now();
      else if (this.clock.now() - this.ownerSince >= this.settleMs) {
        this.fired = true;
        this.emit('owner-back', owner);
      }
    }
  }
}
