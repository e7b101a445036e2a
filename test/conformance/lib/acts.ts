// What the scripted peer can do to the host under test, beyond sending one packet: behave as
// another host that owns a name (answer its probes), or probe for a name itself.
import type { Capture, Seen } from './capture.js';
import { lower, type OutMsg, type Rec } from './dns.js';
import { isProbe } from './observe.js';
import type { Destination, Peer } from './peer.js';
import { sleep } from './trial.js';

export const PEER_HOST = 'peer.local';

export interface Defender {
  /** Probes answered: the name asked and when our answer left (capture time of the probe). */
  readonly denials: Array<{ name: string; probe: Seen }>;
  stop(): void;
}

/**
 * Acts as the owner of every name `owns` returns records for: each probe the host under test
 * sends for such a name is answered at once with those records (a multicast response, cache-flush
 * bit set), as RFC 6762 §8.1 has a defending host do.
 */
export function defend(cap: Capture, peer: Peer, owns: (name: string) => Rec[] | undefined): Defender {
  const denials: Defender['denials'] = [];
  const unsubscribe = cap.subscribe((p) => {
    if (!p.fromHost || !isProbe(p)) return;
    const answers: Rec[] = [];
    for (const q of p.msg!.questions) {
      const recs = owns(lower(q.name));
      if (recs?.length) {
        answers.push(...recs.map((r) => ({ ...r, flush: true })));
        denials.push({ name: lower(q.name), probe: p });
      }
    }
    if (answers.length) void peer.send({ kind: 'response', answers }).catch(() => {});
  });
  return { denials, stop: unsubscribe };
}

/**
 * Probes for `name` as RFC 6762 §8.1 has it: three queries 250 ms apart (QU first), question ANY,
 * the proposed records in the authority section. Returns the bytes of each probe sent.
 */
export async function probe(peer: Peer, name: string, proposed: Rec[], count = 3): Promise<Buffer[]> {
  const sent: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(250);
    sent.push(await peer.send({ kind: 'query', questions: [{ name, type: 'ANY', qu: i === 0 }], authorities: proposed.map((r) => ({ ...r, flush: false })) }));
  }
  return sent;
}

/** SRV and TXT of an instance on the peer's host. */
export function peerInstance(name: string, port: number, txt: Buffer[] = [Buffer.alloc(0)], ttl = 120): Rec[] {
  return [
    { name, type: 'SRV', ttl, data: { priority: 0, weight: 0, port, target: PEER_HOST } },
    { name, type: 'TXT', ttl: ttl === 120 ? 4500 : ttl, data: txt },
  ];
}

/** Sends a query from port 5353 and returns it as captured (its wire time is the reference). */
export async function ask(cap: Capture, peer: Peer, m: Omit<OutMsg, 'kind'>, to?: Destination): Promise<Seen> {
  const since = cap.mark();
  return cap.sent(await peer.send({ kind: 'query', ...m }, to), since);
}

/** The first response from the host after `after` (a captured packet) with an answer matching `pred`. */
export function replyTo(cap: Capture, after: Seen, pred: (r: Rec) => boolean, timeoutMs = 1000, unicastOnly = false): Promise<Seen | undefined> {
  return cap.maybe((p) => p.fromHost && p.seq > after.seq && p.msg?.kind === 'response' && (!unicastOnly || !p.multicast) &&
    p.msg.answers.some((r) => r.ttl > 0 && pred(r)), { timeoutMs, since: after.seq + 1, what: 'reply' });
}
