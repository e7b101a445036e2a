import { EventEmitter } from 'node:events';
import { networkInterfaces } from 'node:os';
import { isLoopback, isUnspecified, normalizeAddress } from '../base/address.js';

/** How long a look at the interfaces is reused (a batch of endpoints is checked against one look). */
const FRESH_MS = 250;

/**
 * The addresses of this host, as os.networkInterfaces() lists them now (every interface, not
 * only mDNS's: a listener on 0.0.0.0 takes connections to all of them), plus loopback.
 * watch() looks again every few seconds and emits 'changed' when the set differs, so what was
 * decided from it (an endpoint that is one of our listeners) is decided again.
 */
export class LocalAddresses extends EventEmitter {
  private current = new Set<string>();
  private lookedAt = -Infinity;
  private signature = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly read: () => string[] = readAddresses) {
    super();
  }

  /** Whether `address` is this host's (loopback, unspecified, or an interface address). */
  has(address: string): boolean {
    if (isLoopback(address) || isUnspecified(address)) return true;
    if (Date.now() - this.lookedAt > FRESH_MS) this.look();
    return this.current.has(normalizeAddress(address));
  }

  /** Looks every intervalMs (timer unref'd); 'changed' when the addresses differ. */
  watch(intervalMs = 2000): void {
    if (this.timer) return;
    this.look();
    this.timer = setInterval(() => {
      if (this.look()) this.emit('changed');
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Reads the interfaces; true when the set changed since the last look. */
  private look(): boolean {
    let list: string[];
    try {
      list = this.read().map(normalizeAddress).sort();
    } catch {
      return false;
    }
    this.lookedAt = Date.now();
    const signature = list.join(' ');
    if (signature === this.signature) return false;
    this.signature = signature;
    this.current = new Set(list);
    return true;
  }
}

function readAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((addrs) => (addrs ?? []).map((a) => a.address));
}
