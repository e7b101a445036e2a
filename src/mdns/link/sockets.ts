import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import type { Family, LinkInfo } from '../../base/host-network.js';

export const MDNS_GROUP = '224.0.0.251';
export const MDNS_GROUP6 = 'ff02::fb';
export const MDNS_PORT = 5353;

/** A unicast destination (QU and legacy unicast replies). */
export interface Destination {
  address: string;
  port: number;
}

/** Called for every datagram a link's sockets receive. */
export type Receive = (msg: Buffer, rinfo: RemoteInfo, family: Family) => void;

/**
 * The sockets of one link, as the link uses them: send a datagram on a family (to the group, or
 * unicast), follow address changes, close. Tests substitute their own.
 */
export interface LinkTransport {
  /** Families with an open socket now. */
  families(): Family[];
  /** False when there is no socket for `family` (nothing sent). */
  send(buf: Buffer, family: Family, dest: Destination | undefined, done: (err: Error | null) => void): boolean;
  /** The link's addresses changed: re-point what depends on them. */
  update(link: LinkInfo): Promise<void>;
  close(): Promise<void>;
}

export type LinkTransportFactory = (link: LinkInfo, receive: Receive, onError: (err: Error) => void) => Promise<LinkTransport>;

function bind(socket: Socket, port: number, address: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ port, address, exclusive: false }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

function closeQuietly(s: Socket | undefined): Promise<void> {
  if (!s) return Promise.resolve();
  return new Promise<void>((resolve) => {
    try {
      s.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

/**
 * UDP sockets of one interface, bound to 0.0.0.0:5353 and [::]:5353 with SO_REUSEADDR so they
 * share the port with avahi-daemon (a socket bound to an interface's address receives no
 * multicast on Linux). The interface is chosen with the group membership and the multicast
 * interface; IP TTL (multicast and unicast) is 255 as RFC 6762 §11 asks. Because Linux delivers
 * a group's packets to every socket joined to it on any interface, the caller decides which link
 * a packet belongs to from its source.
 *
 * The IPv4 socket is tied to the interface's first IPv4 address (the kernel uses it as the source
 * of our multicast): when that address goes, the socket is replaced. The IPv6 socket is tied to
 * the interface index and survives address changes.
 */
class UdpLinkTransport implements LinkTransport {
  private v4?: { socket: Socket; address: string };
  private v6?: Socket;
  private closed = false;

  constructor(
    private link: LinkInfo,
    private readonly port: number,
    private readonly receive: Receive,
    private readonly onError: (err: Error) => void,
  ) {}

  families(): Family[] {
    const out: Family[] = [];
    if (this.v4) out.push('IPv4');
    if (this.v6) out.push('IPv6');
    return out;
  }

  async open(): Promise<void> {
    let firstError: Error | undefined;
    try {
      await this.openV4();
    } catch (err) {
      firstError = err as Error;
    }
    try {
      await this.openV6();
    } catch (err) {
      // IPv6 is best effort: the link stays IPv4-only.
      if (this.v4) this.onError(err as Error);
      else firstError ??= err as Error;
    }
    if (!this.v4 && !this.v6) throw firstError ?? new Error(`no address to run mDNS on ${this.link.name}`);
  }

  private async openV4(): Promise<void> {
    const primary = this.link.ipv4[0]?.address;
    if (!primary) return;
    const socket = createSocket({ type: 'udp4', reuseAddr: true });
    try {
      await bind(socket, this.port, '0.0.0.0');
      socket.addMembership(MDNS_GROUP, primary);
      socket.setMulticastInterface(primary);
      socket.setMulticastTTL(255);
      socket.setTTL(255); // unicast replies too (RFC 6762 §11)
      socket.setMulticastLoopback(true); // peers on this host (avahi, other ambassadors) must hear us
    } catch (err) {
      await closeQuietly(socket);
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new Error(`cannot run mDNS on ${this.link.name} (${primary}): ${code}`);
    }
    socket.on('error', (err) => this.onError(err));
    socket.on('message', (msg, rinfo) => this.receive(msg, rinfo, 'IPv4'));
    this.v4 = { socket, address: primary };
  }

  private async openV6(): Promise<void> {
    if (this.link.ipv6.length === 0 || this.link.loopback) return;
    const socket = createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
    try {
      await bind(socket, this.port, '::');
      socket.addMembership(MDNS_GROUP6, `::%${this.link.name}`);
      socket.setMulticastInterface(`::%${this.link.name}`);
      socket.setMulticastTTL(255);
      socket.setTTL(255);
      socket.setMulticastLoopback(true);
    } catch (err) {
      await closeQuietly(socket);
      throw new Error(`IPv6 mDNS unavailable on ${this.link.name}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    socket.on('error', (err) => this.onError(err));
    socket.on('message', (msg, rinfo) => this.receive(msg, rinfo, 'IPv6'));
    this.v6 = socket;
  }

  async update(link: LinkInfo): Promise<void> {
    this.link = link;
    if (this.closed) return;
    const primary = link.ipv4[0]?.address;
    if (this.v4?.address !== primary) {
      const old = this.v4;
      this.v4 = undefined;
      await closeQuietly(old?.socket);
      try {
        await this.openV4();
      } catch (err) {
        this.onError(err as Error);
      }
    }
    const wantV6 = link.ipv6.length > 0 && !link.loopback;
    if (wantV6 && !this.v6) {
      try {
        await this.openV6();
      } catch (err) {
        this.onError(err as Error);
      }
    } else if (!wantV6 && this.v6) {
      const old = this.v6;
      this.v6 = undefined;
      await closeQuietly(old);
    }
  }

  send(buf: Buffer, family: Family, dest: Destination | undefined, done: (err: Error | null) => void): boolean {
    if (this.closed) return false;
    if (family === 'IPv4') {
      if (!this.v4) return false;
      this.v4.socket.send(buf, dest?.port ?? this.port, dest?.address ?? MDNS_GROUP, done);
      return true;
    }
    if (!this.v6) return false;
    this.v6.send(buf, dest?.port ?? this.port, dest?.address ?? `${MDNS_GROUP6}%${this.link.name}`, done);
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    const v4 = this.v4?.socket;
    const v6 = this.v6;
    this.v4 = undefined;
    this.v6 = undefined;
    await Promise.all([closeQuietly(v4), closeQuietly(v6)]);
  }
}

/** Opens real UDP sockets for a link (`port` 5353 unless a test says otherwise). */
export function udpTransport(port = MDNS_PORT): LinkTransportFactory {
  return async (link, receive, onError) => {
    const t = new UdpLinkTransport(link, port, receive, onError);
    await t.open();
    return t;
  };
}
