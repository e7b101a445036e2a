import { EventEmitter } from 'node:events';
import { formatAddressPort, isLoopback, isUnspecified, normalizeAddress } from '../base/address.js';
import type { ServiceBrowser, ServiceInstance } from '../mdns/browse/browser.js';
import type { MdnsEngine } from '../mdns/engine.js';
import type { Registration } from '../mdns/publish/owned.js';

/**
 * DNS-SD service type under which ambassadors announce their --connect listeners that other
 * hosts can reach and that forward to endpoints found over mDNS: `_amb-connect._tcp.local`,
 * one instance per listener (SRV: its port; TXT service=, bind=).
 */
export const CONNECT_LISTENER_SERVICE = 'amb-connect';

interface PeerListener {
  instance: string;
  /** SRV target, e.g. `b.local`. */
  host: string;
  addresses: string[];
  port: number;
  bind: string;
  service: string;
}

/**
 * The --connect listeners of the ambassadors on the network, this one's included: a connection
 * sent to one of them is forwarded again to an endpoint found over mDNS, so an advertisement
 * that points at one, or an endpoint that is one, makes a loop between ambassadors as soon as
 * another advertisement points back. Ours are announced (only those reachable from other hosts:
 * a loopback-only listener can be reached from this host alone, where the relay-to TXT and our
 * own listeners tell the same); the others' are browsed. 'changed' when that knowledge changes.
 */
export class ListenerDirectory extends EventEmitter {
  private readonly peers = new Map<string, PeerListener>();
  private readonly registrations: Registration[] = [];
  private browser?: ServiceBrowser;

  constructor(
    private readonly engine: MdnsEngine,
    /** Whether an address is this host's. */
    private readonly isLocal: (address: string) => boolean,
    /** mDNS runs on a loopback interface: loopback addresses in announcements may be this host's. */
    private readonly mdnsOnLoopback: () => boolean,
  ) {
    super();
  }

  /** Announces one of our --connect listeners (call after engine.start()). */
  announce(service: string, bind: string, port: number): void {
    const host = this.engine.hostName.replace(/\.local$/, '');
    this.registrations.push(this.engine.publish({
      name: CONNECT_LISTENER_SERVICE,
      port,
      instance: `${service}:${port}@${host}`,
      txt: { service, bind },
    }));
  }

  start(): void {
    const b = this.engine.browse(CONNECT_LISTENER_SERVICE);
    this.browser = b;
    const refresh = (): void => {
      this.peers.clear();
      for (const i of b.instances()) if (!i.leaving) this.peers.set(i.fullName, this.toPeer(i));
      this.emit('changed');
    };
    b.on('up', refresh);
    b.on('update', refresh);
    b.on('down', refresh);
    if (b.instances().length) refresh();
  }

  /** Which ambassador's --connect listener a connection to `address`:`port` reaches, in words; undefined for none. */
  find(address: string, port: number): string | undefined {
    const a = normalizeAddress(address);
    for (const p of this.peers.values()) {
      if (p.port !== port || !this.reaches(p, a)) continue;
      return `the --connect ${p.service} listener of the ambassador on ${p.host} (${formatAddressPort(p.bind, p.port)})`;
    }
    return undefined;
  }

  /** The --connect listeners known (ours included), for /peers. */
  list(): Array<{ instance: string; host: string; addresses: string[]; port: number; bind: string; service: string }> {
    return [...this.peers.values()].map((p) => ({ ...p, addresses: [...p.addresses] }));
  }

  async stop(): Promise<void> {
    this.browser?.stop();
    this.browser = undefined;
    for (const r of this.registrations) this.engine.unpublish(r, 'shutdown');
    this.registrations.length = 0;
  }

  private toPeer(i: ServiceInstance): PeerListener {
    // A loopback address heard where mDNS does not run on loopback is no address of the announcer.
    const addresses = i.addresses.map(normalizeAddress).filter((a) => !isUnspecified(a) && (!isLoopback(a) || this.mdnsOnLoopback()));
    return { instance: i.instance, host: i.host.replace(/\.$/, ''), addresses, port: i.port, bind: normalizeAddress(i.txt.bind ?? '0.0.0.0'), service: i.txt.service ?? '?' };
  }

  /** Whether a connection to `a` reaches the peer's listener (bound to p.bind on its host). */
  private reaches(p: PeerListener, a: string): boolean {
    const sameHost = p.addresses.some((x) => this.isLocal(x));
    if (isUnspecified(p.bind)) {
      if (p.bind === '0.0.0.0' && a.includes(':')) return false;
      return p.addresses.includes(a) || (sameHost && this.isLocal(a));
    }
    if (isLoopback(p.bind)) return sameHost && a === p.bind;
    return a === p.bind;
  }
}
