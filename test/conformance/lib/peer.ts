// The scripted mDNS peer: another "host" on the lab segment that sends exactly the packets a
// scenario asks for. It lives in the test process itself, on the veth a `Lab.create({ attach:
// true })` plugs into the runner's private namespace (address lab.gateway, .254 of the segment).
// It only sends; what it and the host under test put on the wire is read from the Capture.
//
// Sockets are bound to the gateway address, not 0.0.0.0: several labs run side by side in the
// runner's namespace, and a socket bound to its own address is the one that gets unicast sent
// to it (QU and legacy replies). It does not need to receive multicast: the capture sees it.
import { createSocket, type Socket } from 'node:dgram';
import { encode, MDNS_GROUP, MDNS_PORT, type OutMsg } from './dns.js';

export interface Destination {
  address: string;
  port: number;
}

export class Peer {
  private constructor(
    readonly address: string,
    private readonly mdns: Socket,
    private readonly legacySocket: Socket,
    /** Source port of legacy (one-shot, RFC 6762 §6.7) queries. */
    readonly legacyPort: number,
  ) {}

  /** Opens the peer's sockets on `address` (an address of this process's namespace). */
  static async open(address: string): Promise<Peer> {
    const bind = (port: number) => new Promise<Socket>((resolve, reject) => {
      const s = createSocket({ type: 'udp4', reuseAddr: true });
      s.once('error', reject);
      s.bind({ address, port, exclusive: true }, () => {
        s.off('error', reject);
        s.on('error', () => { /* a send to a vanished lab: the capture tells */ });
        s.on('message', () => { /* drained; the capture is the peer's eyes */ });
        s.setMulticastInterface(address);
        s.setMulticastTTL(255);
        s.setTTL(255);
        s.setMulticastLoopback(false);
        resolve(s);
      });
    });
    const mdns = await bind(MDNS_PORT);
    const legacy = await bind(0);
    return new Peer(address, mdns, legacy, legacy.address().port);
  }

  /** Sends `m` from port 5353 to the mDNS group (or to `to`); returns the bytes sent. */
  send(m: OutMsg, to?: Destination): Promise<Buffer> {
    return this.sendRaw(encode(m), to);
  }

  /** Sends exact bytes from port 5353. */
  sendRaw(buf: Buffer, to?: Destination, socket = this.mdns): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      socket.send(buf, to?.port ?? MDNS_PORT, to?.address ?? MDNS_GROUP, (err) => (err ? reject(err) : resolve(buf)));
    });
  }

  /** Sends `m` as a legacy resolver would: from an ephemeral port (to the group by default). */
  sendLegacy(m: OutMsg, to?: Destination): Promise<Buffer> {
    return this.sendRaw(encode(m), to, this.legacySocket);
  }

  close(): void {
    for (const s of [this.mdns, this.legacySocket]) {
      try { s.close(); } catch { /* closed */ }
    }
  }
}
