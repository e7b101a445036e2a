import type { Clock } from '../../base/clock.js';
import type { Family, LinkInfo } from '../../base/host-network.js';
import { onLink } from './interfaces.js';
import { HEADER_BYTES, OutgoingScheduler, type SchedulerStats } from './scheduler.js';
import type { Destination, LinkTransport } from './sockets.js';
import { packetBytes } from '../wire/packets.js';
import type { OutgoingPacket } from '../wire/codec.js';

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

/** How long a datagram we multicast waits for its echo (it comes back within milliseconds). */
const OWN_ECHO_MS = 2000;

/**
 * One network interface mDNS runs on, and how packets leave it: its addresses, its sockets (the
 * transport), an outgoing scheduler per address family. Created when the interface appears,
 * updated when its addresses change, dropped when it goes. What is published here (names probed,
 * records announced) is the publishing side's (publish/owned.ts), not the link's.
 */
export class Link {
  /** When this link came up (clock ms). */
  readonly since: number;
  private readonly schedulers = new Map<Family, OutgoingScheduler>();
  private pendingSends = 0;
  closed = false;

  constructor(
    public info: LinkInfo,
    private readonly transport: LinkTransport,
    private readonly clock: Clock,
    private readonly stats: TransportStats & SchedulerStats,
  ) {
    this.since = clock.now();
  }

  get name(): string {
    return this.info.name;
  }

  get ipv4(): LinkInfo['ipv4'] {
    return this.info.ipv4;
  }

  get ipv6(): LinkInfo['ipv6'] {
    return this.info.ipv6;
  }

  /** Families we have a socket for here. */
  families(): Family[] {
    return this.closed ? [] : this.transport.families();
  }

  /** Every address of ours on this link (IPv6 without zone). */
  addresses(): string[] {
    return [...this.info.ipv4.map((a) => a.address), ...this.info.ipv6.map((a) => a.address)];
  }

  /** Whether a packet's source address is on this link (RFC 6762 §11). */
  onLink(address: string): boolean {
    return onLink(this.info, address);
  }

  /** The outgoing scheduler of one family. */
  out(family: Family): OutgoingScheduler {
    let s = this.schedulers.get(family);
    if (!s) {
      s = new OutgoingScheduler(this.clock, (p, dest, sent) => this.send(p, family, dest, sent), () => this.info.mtu - HEADER_BYTES[family], this.stats);
      this.schedulers.set(family, s);
    }
    return s;
  }

  /**
   * Our multicast datagrams of the last OWN_ECHO_MS, to tell their echoes (multicast loops back
   * to our own socket) from the packets of another responder on this host, which come from the
   * same address and port and may carry the same records.
   */
  private readonly ownRecent: Array<{ key: string; at: number }> = [];

  /** Whether `msg` is the echo of a datagram we multicast on `family` (each one has one echo). */
  takeEcho(msg: Buffer, family: Family): boolean {
    const key = family + msg.toString('latin1');
    const i = this.ownRecent.findIndex((e) => e.key === key);
    if (i < 0) return false;
    this.ownRecent.splice(i, 1);
    return true;
  }

  private noteMulticast(buf: Buffer, family: Family): void {
    const now = this.clock.now();
    while (this.ownRecent.length > 0 && (now - this.ownRecent[0]!.at > OWN_ECHO_MS || this.ownRecent.length >= 64)) this.ownRecent.shift();
    this.ownRecent.push({ key: family + buf.toString('latin1'), at: now });
  }

  /** Encodes and sends one packet: to the group on `family`, or unicast to `dest`; `sent` once it left. */
  send(packet: OutgoingPacket, family: Family, dest?: Destination, sent?: () => void): void {
    if (this.closed) return;
    let buf: Buffer;
    try {
      buf = packetBytes(packet);
    } catch {
      this.stats.sendErrors++;
      return;
    }
    this.pendingSends++;
    const ok = this.transport.send(buf, family, dest, (err) => {
      this.pendingSends--;
      if (err) this.stats.sendErrors++;
      else sent?.();
    });
    if (!ok) {
      this.pendingSends--;
      return;
    }
    this.stats.packetsOut++;
    this.stats.bytesOut += buf.length;
    if (dest === undefined) this.noteMulticast(buf, family);
  }

  async update(info: LinkInfo): Promise<void> {
    this.info = info;
    await this.transport.update(info);
  }

  /** Sends what is queued for goodbye now (before a stop). */
  flushGoodbyes(): void {
    for (const s of this.schedulers.values()) s.flush(true);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Let queued datagrams (goodbyes) leave first; bounded.
    for (let i = 0; i < 50 && this.pendingSends > 0; i++) await new Promise((r) => setTimeout(r, 2));
    this.closed = true;
    for (const s of this.schedulers.values()) s.close();
    this.schedulers.clear();
    await this.transport.close();
  }
}
