// A fake network for the engine's unit tests: interfaces the test changes at will, and sockets
// that record what the engine sends (decoded) instead of sending it. Runs on the FakeClock.
// Never shipped (src/testing/ stays out of dist/).
import type { RemoteInfo } from 'node:dgram';
import { FakeClock } from '../base/clock.js';
import { MdnsEngine, type MdnsEngineOptions } from '../mdns/engine.js';
import type { Family, LinkInfo } from '../base/host-network.js';
import type { Destination, LinkTransportFactory } from '../mdns/link/sockets.js';
import { decodePacket, encodePacket, type MdnsPacket, type OutgoingPacket } from '../mdns/wire/codec.js';

export interface Sent {
  at: number;
  link: string;
  family: Family;
  dest?: Destination;
  bytes: number;
  p: MdnsPacket;
}

export function linkInfo(name: string, ipv4: string[], ipv6: string[] = [], extra: Partial<LinkInfo> = {}): LinkInfo {
  return {
    name, index: 0, loopback: false, multicast: true, mtu: 1500,
    ipv4: ipv4.map((address) => ({ address, netmask: '255.255.255.0' })),
    ipv6: ipv6.map((address) => ({ address, netmask: 'ffff:ffff:ffff:ffff::' })),
    ...extra,
  };
}

export class FakeNet {
  readonly clock = new FakeClock();
  /** The interfaces "up" now; change them and advance the clock past a poll. */
  readonly links = new Map<string, LinkInfo>();
  readonly sent: Sent[] = [];
  /** Links whose sockets are open now. */
  readonly open = new Set<string>();

  readonly readLinks = (): LinkInfo[] => [...this.links.values()];

  readonly transport: LinkTransportFactory = async (info, _receive) => {
    let current = info;
    const name = info.name;
    this.open.add(name);
    let closed = false;
    return {
      families: () => {
        const f: Family[] = [];
        if (current.ipv4.length) f.push('IPv4');
        if (current.ipv6.length && !current.loopback) f.push('IPv6');
        return f;
      },
      send: (buf, family, dest, done) => {
        if (closed) return false;
        this.sent.push({ at: this.clock.now(), link: name, family, dest, bytes: buf.length, p: decodePacket(buf) });
        done(null);
        return true;
      },
      update: async (l) => {
        current = l;
      },
      close: async () => {
        closed = true;
        this.open.delete(name);
      },
    };
  };

  set(name: string, ipv4: string[], ipv6: string[] = [], extra: Partial<LinkInfo> = {}): void {
    this.links.set(name, linkInfo(name, ipv4, ipv6, extra));
  }

  remove(name: string): void {
    this.links.delete(name);
  }

  engine(opts: Partial<MdnsEngineOptions> = {}): MdnsEngine {
    return new MdnsEngine({ hostname: 'db', clock: this.clock, readLinks: this.readLinks, transport: this.transport, ...opts });
  }

  /** Advances the fake clock in steps, letting the engine's promises (socket opening) run between. */
  async advance(ms: number, step = 50): Promise<void> {
    for (let t = 0; t < ms; t += step) {
      this.clock.advance(Math.min(step, ms - t));
      await settle();
    }
  }

  /** Packets sent since index `from` (default all), optionally of one link/type. */
  packets(filter: { link?: string; type?: 'query' | 'response'; from?: number; unicast?: boolean } = {}): Sent[] {
    return this.sent.slice(filter.from ?? 0).filter((s) =>
      (filter.link === undefined || s.link === filter.link) &&
      (filter.type === undefined || s.p.type === filter.type) &&
      (filter.unicast === undefined || !!s.dest === filter.unicast));
  }
}

/** Lets pending promise callbacks run (socket opening is asynchronous even when faked). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

export function from(address: string, port = 5353): RemoteInfo {
  return { address, port, family: address.includes(':') ? 'IPv6' : 'IPv4', size: 0 };
}

/** Feeds a packet to the engine as if it arrived on interface `link`. */
export function inject(engine: MdnsEngine, link: string, p: OutgoingPacket, src: RemoteInfo): void {
  engine.receive(link, encodePacket(p), src, src.family === 'IPv6' ? 'IPv6' : 'IPv4');
}
