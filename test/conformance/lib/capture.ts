// Everything one lab host sends and receives, as the wire saw it: tcpdump on the host's port of
// the lab bridge (in the lab's switch namespace, so nothing of the host under test is touched),
// streamed as pcap and decoded here. Each packet carries the kernel's capture timestamp (µs), the
// IP TTL / hop limit (Node has no IP_RECVTTL, hence the capture), addresses, ports, sizes and the
// decoded DNS message.
//
//   const cap = await Capture.start(lab, lab.host('dut'));
//   const probe = await cap.waitFor((p) => p.fromHost && isProbe(p), { what: 'first probe' });
//   ...
//   cap.stop();
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import type { Host, Lab } from '../../lib/netns.js';
import { decode, type Msg } from './dns.js';

export interface Seen {
  /** Capture time, epoch ms with µs resolution (comparable with Date.now()). */
  t: number;
  /** Sent by the host under capture (source MAC is its interface's). */
  fromHost: boolean;
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** IP TTL (IPv4) or hop limit (IPv6). */
  ttl: number;
  multicast: boolean;
  /** IPv4 "more fragments" or a non-zero fragment offset. */
  fragment: boolean;
  /** UDP payload (the DNS message) bytes. */
  size: number;
  /** Whole frame bytes on the wire (Ethernet header included). */
  frame: number;
  payload: Buffer;
  /** Undefined when the payload does not decode as DNS. */
  msg?: Msg;
  /** Index in the capture (arrival order). */
  seq: number;
}

export interface WaitOptions {
  timeoutMs?: number;
  /** Only packets with seq ≥ since (see mark()). */
  since?: number;
  what?: string;
}

function ipv4(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

function ipv6(b: Buffer, o: number): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(o + i).toString(16));
  // compress the longest zero run (good enough for display and equality within this suite)
  const s = g.join(':');
  const m = s.match(/(^|:)0(:0)+(:|$)/g);
  if (!m) return s;
  const longest = m.reduce((a, x) => (x.length > a.length ? x : a));
  return s.replace(longest, '::').replace(/:::+/, '::');
}

function isMulticast(family: 4 | 6, dst: string): boolean {
  if (family === 6) return dst.startsWith('ff');
  const first = Number(dst.split('.')[0]);
  return first >= 224 && first <= 239;
}

export class Capture {
  readonly packets: Seen[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private headerRead = false;
  private le = true;
  private usec = true;
  private readonly waiters = new Set<() => void>();
  private readonly subscribers = new Set<(p: Seen) => void>();
  private proc: ChildProcess;
  private stderr = '';
  private closed = false;

  private constructor(private readonly mac: string, netns: string, port: string) {
    this.proc = spawn('ip', ['netns', 'exec', netns, 'tcpdump', '-i', port, '-n', '-U', '--immediate-mode', '-s', '0', '-w', '-', 'udp'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d: Buffer) => this.feed(d));
    this.proc.stderr!.setEncoding('utf8').on('data', (d: string) => { this.stderr += d; this.notify(); });
    this.proc.on('close', () => { this.closed = true; this.notify(); });
  }

  /** Starts capturing `host`'s primary link; resolves once tcpdump listens. */
  static async start(lab: Lab, host: Host): Promise<Capture> {
    const link = execFileSync('ip', ['-n', host.netns, '-o', 'link', 'show', host.ifname], { encoding: 'utf8' });
    const mac = /link\/ether ([0-9a-f:]{17})/.exec(link)?.[1];
    if (!mac) throw new Error(`no MAC address on ${host.name}/${host.ifname}: ${link}`);
    const cap = new Capture(mac, lab.switchNetns, host.port);
    lab.onDestroy(() => cap.stop());
    const deadline = Date.now() + 10_000;
    while (!/listening on/.test(cap.stderr)) {
      if (cap.closed) throw new Error(`tcpdump exited: ${cap.stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`tcpdump did not start: ${cap.stderr.trim()}`);
      await new Promise<void>((r) => { cap.waiters.add(r); setTimeout(r, 50); });
    }
    return cap;
  }

  /** Current number of packets: pass as `since` to look only at what comes later. */
  mark(): number {
    return this.packets.length;
  }

  stop(): void {
    if (this.proc.pid && !this.closed) {
      try { process.kill(this.proc.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  private feed(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    if (!this.headerRead) {
      if (this.buf.length < 24) return;
      const magic = this.buf.readUInt32LE(0);
      if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) this.le = true;
      else if (this.buf.readUInt32BE(0) === 0xa1b2c3d4 || this.buf.readUInt32BE(0) === 0xa1b23c4d) this.le = false;
      else throw new Error(`not a pcap stream (magic ${magic.toString(16)})`);
      const m = this.le ? this.buf.readUInt32LE(0) : this.buf.readUInt32BE(0);
      this.usec = m === 0xa1b2c3d4;
      this.buf = this.buf.subarray(24);
      this.headerRead = true;
    }
    let added = false;
    while (this.buf.length >= 16) {
      const u32 = (o: number) => (this.le ? this.buf.readUInt32LE(o) : this.buf.readUInt32BE(o));
      const caplen = u32(8);
      if (this.buf.length < 16 + caplen) break;
      const t = u32(0) * 1000 + u32(4) / (this.usec ? 1000 : 1e6);
      const frame = Buffer.from(this.buf.subarray(16, 16 + caplen));
      this.buf = this.buf.subarray(16 + caplen);
      const seen = this.parse(t, frame);
      if (seen) {
        this.packets.push(seen);
        added = true;
        for (const fn of this.subscribers) {
          try { fn(seen); } catch { /* a subscriber bug must not stop the capture */ }
        }
      }
    }
    if (added) this.notify();
  }

  private parse(t: number, f: Buffer): Seen | undefined {
    if (f.length < 14) return undefined;
    const srcMac = [...f.subarray(6, 12)].map((x) => x.toString(16).padStart(2, '0')).join(':');
    const etherType = f.readUInt16BE(12);
    let o = 14;
    let family: 4 | 6;
    let src: string, dst: string, ttl: number, proto: number, fragment = false;
    if (etherType === 0x0800) {
      family = 4;
      const ihl = (f[o]! & 0xf) * 4;
      ttl = f[o + 8]!;
      proto = f[o + 9]!;
      const frag = f.readUInt16BE(o + 6);
      fragment = (frag & 0x2000) !== 0 || (frag & 0x1fff) !== 0;
      src = ipv4(f, o + 12);
      dst = ipv4(f, o + 16);
      o += ihl;
    } else if (etherType === 0x86dd) {
      family = 6;
      proto = f[o + 6]!;
      ttl = f[o + 7]!;
      src = ipv6(f, o + 8);
      dst = ipv6(f, o + 24);
      o += 40;
    } else return undefined;
    if (proto !== 17) return undefined;
    if (family === 4 && (f.readUInt16BE(14 + 6) & 0x1fff) !== 0) {
      // a later fragment has no UDP header: keep it visible (sizes count), nothing to decode
      return {
        t, fromHost: srcMac === this.mac, family, src, dst, sport: 0, dport: 0, ttl, multicast: isMulticast(family, dst),
        fragment, size: f.length - o, frame: f.length, payload: Buffer.alloc(0), seq: this.packets.length,
      };
    }
    const sport = f.readUInt16BE(o);
    const dport = f.readUInt16BE(o + 2);
    const payload = f.subarray(o + 8);
    let msg: Msg | undefined;
    try { msg = decode(payload); } catch { msg = undefined; }
    const multicast = isMulticast(family, dst);
    return {
      t, fromHost: srcMac === this.mac, family, src, dst, sport, dport, ttl, multicast, fragment,
      size: payload.length, frame: f.length, payload, msg, seq: this.packets.length,
    };
  }

  /** Calls `fn` with every packet from now on (as it arrives); returns the unsubscribe. */
  subscribe(fn: (p: Seen) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** Packets matching `pred` (from `since`). */
  filter(pred: (p: Seen) => boolean, since = 0): Seen[] {
    return this.packets.slice(since).filter(pred);
  }

  /** Resolves with the first packet (from `since`) matching `pred`; rejects after timeoutMs. */
  waitFor(pred: (p: Seen) => boolean, opts: WaitOptions = {}): Promise<Seen> {
    let scanned = opts.since ?? 0;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const check = () => {
        for (; scanned < this.packets.length; scanned++) {
          const p = this.packets[scanned]!;
          if (pred(p)) {
            finish();
            resolve(p);
            return;
          }
        }
        if (this.closed) {
          finish();
          reject(new Error(`capture ended while waiting for ${opts.what ?? 'a packet'}: ${this.stderr.trim()}`));
        }
      };
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no ${opts.what ?? 'matching packet'} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Like waitFor, but resolves undefined on timeout (for "nothing should come" checks). */
  async maybe(pred: (p: Seen) => boolean, opts: WaitOptions = {}): Promise<Seen | undefined> {
    try {
      return await this.waitFor(pred, opts);
    } catch (e) {
      if (/within \d+ ms/.test((e as Error).message)) return undefined;
      throw e;
    }
  }

  /**
   * The captured copy of a datagram the peer sent: same bytes, not from the host, captured at or
   * after `since` (take `mark()` before sending: the peer may send the same bytes twice).
   */
  sent(payload: Buffer, since: number): Promise<Seen> {
    return this.waitFor((p) => !p.fromHost && p.payload.equals(payload), { what: 'our own packet on the wire', timeoutMs: 5000, since });
  }
}
