import { createSocket } from 'node:dgram';
import { isIP, connect as tcpConnect } from 'node:net';
import type * as DnsPacket from 'dns-packet';
import { formatAddressPort } from '../base/address.js';
import { requireCommonJs } from '../base/commonjs.js';

const dns = requireCommonJs('dns-packet') as typeof DnsPacket;

export interface DnsServer {
  host: string;
  port: number;
}

export type RecordType = 'SRV' | 'A' | 'AAAA';

/**
 * EDNS0 UDP payload size we advertise (RFC 6891): the DNS Flag Day 2020 value, large enough for
 * a few dozen SRV records and small enough never to be fragmented; larger answers come over TCP.
 */
export const EDNS_UDP_SIZE = 1232;

/** A query that got no usable answer; `rcode` when the server answered with an error code. */
export class DnsQueryError extends Error {
  constructor(message: string, readonly rcode?: string) {
    super(message);
    this.name = 'DnsQueryError';
  }
}

/**
 * The answer did not fit in UDP (TC bit) and could not be fetched over TCP. `partial` holds what
 * the truncated UDP answer carried: a subset of the records, never to be taken for the whole.
 */
export class TruncatedAnswerError extends DnsQueryError {
  constructor(message: string, readonly partial: DnsPacket.Packet) {
    super(message);
    this.name = 'TruncatedAnswerError';
  }
}

export interface DnsResponse {
  packet: DnsPacket.Packet;
  /** NOERROR or NXDOMAIN (every other code is a DnsQueryError). */
  rcode: string;
  server: DnsServer;
  transport: 'udp' | 'tcp';
}

export interface QueryOptions {
  /** Per attempt and transport (ms). */
  timeoutMs: number;
  /** Rounds over the server list. */
  attempts: number;
  /** Every query over TCP (resolv.conf `options use-vc`). */
  tcpOnly?: boolean;
}

export function formatServer(s: DnsServer): string {
  return formatAddressPort(s.host, s.port);
}

/** What we learned about one server: it answers only over TCP; it rejects EDNS0. */
interface ServerState {
  tcp: boolean;
  edns: boolean;
}

interface UdpResult {
  /** Undefined when a truncated answer could not even be decoded. */
  packet?: DnsPacket.Packet;
  truncated: boolean;
}

const RESPONSE_BIT = 0x8000;
const TRUNCATED_BIT = 0x0200;
const EMPTY_PACKET: DnsPacket.Packet = { type: 'response', questions: [], answers: [], additionals: [], authorities: [] };

function randomId(): number {
  // Unpredictable query IDs (RFC 5452); Web Crypto's global, so node:crypto is not loaded for this.
  return crypto.getRandomValues(new Uint16Array(1))[0]!;
}

function encodeQuery(id: number, name: string, type: RecordType, edns: boolean): Buffer {
  return dns.encode({
    id,
    type: 'query',
    flags: dns.RECURSION_DESIRED,
    questions: [{ name, type, class: 'IN' }],
    additionals: edns ? [{ name: '.', type: 'OPT', udpPayloadSize: EDNS_UDP_SIZE, flags: 0, options: [] } as unknown as DnsPacket.Answer] : [],
  });
}

/** The answer belongs to our question (RFC 5452: ID, and the question echoed back). */
function answersQuestion(p: DnsPacket.Packet, id: number, name: string, type: RecordType): boolean {
  if (p.id !== id || p.type !== 'response') return false;
  const q = p.questions?.[0];
  // a FORMERR/NOTIMP may come without the question (e.g. an old server refusing EDNS0)
  if (!q) return (p as { rcode?: string }).rcode !== undefined && (p as { rcode?: string }).rcode !== 'NOERROR';
  return q.name.toLowerCase() === name.toLowerCase() && q.type === type;
}

function answerCount(p: DnsPacket.Packet): number {
  return p.answers?.length ?? 0;
}

function rcodeOf(p: DnsPacket.Packet): string {
  return (p as { rcode?: string }).rcode ?? 'NOERROR';
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}` : e.message ?? String(err);
}

/** One UDP exchange on a connected socket (only the server's packets arrive; an ICMP refusal is an error). */
function overUdp(server: DnsServer, query: Buffer, id: number, name: string, type: RecordType, timeoutMs: number): Promise<UdpResult> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(server.host) === 6 ? 'udp6' : 'udp4');
    const done = (err: Error | undefined, r?: UdpResult) => {
      clearTimeout(timer);
      sock.removeAllListeners('message');
      sock.on('error', () => {});
      sock.close();
      if (err) reject(err);
      else resolve(r!);
    };
    const timer = setTimeout(() => done(new DnsQueryError(`no answer from ${formatServer(server)} over UDP in ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(new DnsQueryError(`${formatServer(server)} over UDP: ${describe(err)}`)));
    sock.on('message', (msg: Buffer) => {
      if (msg.length < 12 || msg.readUInt16BE(0) !== id || !(msg.readUInt16BE(2) & RESPONSE_BIT)) return; // not ours: keep waiting
      const truncated = (msg.readUInt16BE(2) & TRUNCATED_BIT) !== 0;
      let p: DnsPacket.Packet;
      try {
        p = dns.decode(msg);
      } catch {
        // a truncated answer may end mid-record; anything else undecodable is dropped
        if (truncated) done(undefined, { truncated });
        return;
      }
      if (!answersQuestion(p, id, name, type)) return;
      done(undefined, { packet: p, truncated });
    });
    sock.connect(server.port, server.host, () => sock.send(query));
  });
}

/** One TCP exchange with the two-byte length framing of RFC 1035 §4.2.2. */
function overTcp(server: DnsServer, query: Buffer, id: number, name: string, type: RecordType, timeoutMs: number): Promise<DnsPacket.Packet> {
  return new Promise((resolve, reject) => {
    const sock = tcpConnect({ host: server.host, port: server.port });
    let buf: Buffer = Buffer.alloc(0);
    const done = (err: Error | undefined, p?: DnsPacket.Packet) => {
      clearTimeout(timer);
      sock.removeAllListeners('data');
      sock.removeAllListeners('close');
      sock.on('error', () => {});
      sock.destroy();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(() => done(new DnsQueryError(`no answer from ${formatServer(server)} over TCP in ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(new DnsQueryError(`${formatServer(server)} over TCP: ${describe(err)}`)));
    sock.on('close', () => done(new DnsQueryError(`${formatServer(server)} closed the TCP connection without an answer`)));
    sock.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      sock.write(Buffer.concat([len, query]));
    });
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      let p: DnsPacket.Packet;
      try {
        p = dns.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      } catch {
        return done(new DnsQueryError(`malformed answer from ${formatServer(server)} over TCP`));
      }
      if (!answersQuestion(p, id, name, type)) return done(new DnsQueryError(`${formatServer(server)} over TCP answered another question`));
      done(undefined, p);
    });
  });
}

/**
 * A stub resolver client for the questions the SRV source asks: UDP with EDNS0 first, TCP when
 * the answer is truncated, TCP when a server does not answer over UDP at all (and from then on
 * for that server), several servers in order with the last one that answered tried first.
 * A truncated answer is never returned as if it were complete: it is a TruncatedAnswerError.
 */
export class DnsClient {
  private readonly state = new Map<string, ServerState>();
  private preferred = '';

  private stateOf(s: DnsServer): ServerState {
    const k = formatServer(s);
    let st = this.state.get(k);
    if (!st) {
      st = { tcp: false, edns: true };
      this.state.set(k, st);
    }
    return st;
  }

  async query(name: string, type: RecordType, servers: readonly DnsServer[], opts: QueryOptions): Promise<DnsResponse> {
    if (servers.length === 0) throw new DnsQueryError('no DNS server configured');
    const first = Math.max(0, servers.findIndex((s) => formatServer(s) === this.preferred));
    let lastErr: Error | undefined;
    let truncated: TruncatedAnswerError | undefined;
    for (let attempt = 0; attempt < Math.max(1, opts.attempts); attempt++) {
      for (let i = 0; i < servers.length; i++) {
        const server = servers[(first + i) % servers.length]!;
        try {
          const r = await this.ask(server, name, type, opts);
          this.preferred = formatServer(server);
          return r;
        } catch (err) {
          if (err instanceof TruncatedAnswerError && (!truncated || answerCount(err.partial) > answerCount(truncated.partial))) truncated = err;
          lastErr = err as Error;
        }
      }
    }
    throw truncated ?? lastErr!;
  }

  private async ask(server: DnsServer, name: string, type: RecordType, opts: QueryOptions): Promise<DnsResponse> {
    const st = this.stateOf(server);
    let r = await this.exchange(server, st, name, type, opts);
    const rcode = rcodeOf(r.packet);
    if (st.edns && (rcode === 'FORMERR' || rcode === 'NOTIMP') && !r.packet.additionals?.some((a) => a.type === 'OPT')) {
      // RFC 6891 §7: a server that does not know EDNS0 gets the question again without it
      st.edns = false;
      r = await this.exchange(server, st, name, type, opts);
    }
    const code = rcodeOf(r.packet);
    if (code !== 'NOERROR' && code !== 'NXDOMAIN') throw new DnsQueryError(`${name} ${type}: ${code} from ${formatServer(server)}`, code);
    return { ...r, rcode: code, server };
  }

  private async exchange(server: DnsServer, st: ServerState, name: string, type: RecordType, opts: QueryOptions): Promise<{ packet: DnsPacket.Packet; transport: 'udp' | 'tcp' }> {
    const id = randomId();
    const query = encodeQuery(id, name, type, st.edns);
    const viaTcp = async (): Promise<DnsPacket.Packet> => {
      const p = await overTcp(server, query, id, name, type, opts.timeoutMs);
      if (p.flags !== undefined && p.flags & TRUNCATED_BIT) {
        throw new TruncatedAnswerError(`${name} ${type}: answer from ${formatServer(server)} truncated even over TCP`, p);
      }
      return p;
    };
    if (opts.tcpOnly || st.tcp) {
      try {
        return { packet: await viaTcp(), transport: 'tcp' };
      } catch (err) {
        st.tcp = false; // try UDP again next time: the server may have changed
        throw err;
      }
    }
    let udp: UdpResult;
    try {
      udp = await overUdp(server, query, id, name, type, opts.timeoutMs);
    } catch (udpErr) {
      // nothing over UDP: a server (or a path) may carry DNS over TCP only
      try {
        const p = await viaTcp();
        st.tcp = true;
        return { packet: p, transport: 'tcp' };
      } catch (tcpErr) {
        throw new DnsQueryError(`${(udpErr as Error).message}; ${(tcpErr as Error).message}`);
      }
    }
    if (!udp.truncated) return { packet: udp.packet!, transport: 'udp' };
    try {
      return { packet: await viaTcp(), transport: 'tcp' };
    } catch (tcpErr) {
      if (tcpErr instanceof TruncatedAnswerError && answerCount(tcpErr.partial) >= answerCount(udp.packet ?? EMPTY_PACKET)) throw tcpErr;
      const partial = udp.packet ?? EMPTY_PACKET;
      const got = partial.answers?.filter((a) => a.type === type).length ?? 0;
      throw new TruncatedAnswerError(
        `${name} ${type}: the answer from ${formatServer(server)} was truncated over UDP (${got} record${got === 1 ? '' : 's'} arrived) ` +
        `and could not be completed over TCP (${(tcpErr as Error).message})`, partial);
    }
  }
}
