// The ambassador as a querier (a `--connect` browsing for a service): known answers that do
// not fit one packet (RFC 6762 §7.2, §18.5), duplicate question suppression (§7.3), cache
// refresh queries at 80–95 % of a record's TTL (§5.2).
import { PEER_HOST } from '../lib/acts.js';
import type { Capture, Seen } from '../lib/capture.js';
import { chunkRecords, lower, type Rec } from '../lib/dns.js';
import { asks, ms } from '../lib/observe.js';
import type { Peer } from '../lib/peer.js';
import { sleep, type Trial } from '../lib/trial.js';

/** PTR, SRV, TXT of `n` instances of `type` on the peer's host, plus its A record. */
function instances(type: string, names: string[], ttl: number, address: string): Rec[] {
  const out: Rec[] = [];
  names.forEach((name, i) => {
    out.push({ name: type, type: 'PTR', ttl: ttl === 120 ? 4500 : ttl, data: name });
    out.push({ name, type: 'SRV', ttl, flush: true, data: { priority: 0, weight: 0, port: 9000 + i, target: PEER_HOST } });
    out.push({ name, type: 'TXT', ttl: ttl === 120 ? 4500 : ttl, flush: true, data: [Buffer.from('k=v')] });
  });
  out.push({ name: PEER_HOST, type: 'A', ttl, flush: true, data: address });
  return out;
}

/** Answers the host's first query for `type` with `records` (in packets ≤ 1400 bytes); resolves with our first packet. */
function answerFirstQuery(cap: Capture, peer: Peer, type: string, records: Rec[]): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const unsubscribe = cap.subscribe((p) => {
      if (!p.fromHost || p.msg?.kind !== 'query' || !asks(p, type, 'PTR')) return;
      unsubscribe();
      const mark = cap.mark();
      const msgs = chunkRecords(records, 1400, (answers) => ({ kind: 'response', answers }));
      void (async () => {
        const sent: Buffer[] = [];
        for (const m of msgs) sent.push(await peer.send(m));
        resolve(await cap.sent(sent[0]!, mark));
      })().catch(reject);
    });
  });
}

export const tcSend: Trial = {
  name: 'known-answers-tc-send',
  budgetMs: 30_000,
  scenarios: [{
    id: 'known-answer-tc-send', rfc: '6762 §7.2, §18.5',
    rule: 'known answers that do not fit one packet continue in further packets right after (≤ 100 ms), TC set on all but the last, none over the MTU, all known answers listed',
  }],
  async run({ cap, peer, lab, ambassador, record }) {
    const TYPE = '_tcs._tcp.local';
    const names = Array.from({ length: 40 }, (_, i) => `an instance with a rather long descriptive name ${String(i).padStart(2, '0')}.${TYPE}`);
    const announced = answerFirstQuery(cap, peer, TYPE, instances(TYPE, names, 120, lab.gateway!));
    await ambassador(['--connect', 'tcs=7100']);
    const ann = await announced;
    // The next query for the type carries the 40 PTRs as known answers.
    const first = await cap.waitFor((p) => p.fromHost && p.msg?.kind === 'query' && asks(p, TYPE, 'PTR') && p.msg.answers.length > 0,
      { since: ann.seq, timeoutMs: 8000, what: 'a query with known answers' });
    await sleep(600);
    const group: Seen[] = [first];
    for (const p of cap.filter((x) => x.fromHost && x.seq > first.seq && x.msg?.kind === 'query')) {
      if (!group[group.length - 1]!.msg!.tc) break;
      if (p.msg!.questions.length > 0) break; // a new query, not a continuation
      group.push(p);
    }
    const listed = new Set(group.flatMap((p) => p.msg!.answers.filter((r) => r.type === 'PTR' && lower(r.name) === TYPE).map((r) => lower(String(r.data)))));
    const tcOk = group.every((p, i) => p.msg!.tc === (i < group.length - 1));
    const maxSize = Math.max(...group.map((p) => p.size));
    const fragments = group.some((p) => p.fragment) || cap.filter((p) => p.fromHost && p.fragment).length > 0;
    const span = group[group.length - 1]!.t - first.t;
    const pass = group.length >= 2 && tcOk && listed.size === names.length && maxSize <= 1472 && !fragments && span <= 100;
    record('known-answer-tc-send', pass, [
      `${group.length} packet(s) (${group.map((p) => `${p.size} B${p.msg!.tc ? ' TC' : ''}`).join(', ')})`,
      `${listed.size}/${names.length} known answers`,
      group.length > 1 ? `continuation within ${ms(span)}` : '',
      fragments ? 'IP fragments sent' : '',
    ].filter(Boolean).join(', '));
  },
};

export const duplicateQuestions: Trial = {
  name: 'duplicate-questions',
  budgetMs: 30_000,
  scenarios: [{
    id: 'duplicate-question-suppression', rfc: '6762 §7.3',
    rule: 'a query we are about to send, asked by another host first (same QM question, no known answers we lack), is not sent',
    timing: 'the peer asks 250 ms before the query the ambassador\'s own back-off (1 s, 2 s, 4 s…) has due, predicted from the gaps it showed',
  }],
  async run({ cap, peer, ambassador, record }) {
    const TYPE = '_dq._tcp.local';
    await ambassador(['--connect', 'dq=7100']);
    const mine = (p: Seen) => p.fromHost && p.msg?.kind === 'query' && asks(p, TYPE, 'PTR');
    const q1 = await cap.waitFor(mine, { timeoutMs: 10_000, what: 'first query' });
    const q2 = await cap.waitFor(mine, { since: q1.seq + 1, timeoutMs: 5000, what: 'second query' });
    const q3 = await cap.waitFor(mine, { since: q2.seq + 1, timeoutMs: 8000, what: 'third query' });
    const predicted = q3.t + 2 * (q3.t - q2.t);
    await sleep(Math.max(0, predicted - 250 - Date.now()));
    const mark = cap.mark();
    const ours = await cap.sent(await peer.send({ kind: 'query', questions: [{ name: TYPE, type: 'PTR' }] }), mark);
    const before = cap.filter(mine, q3.seq + 1).find((p) => p.t < ours.t);
    const next = await cap.maybe(mine, { since: ours.seq + 1, timeoutMs: 1500 });
    const pass = !before && !next;
    record('duplicate-question-suppression', pass, [
      `its queries at +0, ${ms(q2.t - q1.t)}, ${ms(q3.t - q1.t)}; ours ${ms(predicted - ours.t)} before the next was due`,
      before ? `its query came ${ms(ours.t - before.t)} before ours (${predicted - ours.t < 100 ? 'the peer was late' : 'schedule not as predicted'})`
        : next ? `it asked anyway ${ms(next.t - ours.t)} after ours` : 'it did not ask within 1.5 s',
    ].join('; '));
  },
};

export const cacheRefresh: Trial = {
  name: 'cache-refresh',
  budgetMs: 45_000,
  scenarios: [{
    id: 'cache-refresh', rfc: '6762 §5.2',
    rule: 'a record still wanted is re-queried at 80 %, 85 %, 90 %, 95 % of its TTL (+ up to 2 % random) while unanswered; not before 80 % (TTL 20 s here)',
    timing: 'lower bound (80 %) firm; each window may run 3 % of the TTL (600 ms) late for timers on a loaded machine',
  }],
  async run({ cap, peer, lab, ambassador, record }) {
    const TYPE = '_rf._tcp.local';
    const NAME = `refresh.${TYPE}`;
    const TTL = 20;
    const announced = answerFirstQuery(cap, peer, TYPE, instances(TYPE, [NAME], TTL, lab.gateway!));
    await ambassador(['--connect', 'rf=7100']);
    const ann = await announced;
    // Nothing answers the refresh queries: all four are due; the record expires at 100 %.
    await sleep(Math.max(0, ann.t + TTL * 1000 + 500 - Date.now()));
    const pct = (p: Seen) => ((p.t - ann.t) / (TTL * 1000)) * 100;
    const refreshes = cap.filter((p) => p.fromHost && p.msg?.kind === 'query' && asks(p, NAME, 'SRV'), ann.seq + 1).map(pct);
    const ptrRefreshes = cap.filter((p) => p.fromHost && p.msg?.kind === 'query' && asks(p, TYPE, 'PTR'), ann.seq + 1).map(pct);
    // Windows: [80, 85], [85, 90], [90, 95], [95, 100] (2 % random + 3 % = 600 ms late).
    const windows = [80, 85, 90, 95];
    const inWindow = (x: number) => windows.some((w) => x >= w && x <= w + 5);
    const pass = refreshes.length >= 2 && refreshes.every(inWindow) && refreshes.some((x) => x <= 85);
    const f = (xs: number[]) => xs.map((x) => `${x.toFixed(1)} %`).join(', ') || 'none';
    record('cache-refresh', pass, `SRV queried at ${f(refreshes)} of its TTL (PTR queries at ${f(ptrRefreshes)})`);
  },
};
