import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { EventEmitter } from 'node:events';
import { type NetInterface, onLink } from './interfaces.js';
import { decodePacket, encodePacket, MalformedPacketError, type MdnsPacket, type OutgoingPacket } from './wire.js';

export const MDNS_GROUP = '224.0.0.251';
export const MDNS_GROUP6 = 'ff02::fb';
export type Family = 'IPv4' | 'IPv6';
export const MDNS_PORT = 5353;

export interface TransportStats {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Packets that failed to decode or validate. */
  malformed: number;
  /** Well-formed packets ignored: off-link source, or a response from a port other than 5353. */
  ignored: number;
  sendErrors: number;
}

export interface Destination {
  address: string;
  port: number;
}

/**
 * One UDP socket per interface, all bound to 0.0.0.0:5353 with SO_REUSEADDR so they share
 * the port with avahi-daemon. (A socket bound to an interface's address receives no multicast
 * on Linux.) Because Linux delivers a group's packets to every socket joined to it, each
 * socket keeps only packets whose source is on its own interface's subnet.
 *
 * Sockets are plain dgram rather than multicast-dns's: the engine needs the raw bytes for its
 * own validation and for QU bits, which multicast-dns's decode path loses.
 *
 * Events: 'packet' (packet: MdnsPacket, from: RemoteInfo, iface: NetInterface).
 */
export class MdnsTransport extends EventEmitter {
  readonly stats: TransportStats = {
    packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0, malformed: 0, ignored: 0, sendErrors: 0,
  };
  private readonly sockets = new Map<NetInterface, Socket>();
  private readonly sockets6 = new Map<NetInterface, Socket>();
  private closed = false;
  private pendingSends = 0;

  constructor(
    readonly interfaces: readonly NetInterface[],
    readonly port = MDNS_PORT,
    readonly group = MDNS_GROUP,
    /** Also run on ff02::fb on interfaces that have IPv6 addresses (best effort). */
    readonly ipv6 = true,
  ) {
    super();
  }

  /** Families this transport speaks on `iface`. */
  families(iface: NetInterface): Family[] {
    return this.sockets6.has(iface) ? ['IPv4', 'IPv6'] : ['IPv4'];
  }

  /** IPv6 is best effort: a failure leaves that interface IPv4-only, with a warning event. */
  private async startIpv6(iface: NetInterface): Promise<void> {
    const socket = createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ port: this.port, address: '::', exclusive: false }, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      socket.addMembership(MDNS_GROUP6, `::%${iface.name}`);
      socket.setMulticastInterface(`::%${iface.name}`);
      socket.setMulticastTTL(255);
      socket.setMulticastLoopback(true);
    } catch (err) {
      try {
        socket.close();
      } catch {
        /* already closed */
      }
      this.emit('warning', new Error(`IPv6 mDNS unavailable on ${iface.name}: ${(err as Error).message}`));
      return;
    }
    socket.on('error', () => {
      this.stats.sendErrors++;
    });
    socket.on('message', (msg, rinfo) => this.onMessage(iface, msg, rinfo));
    this.sockets6.set(iface, socket);
  }

  async start(): Promise<void> {
    for (const iface of this.interfaces) {
      const socket = createSocket({ type: 'udp4', reuseAddr: true });
      await new Promise<void>((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException) => {
          reject(new Error(`cannot bind UDP ${this.port} for mDNS on ${iface.name}: ${err.code ?? err.message}`));
        };
        socket.once('error', onError);
        socket.bind({ port: this.port, address: '0.0.0.0', exclusive: false }, () => {
          socket.off('error', onError);
          resolve();
        });
      });
      try {
        socket.addMembership(this.group, iface.address);
        socket.setMulticastInterface(iface.address);
        socket.setMulticastTTL(255); // RFC 6762 §11: IP TTL 255
        socket.setMulticastLoopback(true); // peers on this host (avahi, other ambassadors) must hear us
      } catch (err) {
        socket.close();
        throw new Error(`cannot join mDNS group on ${iface.name} (${iface.address}): ${(err as Error).message}`);
      }
      socket.on('error', () => {
        this.stats.sendErrors++;
      });
      socket.on('message', (msg, rinfo) => this.onMessage(iface, msg, rinfo));
      this.sockets.set(iface, socket);
      if (this.ipv6 && iface.ipv6?.length && !iface.address.startsWith('127.')) await this.startIpv6(iface);
    }
  }

  private onMessage(iface: NetInterface, msg: Buffer, rinfo: RemoteInfo): void {
    // Every socket sees every packet of the group; the one whose subnet matches takes it.
    if (!onLink(iface, rinfo.address)) {
      const anyOwner = this.interfaces.some((i) => onLink(i, rinfo.address));
      if (!anyOwner && iface === this.interfaces[0]) this.stats.ignored++;
      return;
    }
    if (this.interfaces.find((i) => onLink(i, rinfo.address)) !== iface) return;
    this.stats.packetsIn++;
    this.stats.bytesIn += msg.length;
    let packet: MdnsPacket;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      if (err instanceof MalformedPacketError) {
        this.stats.malformed++;
        this.emit('malformed', err, rinfo);
        return;
      }
      this.stats.malformed++;
      return;
    }
    // RFC 6762 §6: responses from a source port other than 5353 are not mDNS responses.
    if (packet.type === 'response' && rinfo.port !== this.port) {
      this.stats.ignored++;
      return;
    }
    try {
      this.emit('packet', packet, rinfo, iface);
    } catch (err) {
      // A handler bug triggered by one packet must not take the process down.
      this.stats.malformed++;
      this.emit('handler-error', err);
    }
  }

  /**
   * Sends unicast to `dest`, or to the multicast group on `iface`: on one family when given
   * (answers go back the way the query came), else on every family the interface speaks.
   */
  send(packet: OutgoingPacket, iface: NetInterface, dest?: Destination, family?: Family): void {
    if (this.closed) return;
    let buf: Buffer;
    try {
      buf = encodePacket(packet);
    } catch (err) {
      this.stats.sendErrors++;
      this.emit('handler-error', err);
      return;
    }
    if (dest) {
      const v6 = isIPv6(dest.address.split('%')[0]!);
      this.sendBuf(buf, v6 ? this.sockets6.get(iface) : this.sockets.get(iface), dest.address, dest.port);
      return;
    }
    if (family !== 'IPv6') this.sendBuf(buf, this.sockets.get(iface), this.group, this.port);
    if (family !== 'IPv4') this.sendBuf(buf, this.sockets6.get(iface), MDNS_GROUP6, this.port);
  }

  private sendBuf(buf: Buffer, socket: Socket | undefined, address: string, port: number): void {
    if (!socket) return;
    this.stats.packetsOut++;
    this.stats.bytesOut += buf.length;
    this.pendingSends++;
    socket.send(buf, port, address, (err) => {
      this.pendingSends--;
      if (err) this.stats.sendErrors++;
    });
  }

  /** Raw send, for tests and tools that need to put exact bytes on the wire. */
  sendRaw(buf: Buffer, iface: NetInterface, dest?: Destination): void {
    this.sockets.get(iface)?.send(buf, dest?.port ?? this.port, dest?.address ?? this.group);
  }

  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Let queued datagrams (goodbyes) leave before closing; bounded.
    for (let i = 0; i < 50 && this.pendingSends > 0; i++) await new Promise((r) => setTimeout(r, 2));
    await Promise.all(
      [...this.sockets.values(), ...this.sockets6.values()].map((s) => new Promise<void>((resolve) => {
        try {
          s.close(() => resolve());
        } catch {
          resolve();
        }
      })),
    );
    this.sockets.clear();
    this.sockets6.clear();
  }
}
