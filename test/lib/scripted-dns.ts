// A small authoritative DNS server for the cases a real one (dnsmasq) cannot be made to show: a
// server that answers only over TCP, one that truncates every UDP answer, one whose TCP port is
// closed, one that never answers over UDP, one that rejects EDNS0. Built on dns-packet, the wire
// library of the product; records come from a plain zone object that tests change at will. Every
// query received is logged (transport, name, type, EDNS0 payload size) for assertions.
//
//   const srv = await ScriptedDns.start({ host: '127.0.0.1', zone, udp: 'truncate' });
//   … srv.port, srv.queries, srv.setZone(z), await srv.close()
//
// In a lab host: test/fixtures/scripted-dns-server.ts (same options as JSON, zone reloaded on SIGHUP).
import { createSocket, type Socket } from 'node:dgram';
import { isIP, createServer, type Server, type Socket as Socket_ } from 'node:net';
import { createRequire } from 'node:module';
import type * as DnsPacket from 'dns-packet';

const dns = createRequire(import.meta.url)('dns-packet') as typeof DnsPacket;

export interface ZoneSrv {
  target: string;
  port: number;
  priority?: number;
  weight?: number;
}

/** Records by lowercase name (no trailing dot). */
export interface Zone {
  srv?: Record<string, ZoneSrv[]>;
  a?: Record<string, string[]>;
  aaaa?: Record<string, string[]>;
  /** TTL of every record (s); default 1. */
  ttl?: number;
  /** Put the targets' A/AAAA records in the additional section of SRV answers (default false). */
  additional?: boolean;
  /** Names answered with this error code (no records), as a server that refuses a zone or fails. */
  error?: Record<string, 'SERVFAIL' | 'REFUSED'>;
}

export interface ScriptedDnsOptions {
  host: string;
  /** 0 = any free port (the same one for UDP and TCP). */
  port?: number;
  zone: Zone;
  /**
   * answer: the whole answer (TC if it exceeds 512 bytes, or the client's EDNS0 size);
   * truncate: always TC with at most one record; silent: receive and never answer;
   * closed: no UDP socket at all (the kernel refuses: ICMP port unreachable).
   */
  udp?: 'answer' | 'truncate' | 'silent' | 'closed';
  /** answer, or closed (connections refused). */
  tcp?: 'answer' | 'closed';
  /** formerr: a query with an OPT record gets FORMERR without OPT, as from a pre-EDNS server. */
  edns?: 'ok' | 'formerr';
}

export interface QueryLog {
  transport: 'udp' | 'tcp';
  name: string;
  type: string;
  /** EDNS0 UDP payload size the client advertised, or null without OPT. */
  edns: number | null;
  at: number;
}

const norm = (n: string) => n.toLowerCase().replace(/\.+$/, '');

export class ScriptedDns {
  readonly queries: QueryLog[] = [];
  private zone: Zone;
  private udpSock?: Socket;
  private tcpServer?: Server;
  private readonly conns = new Set<Socket_>();
  port = 0;

  private constructor(private readonly opts: ScriptedDnsOptions) {
    this.zone = opts.zone;
  }

  static async start(opts: ScriptedDnsOptions): Promise<ScriptedDns> {
    const s = new ScriptedDns(opts);
    await s.listen();
    return s;
  }

  setZone(zone: Zone): void {
    this.zone = zone;
  }

  private async listen(): Promise<void> {
    const { host } = this.opts;
    let port = this.opts.port ?? 0;
    if (port === 0) {
      // one free port for both transports: take it from a TCP listener, then bind UDP to it
      const probe = createServer();
      await new Promise<void>((r) => probe.listen(0, host, () => r()));
      port = (probe.address() as { port: number }).port;
      await new Promise<void>((r) => probe.close(() => r()));
    }
    this.port = port;
    if ((this.opts.udp ?? 'answer') !== 'closed') {
      const sock = createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
      sock.on('message', (msg, rinfo) => this.onUdp(sock, msg, rinfo.address, rinfo.port));
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind(port, host, () => resolve());
      });
      this.udpSock = sock;
    }
    if ((this.opts.tcp ?? 'answer') !== 'closed') {
      const server = createServer((c) => {
        this.conns.add(c);
        c.on('close', () => this.conns.delete(c));
        let buf: Buffer = Buffer.alloc(0);
        c.on('error', () => {});
        c.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
            const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
            buf = buf.subarray(2 + msg.length);
            const reply = this.reply(msg, 'tcp', 65535);
            if (!reply) continue;
            const len = Buffer.alloc(2);
            len.writeUInt16BE(reply.length);
            c.write(Buffer.concat([len, reply]));
          }
        });
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      this.tcpServer = server;
    }
  }

  private onUdp(sock: Socket, msg: Buffer, address: string, port: number): void {
    if (this.opts.udp === 'silent') {
      this.log(msg, 'udp');
      return;
    }
    const reply = this.reply(msg, 'udp', 512);
    if (reply) sock.send(reply, port, address);
  }

  private log(msg: Buffer, transport: 'udp' | 'tcp'): DnsPacket.Packet | undefined {
    let q: DnsPacket.Packet;
    try {
      q = dns.decode(msg);
    } catch {
      return undefined;
    }
    const opt = (q.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
    const question = q.questions?.[0];
    this.queries.push({ transport, name: norm(question?.name ?? ''), type: question?.type ?? '?', edns: opt?.udpPayloadSize ?? null, at: Date.now() });
    return q;
  }

  /** The encoded answer to `msg`, or undefined for a query to ignore. */
  private reply(msg: Buffer, transport: 'udp' | 'tcp', plainLimit: number): Buffer | undefined {
    const q = this.log(msg, transport);
    const question = q?.questions?.[0];
    if (!q || !question) return undefined;
    const opt = (q.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
    const base = { id: q.id, type: 'response' as const, questions: q.questions };
    if (opt && this.opts.edns === 'formerr') {
      return dns.encode({ ...base, flags: dns.RECURSION_DESIRED | 1 /* FORMERR */, answers: [] });
    }
    const z = this.zone;
    const ttl = z.ttl ?? 1;
    const name = norm(question.name);
    const error = z.error?.[name];
    if (error) return dns.encode({ ...base, flags: dns.RECURSION_DESIRED | (error === 'SERVFAIL' ? 2 : 5), answers: [] });
    const answers: DnsPacket.Answer[] = [];
    const additionals: DnsPacket.Answer[] = [];
    const addresses = (n: string, into: DnsPacket.Answer[]) => {
      for (const a of z.a?.[n] ?? []) into.push({ name: n, type: 'A', ttl, data: a });
      for (const a of z.aaaa?.[n] ?? []) into.push({ name: n, type: 'AAAA', ttl, data: a });
    };
    if (question.type === 'SRV') {
      for (const r of z.srv?.[name] ?? []) {
        answers.push({ name, type: 'SRV', ttl, data: { target: r.target, port: r.port, priority: r.priority ?? 0, weight: r.weight ?? 0 } });
        if (z.additional) addresses(norm(r.target), additionals);
      }
    } else if (question.type === 'A') {
      for (const a of z.a?.[name] ?? []) answers.push({ name, type: 'A', ttl, data: a });
    } else if (question.type === 'AAAA') {
      for (const a of z.aaaa?.[name] ?? []) answers.push({ name, type: 'AAAA', ttl, data: a });
    }
    const exists = [z.srv, z.a, z.aaaa].some((m) => m?.[name] !== undefined);
    const rcode = exists ? 0 : 3; // NXDOMAIN for names the zone does not hold
    const flags = dns.AUTHORITATIVE_ANSWER | dns.RECURSION_DESIRED | rcode;
    const echoOpt: DnsPacket.Answer[] = opt ? [{ name: '.', type: 'OPT', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as DnsPacket.Answer] : [];
    const full = dns.encode({ ...base, flags, answers, additionals: [...additionals, ...echoOpt] });
    if (transport === 'tcp') return full;
    const limit = opt?.udpPayloadSize ? Math.max(512, opt.udpPayloadSize) : plainLimit;
    if (this.opts.udp === 'truncate' || full.length > limit) {
      // as real servers do: TC set, whole records only (here at most one), no additional section
      return dns.encode({ ...base, flags: flags | dns.TRUNCATED_RESPONSE, answers: this.opts.udp === 'truncate' ? answers.slice(0, 1) : fit(base, flags, answers, limit), additionals: echoOpt });
    }
    return full;
  }

  /** Stops answering (idempotent): the ports are closed. */
  async close(): Promise<void> {
    const [udp, tcp] = [this.udpSock, this.tcpServer];
    this.udpSock = undefined;
    this.tcpServer = undefined;
    if (udp) await new Promise<void>((r) => udp.close(() => r()));
    if (tcp) {
      for (const c of this.conns) c.destroy();
      await new Promise<void>((r) => tcp.close(() => r()));
    }
  }
}

/** As many leading answers as fit in `limit` bytes with the header and question. */
function fit(base: { id?: number; type: 'response'; questions?: DnsPacket.Question[] }, flags: number, answers: DnsPacket.Answer[], limit: number): DnsPacket.Answer[] {
  let n = answers.length;
  while (n > 0 && dns.encodingLength({ ...base, flags, answers: answers.slice(0, n), additionals: [] }) > limit - 11) n--;
  return answers.slice(0, n);
}
