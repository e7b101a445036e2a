import type { MdnsQuestion, MdnsRecord } from './records.js';
import { encodePacket, type OutgoingPacket } from './codec.js';

/** DNS header flag: more known answers follow in the next packet (RFC 6762 §7.2, §18.5). */
export const TC_FLAG = 1 << 9;

/** Encodings of the packets built here, so that sending them does not encode them again. */
const encoded = new WeakMap<OutgoingPacket, Buffer>();

/** The wire bytes of a packet (encoded once). */
export function packetBytes(p: OutgoingPacket): Buffer {
  let b = encoded.get(p);
  if (!b) encoded.set(p, (b = encodePacket(p)));
  return b;
}

/**
 * The largest n in [min, max] for which make(n) encodes to at most `limit` bytes (min when even
 * that does not fit), with its packet. Sizes only grow with n, so a binary search needs
 * log2(max) encodings, and usually one (everything fits).
 */
function largestFitting(min: number, max: number, limit: number, make: (n: number) => OutgoingPacket): [number, OutgoingPacket] {
  const tried = new Map<number, OutgoingPacket>();
  const fits = (n: number) => {
    const p = make(n);
    tried.set(n, p);
    return packetBytes(p).length <= limit;
  };
  const result = (n: number): [number, OutgoingPacket] => [n, tried.get(n) ?? make(n)];
  if (max <= min || fits(max)) return result(max);
  let lo = min; // fits (or is the floor)
  let hi = max; // does not fit
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return result(lo);
}

/**
 * A response split over as few packets as `limit` bytes allow (encoded size, with name
 * compression). Answers are never dropped; additionals are optional and go wherever they still
 * fit, the rest are left out (RFC 6762 §6.2: "if there is space").
 */
export function packResponse(answers: MdnsRecord[], additionals: MdnsRecord[], limit: number, base: Omit<OutgoingPacket, 'type'> = {}): OutgoingPacket[] {
  const packets: OutgoingPacket[] = [];
  for (let i = 0; i < answers.length;) {
    const [n, p] = largestFitting(1, answers.length - i, limit, (k) => ({ ...base, type: 'response', answers: answers.slice(i, i + k) }));
    packets.push(p);
    i += n;
  }
  let rest = additionals;
  for (let j = packets.length - 1; j >= 0 && rest.length > 0; j--) {
    const p = packets[j]!;
    const [m, withExtra] = largestFitting(0, rest.length, limit, (k) => (k === 0 ? p : { ...p, additionals: rest.slice(0, k) }));
    if (m > 0) {
      packets[j] = withExtra;
      rest = rest.slice(m);
    }
  }
  return packets;
}

/** One name being probed: its question and the records we propose for it (RFC 6762 §8.1, §8.2). */
export interface ProbeUnit {
  question: MdnsQuestion;
  authorities: MdnsRecord[];
}

/**
 * Probe queries for many names in as few packets as fit: a name's question and its proposed
 * records always share a packet, so a simultaneous-probe tiebreak compares whole sets.
 */
export function packProbe(units: ProbeUnit[], limit: number): OutgoingPacket[] {
  const make = (u: ProbeUnit[]): OutgoingPacket => ({
    type: 'query', questions: u.map((x) => x.question), authorities: u.flatMap((x) => x.authorities),
  });
  const packets: OutgoingPacket[] = [];
  for (let i = 0; i < units.length;) {
    const [n, p] = largestFitting(1, units.length - i, limit, (k) => make(units.slice(i, i + k)));
    packets.push(p);
    i += n;
  }
  return packets;
}

/**
 * A query with its known answers: what does not fit the first packet continues in more packets,
 * every one but the last with the TC bit (RFC 6762 §7.2).
 */
export function packQuery(questions: MdnsQuestion[], known: MdnsRecord[], limit: number, optionCode?: number): OutgoingPacket[] {
  const packets: OutgoingPacket[] = [];
  let i = 0;
  do {
    const first = packets.length === 0;
    const qs = first ? questions : [];
    const opt = first && optionCode !== undefined ? { optionCode } : {};
    const [n, p] = largestFitting(qs.length ? 0 : 1, known.length - i, limit, (k) => ({ type: 'query', questions: qs, answers: known.slice(i, i + k), ...opt }));
    packets.push(p);
    i += n;
  } while (i < known.length);
  // The TC bit changes the header only: the size measured stays right (encoded again when sent).
  return packets.map((p, j) => (j < packets.length - 1 ? { ...p, flags: TC_FLAG } : p));
}
