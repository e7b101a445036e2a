import { EventEmitter } from 'node:events';
import type { RemoteInfo } from 'node:dgram';
import type { Clock } from '../../base/clock.js';
import type { Family, LinkInfo } from '../../base/host-network.js';
import { Link, type TransportStats } from './link.js';
import type { LinkDiff } from '../../base/host-network.js';
import type { SchedulerStats } from './scheduler.js';
import type { LinkTransportFactory } from './sockets.js';
import { decodePacket, MalformedPacketError, type MdnsPacket } from '../wire/codec.js';

/**
 * The links mDNS runs on, kept in step with the network monitor's diffs, and the intake of
 * every datagram their sockets receive: which link it belongs to (by source address), decoding
 * and validation, counting.
 *
 * Events: 'link-added' (link), 'link-changed' (link, diff), 'link-removed' (link), 'link-failed' (name, error),
 * 'packet' (packet, from, link, family), 'malformed' (error, rinfo), 'warning' (error),
 * 'handler-error' (error).
 */
export class Links extends EventEmitter {
  readonly stats: TransportStats & SchedulerStats = {
    packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0, malformed: 0, ignored: 0, sendErrors: 0,
    rateLimited: 0, duplicateAnswersSuppressed: 0,
  };
  private readonly byName = new Map<string, Link>();
  /** Source address → owning link (null: none), and our own addresses: rebuilt when links change. */
  private owners = new Map<string, Link | null>();
  private ours?: Set<string>;
  /** Diffs are applied one after the other (opening sockets is asynchronous). */
  private applying: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly clock: Clock,
    private readonly factory: LinkTransportFactory,
    readonly port: number,
  ) {
    super();
  }

  /** Every link, in the order they came up. */
  all(): Link[] {
    return [...this.byName.values()];
  }

  get(name: string): Link | undefined {
    return this.byName.get(name);
  }

  get size(): number {
    return this.byName.size;
  }

  /** Applies the monitor's diffs in order; resolves when this batch is done. */
  apply(diffs: readonly LinkDiff[]): Promise<void> {
    this.applying = this.applying.then(async () => {
      for (const d of diffs) {
        if (this.closed) return;
        try {
          await this.applyOne(d);
        } catch (err) {
          // No socket could be opened there: the engine retries later.
          this.emit('link-failed', d.name, err as Error);
        }
      }
    });
    return this.applying;
  }

  private changed(): void {
    this.owners = new Map();
    this.ours = undefined;
  }

  private async applyOne(d: LinkDiff): Promise<void> {
    this.changed();
    const existing = this.byName.get(d.name);
    if (d.kind === 'removed') {
      if (!existing) return;
      this.byName.delete(d.name);
      this.emit('link-removed', existing);
      await existing.close();
      return;
    }
    if (d.kind === 'changed' && existing) {
      await existing.update(d.link);
      this.changed();
      if (!this.closed) this.emit('link-changed', existing, d);
      return;
    }
    if (existing) return;
    let link: Link | undefined;
    const transport = await this.factory(d.link, (msg, rinfo, family) => {
      if (link) this.receive(link, msg, rinfo, family);
    }, (err) => {
      this.stats.sendErrors++;
      if (!/^(EADDRNOTAVAIL|ENETUNREACH|ENETDOWN|EHOSTUNREACH|EINVAL|ENODEV)/.test((err as NodeJS.ErrnoException).code ?? '')) this.emit('warning', err);
    });
    if (this.closed) {
      await transport.close();
      return;
    }
    link = new Link(d.link, transport, this.clock, this.stats);
    this.byName.set(d.name, link);
    this.changed();
    this.emit('link-added', link);
  }

  /** The link a source address belongs to: its zone, or the first link whose subnet holds it. */
  ownerOf(address: string, family: Family): Link | undefined {
    const key = `${family}|${address}`;
    const known = this.owners.get(key);
    if (known !== undefined) return known ?? undefined;
    const zone = address.split('%')[1];
    let owner: Link | undefined;
    if (zone !== undefined) owner = this.byName.get(zone);
    else for (const l of this.byName.values()) if (l.families().includes(family) && l.onLink(address)) { owner = l; break; }
    if (this.owners.size > 4096) this.owners.clear(); // bounded: sources are few on a real link
    this.owners.set(key, owner ?? null);
    return owner;
  }

  /** Whether `address` is one of ours on any link. */
  isOurAddress(address: string): boolean {
    this.ours ??= new Set(this.all().flatMap((l) => l.addresses()));
    return this.ours.has(address.split('%')[0]!.toLowerCase());
  }

  /**
   * A datagram arrived on `link`'s socket. Every socket sees every packet of the group, so only
   * the link the source belongs to takes it; a packet from no link of ours is ignored (counted once).
   */
  receive(link: Link, msg: Buffer, rinfo: RemoteInfo, family: Family): void {
    if (this.closed || link.closed) return;
    const owner = this.ownerOf(rinfo.address, family);
    if (owner !== link) {
      if (!owner && this.firstWith(family) === link) this.stats.ignored++;
      return;
    }
    this.stats.packetsIn++;
    this.stats.bytesIn += msg.length;
    let packet: MdnsPacket;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      this.stats.malformed++;
      if (err instanceof MalformedPacketError) this.emit('malformed', err, rinfo);
      return;
    }
    // RFC 6762 §6: responses from a source port other than 5353 are not mDNS responses.
    if (packet.type === 'response' && rinfo.port !== this.port) {
      this.stats.ignored++;
      return;
    }
    // Another process on this host (sharing the port) sends from our address too: its packets are
    // told from the echoes of ours by their bytes (queries too: a host-mate's question about our
    // host name is answered, our own is not).
    const echo = rinfo.port === this.port && this.isOurAddress(rinfo.address) && link.takeEcho(msg, family);
    try {
      this.emit('packet', packet, rinfo, link, family, echo);
    } catch (err) {
      // A handler bug triggered by one packet must not take the process down.
      this.stats.malformed++;
      this.emit('handler-error', err);
    }
  }

  private firstWith(family: Family): Link | undefined {
    for (const l of this.byName.values()) if (l.families().includes(family)) return l;
    return undefined;
  }

  /** The LinkInfo of every link (for status output). */
  infos(): LinkInfo[] {
    return this.all().map((l) => l.info);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.applying.catch(() => {});
    const links = this.all();
    this.byName.clear();
    await Promise.all(links.map((l) => l.close()));
  }
}
