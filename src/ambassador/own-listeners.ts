import { bindAccepts } from '../base/address.js';
import type { OwnListenerInfo } from './endpoint-policy.js';

/** A socket this process listens on. */
export interface OwnListener extends OwnListenerInfo {
  /** Bound address (0.0.0.0 and :: take every local address) and port. */
  host: string;
  port: number;
  /** A --connect listener whose endpoints come from mDNS: what it receives may be sent on to any announcer. */
  forwardsToMdns?: boolean;
}

/**
 * Every listener of this process (--connect listeners, advertisement relays, the admin
 * endpoint), to tell whether a connection to an address and port would come back to us.
 */
export class OwnListeners {
  private readonly listeners = new Set<OwnListener>();

  /** `isLocal`: whether an address is this host's (the host network's look). */
  constructor(private readonly isLocal: (address: string) => boolean) {}

  add(l: OwnListener): void {
    this.listeners.add(l);
  }

  delete(l: OwnListener): void {
    this.listeners.delete(l);
  }

  /** The listener that a connection to `address`:`port` (an IP address) reaches, if it is ours. */
  reachedAt(address: string, port: number): OwnListener | undefined {
    for (const l of this.listeners) {
      if (l.port === port && bindAccepts(l.host, address, this.isLocal)) return l;
    }
    return undefined;
  }

  all(): OwnListener[] {
    return [...this.listeners];
  }
}
