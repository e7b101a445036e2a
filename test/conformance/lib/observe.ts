// Questions asked of a capture: which packets are probes, announcements, answers; timing stats.
import type { Capture, Seen } from './capture.js';
import { lower, type Rec } from './dns.js';
import { sleep } from './trial.js';

/** A probe (RFC 6762 §8.1): a query with proposed records in the authority section. */
export function isProbe(p: Seen): boolean {
  return p.msg?.kind === 'query' && p.msg.questions.length > 0 && p.msg.authorities.length > 0;
}

export function asks(p: Seen, name: string, type?: string): boolean {
  return !!p.msg?.questions.some((q) => lower(q.name) === lower(name) && (type === undefined || q.type === type));
}

/** Probes the host under capture sent for `name`. */
export function probesFor(cap: Capture, name: string, since = 0): Seen[] {
  return cap.filter((p) => p.fromHost && isProbe(p) && asks(p, name), since);
}

export function isResponse(p: Seen): boolean {
  return p.msg?.kind === 'response';
}

/** Answer-section records of a response that match. */
export function answers(p: Seen, pred: (r: Rec) => boolean): Rec[] {
  return p.msg?.kind === 'response' ? p.msg.answers.filter(pred) : [];
}

export const named = (name: string, type?: string) => (r: Rec) => lower(r.name) === lower(name) && (type === undefined || r.type === type);

/** Multicast responses from the host whose answer section holds a live record matching `pred`. */
export function multicastAnswers(cap: Capture, pred: (r: Rec) => boolean, since = 0): Seen[] {
  return cap.filter((p) => p.fromHost && p.multicast && answers(p, (r) => r.ttl > 0 && pred(r)).length > 0, since);
}

/** Waits until the host under capture has multicast nothing for `quietMs` (bounded by timeoutMs). */
export async function waitQuiet(cap: Capture, quietMs = 1100, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = [...cap.packets].reverse().find((p) => p.fromHost && p.multicast);
    const since = last ? Date.now() - last.t : Infinity;
    if (since >= quietMs) return;
    if (Date.now() > deadline) throw new Error(`host still multicasting after ${timeoutMs} ms`);
    await sleep(Math.min(quietMs - since + 5, 200));
  }
}

/**
 * Waits until the host's announcements are over (RFC 6762 §8.3 allows up to eight, each gap at
 * least double the one before): quiet for twice the last gap between rounds of its multicast
 * responses, at least 1.1 s. The ambassador announces twice, 1 s apart; avahi-daemon three
 * times, 1 s and 2 s apart.
 */
export async function waitAnnounced(cap: Capture, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rounds = clusters(cap.filter((p) => p.fromHost && p.multicast && p.msg?.kind === 'response').map((p) => p.t), 500);
    const lastGap = rounds.length >= 2 ? rounds[rounds.length - 1]! - rounds[rounds.length - 2]! : 1000;
    const quietMs = Math.max(1100, 2 * lastGap + 200);
    const last = [...cap.packets].reverse().find((p) => p.fromHost && p.multicast);
    const since = last ? Date.now() - last.t : Infinity;
    if (since >= quietMs) return;
    if (Date.now() > deadline) throw new Error(`host still announcing after ${timeoutMs} ms`);
    await sleep(Math.min(quietMs - since + 5, 200));
  }
}

export const ms = (x: number): string => `${Math.round(x)} ms`;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/** `min 23 / median 71 / max 118 ms (n=5)` */
export function spread(xs: number[]): string {
  if (xs.length === 0) return 'no samples';
  return `min ${Math.round(Math.min(...xs))} / median ${Math.round(median(xs))} / max ${Math.round(Math.max(...xs))} ms (n=${xs.length})`;
}

/** Start times of groups of times where each group begins after a gap of at least `gapMs`. */
export function clusters(times: number[], gapMs: number): number[] {
  const out: number[] = [];
  let last = -Infinity;
  for (const t of [...times].sort((a, b) => a - b)) {
    if (t - last >= gapMs) out.push(t);
    last = t;
  }
  return out;
}

/** Whether `p` is a multicast response from the host with a live answer matching `pred`. */
export function mcastAnswer(p: Seen, pred: (r: Rec) => boolean): boolean {
  return p.fromHost && p.multicast && answers(p, (r) => r.ttl > 0 && pred(r)).length > 0;
}

/** One line per packet, for timelines: `+1234.5 ms dut→224.0.0.251 ttl255 R an[SRV x, A y] ad[…]`. */
export function describePacket(p: Seen, t0: number): string {
  const who = `${p.fromHost ? 'dut' : p.src}:${p.sport}→${p.multicast ? 'mcast' : p.dst}:${p.dport}`;
  const m = p.msg;
  if (!m) return `+${(p.t - t0).toFixed(1)} ${who} ${p.size} B (not DNS)`;
  const recs = (rs: Rec[]) => rs.map((r) => `${r.type} ${r.name}${r.ttl === 0 ? ' ttl0' : ''}${r.flush ? '*' : ''}`).join(', ');
  const parts = [
    `+${(p.t - t0).toFixed(1)}`, who, `ttl${p.ttl}`, `${p.size}B`, m.kind === 'query' ? 'Q' : 'R', `id${m.id}`, m.tc ? 'TC' : '',
    m.questions.length ? `qd[${m.questions.map((q) => `${q.type} ${q.name}${q.qu ? ' QU' : ''}`).join(', ')}]` : '',
    m.answers.length ? `an[${recs(m.answers)}]` : '',
    m.authorities.length ? `ns[${recs(m.authorities)}]` : '',
    m.additionals.length ? `ad[${recs(m.additionals)}]` : '',
  ];
  return parts.filter(Boolean).join(' ');
}
