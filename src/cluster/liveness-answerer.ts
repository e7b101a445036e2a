import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from '../base/clock.js';
import { decodeLiveness, encodeLiveness, NOT_SERVING, REPLY, REQUEST, SERVING } from './liveness-wire.js';

export interface LivenessAnswererOptions {
  /** UDP port to answer on (0 = any free port). The same port is used for IPv4 and IPv6. */
  port?: number;
  /** Whether this ambassador serves `port` now (announced, and its own check of the target passes). */
  serving: (port: number) => boolean;
  /** Replies per second in all (token bucket, burst a fifth of it). Default 5000. */
  maxRepliesPerSecond?: number;
  /**
   * Replies per second to one source address (burst 2 s worth). Default 200: one liveness check sends 2 a
   * second to a host, 10 while it suspects it; a few ambassadors may share an address.
   */
  maxRepliesPerSourcePerSecond?: number;
  clock?: Clock;
}

export interface LivenessAnswererStats {
  requests: number;
  replies: number;
  bytesIn: number;
  bytesOut: number;
  /** Datagrams that were not a well-formed probe request: dropped. */
  malformed: number;
  /** Requests not answered because a rate limit was reached. */
  rateLimited: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

const MAX_SOURCES = 4096;

/**
 * Answers host probes from connecting ambassadors (see cluster/liveness-wire.ts) on one UDP
 * port, announced in the TXT of every advertisement. The answer says this host and its
 * ambassador are alive and, per port asked about, whether the service there is served now: the
 * health of a service is decided here, at its source, once, instead of by every connector.
 *
 * Not an amplifier: a reply is exactly as long as the request, only well-formed requests are
 * answered, and replies are rate-limited in all and per source address.
 */
export class LivenessAnswerer extends EventEmitter {
  readonly stats: LivenessAnswererStats = { requests: 0, replies: 0, bytesIn: 0, bytesOut: 0, malformed: 0, rateLimited: 0 };
  private readonly clock: Clock;
  private readonly rate: number;
  private readonly perSource: number;
  private readonly global: Bucket;
  private readonly sources = new Map<string, Bucket>();
  private sockets: dgram.Socket[] = [];
  private boundPort = 0;

  constructor(private readonly opts: LivenessAnswererOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.rate = Math.max(1, opts.maxRepliesPerSecond ?? 5000);
    this.perSource = Math.max(1, opts.maxRepliesPerSourcePerSecond ?? 200);
    this.global = { tokens: this.rate / 5, at: this.clock.now() };
  }

  /** The bound UDP port (after start). */
  get port(): number {
    return this.boundPort;
  }

  /** Binds IPv4 (required) and IPv6 on the same port (best effort: IPv6 may be absent). */
  async start(): Promise<number> {
    const v4 = await bind('udp4', '0.0.0.0', this.opts.port ?? 0);
    this.sockets.push(v4);
    this.boundPort = v4.address().port;
    try {
      this.sockets.push(await bind('udp6', '::', this.boundPort, true));
    } catch {
      /* no IPv6 here, or the port is taken on IPv6 only: IPv4 peers are still answered */
    }
    for (const s of this.sockets) {
      s.on('message', (d, rinfo) => {
        const reply = this.answer(d, rinfo.address);
        if (reply) s.send(reply, rinfo.port, rinfo.address);
      });
      s.on('error', () => {}); // ICMP errors from checkers that went away: nothing to do
    }
    return this.boundPort;
  }

  stop(): void {
    for (const s of this.sockets) {
      try {
        s.close();
      } catch {
        /* closed */
      }
    }
    this.sockets = [];
  }

  /** The reply to `datagram` from `source`, or undefined when it gets none. */
  answer(datagram: Buffer, source: string): Buffer | undefined {
    this.stats.bytesIn += datagram.length;
    const msg = decodeLiveness(datagram);
    if (!msg || msg.type !== REQUEST) {
      this.stats.malformed++;
      return undefined;
    }
    this.stats.requests++;
    if (!this.take(source)) {
      this.stats.rateLimited++;
      return undefined;
    }
    const reply = encodeLiveness(REPLY, msg.nonce, msg.entries.map((e) => ({ port: e.port, status: this.opts.serving(e.port) ? SERVING : NOT_SERVING })));
    this.stats.replies++;
    this.stats.bytesOut += reply.length;
    return reply;
  }

  private take(source: string): boolean {
    const now = this.clock.now();
    let b = this.sources.get(source);
    if (!b) {
      if (this.sources.size >= MAX_SOURCES) this.sources.clear(); // spoofed sources cannot grow memory
      b = { tokens: this.perSource * 2, at: now };
      this.sources.set(source, b);
    }
    refill(b, now, this.perSource, this.perSource * 2);
    refill(this.global, now, this.rate, this.rate / 5);
    if (b.tokens < 1 || this.global.tokens < 1) return false;
    b.tokens--;
    this.global.tokens--;
    return true;
  }
}

function refill(b: Bucket, now: number, perSecond: number, burst: number): void {
  if (now > b.at) {
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) * perSecond) / 1000);
    b.at = now;
  }
}

function bind(type: 'udp4' | 'udp6', address: string, port: number, ipv6Only = false): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type, ipv6Only });
    const onError = (err: Error): void => {
      s.close();
      reject(err);
    };
    s.once('error', onError);
    s.bind({ port, address, exclusive: true }, () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}
