// Suppression as a responder: known answers (RFC 6762 §7.1), known answers that continue in
// further packets after a truncated query (§7.2, with the 400–500 ms reply delay of §6), and
// duplicate answers from another responder (§7.4).
import { ask, replyTo } from '../lib/acts.js';
import type { Seen } from '../lib/capture.js';
import { encode, type Rec } from '../lib/dns.js';
import { mcastAnswer, ms, named, waitAnnounced, waitQuiet } from '../lib/observe.js';
import type { Trial } from '../lib/trial.js';

// The lower bound is the rule; the upper one allows for timers that fire late on a loaded 2-core machine.
const TC_DELAY = { min: 399, max: 750 };

/** Known-answer PTRs of made-up instances, to fill a query packet (~1400 bytes). */
function fillers(type: string, from: number, bytes: number): Rec[] {
  const out: Rec[] = [];
  for (let i = from; encode({ kind: 'query', answers: out }).length < bytes; i++) {
    out.push({ name: type, type: 'PTR', ttl: 4500, data: `another instance of the service, number ${String(i).padStart(3, '0')}.${type}` });
  }
  return out;
}

export const knownAnswers: Trial = {
  name: 'known-answers',
  duts: ['ambassador', 'avahi'],
  budgetMs: 40_000,
  scenarios: [
    { id: 'known-answer-suppression', rfc: '6762 §7.1', rule: 'a query listing our PTR as a known answer with its full TTL gets no answer with that record' },
    { id: 'known-answer-half-ttl', rfc: '6762 §7.1', rule: 'a known answer with less than half the TTL left does not suppress: the record is sent' },
    { id: 'known-answer-tc-continuation', rfc: '6762 §7.2', rule: 'a truncated (TC) query whose known answers continue in a second packet, which lists our PTR, gets no answer with that record' },
    { id: 'tc-reply-delay', rfc: '6762 §6, §7.2', rule: `an answer to a truncated (TC) query waits 400–500 ms for the known answers to follow (accepted ${TC_DELAY.min}–${TC_DELAY.max} ms)`, timing: 'upper bound +80 ms for late timers on a loaded machine' },
  ],
  async run({ cap, peer, ambassador, targets, record }) {
    const TYPE = '_ka._tcp.local';
    const NAME = `ka@dut.${TYPE}`;
    const ptr = (ttl: number): Rec => ({ name: TYPE, type: 'PTR', ttl, data: NAME });
    await targets([7001]);
    await ambassador(['--advertise', 'ka=7001']);
    await cap.waitFor((p) => mcastAnswer(p, named(NAME, 'SRV')), { timeoutMs: 15_000, what: 'announcement' });
    await waitAnnounced(cap);
    const ourPtr = named(TYPE, 'PTR');

    const full = await ask(cap, peer, { questions: [{ name: TYPE, type: 'PTR' }], answers: [ptr(4500)] });
    const r1 = await replyTo(cap, full, ourPtr, 1000);
    record('known-answer-suppression', !r1, r1 ? `answered anyway after ${ms(r1.t - full.t)}` : 'no answer within 1 s');
    await waitQuiet(cap);

    const half = await ask(cap, peer, { questions: [{ name: TYPE, type: 'PTR' }], answers: [ptr(2000)] });
    const r2 = await replyTo(cap, half, ourPtr, 1000);
    record('known-answer-half-ttl', !!r2, r2 ? `answered after ${ms(r2.t - half.t)} (known answer TTL 2000 of 4500 s)` : 'no answer within 1 s');
    await waitQuiet(cap);

    // Two-packet known-answer list: fillers in the first (TC set), ours in the continuation.
    const tcQuery = async (withOurs: boolean): Promise<Seen> => {
      const mark = cap.mark();
      const first = await peer.send({ kind: 'query', tc: true, questions: [{ name: TYPE, type: 'PTR' }], answers: fillers(TYPE, 0, 1350) });
      await peer.send({ kind: 'query', answers: [...(withOurs ? [ptr(4500)] : []), ...fillers(TYPE, 100, 300)] });
      return cap.sent(first, mark);
    };
    const tc1 = await tcQuery(true);
    const r3 = await replyTo(cap, tc1, ourPtr, 1200);
    const second = cap.filter((p) => !p.fromHost && p.seq > tc1.seq && p.msg?.kind === 'query' && p.msg.questions.length === 0)[0];
    record('known-answer-tc-continuation', !r3, `${tc1.size} + ${second?.size ?? '?'} byte query, ${r3 ? `answered anyway after ${ms(r3.t - tc1.t)}` : 'no answer within 1.2 s'}`);
    await waitQuiet(cap);

    const tc2 = await tcQuery(false);
    const r4 = await replyTo(cap, tc2, ourPtr, 1200);
    const d = r4 && r4.t - tc2.t;
    record('tc-reply-delay', d !== undefined && d >= TC_DELAY.min && d <= TC_DELAY.max, r4 ? `answered after ${ms(d!)}` : 'no answer within 1.2 s');
  },
};

export const duplicateAnswers: Trial = {
  name: 'duplicate-answers',
  duts: ['ambassador', 'avahi'],
  budgetMs: 30_000,
  scenarios: [{
    id: 'duplicate-answer-suppression', rfc: '6762 §7.4',
    rule: 'an answer we were about to multicast (shared, delayed) that another responder multicasts first is not sent again; without it we answer',
  }],
  async run({ cap, peer, ambassador, targets, record }) {
    const TYPE = '_da._tcp.local';
    const NAME = `da@dut.${TYPE}`;
    await targets([7001]);
    await ambassador(['--advertise', 'da=7001']);
    await cap.waitFor((p) => mcastAnswer(p, named(NAME, 'SRV')), { timeoutMs: 15_000, what: 'announcement' });
    await waitAnnounced(cap);
    const ourPtr = named(TYPE, 'PTR');
    // Another responder (the peer) answers our question with the same PTR, well inside 20 ms.
    // Both datagrams are handed to the kernel in the same tick: nothing in this process can
    // push the duplicate past the ambassador's 20 ms minimum delay.
    const mark = cap.mark();
    const [query] = await Promise.all([
      peer.send({ kind: 'query', questions: [{ name: TYPE, type: 'PTR' }] }),
      peer.send({ kind: 'response', answers: [{ name: TYPE, type: 'PTR', ttl: 4500, data: NAME }] }),
    ]);
    const q = await cap.sent(query, mark);
    const dup = await cap.waitFor((p) => !p.fromHost && p.msg?.kind === 'response', { since: q.seq + 1, timeoutMs: 2000, what: 'our duplicate answer' });
    const r = await replyTo(cap, q, ourPtr, 1000);
    await waitQuiet(cap);
    const control = await ask(cap, peer, { questions: [{ name: TYPE, type: 'PTR' }] });
    const rc = await replyTo(cap, control, ourPtr, 1000);
    record('duplicate-answer-suppression', !r && !!rc, [
      `their answer ${ms(dup.t - q.t)} after the query`,
      r ? `ours went out anyway after ${ms(r.t - q.t)}` : 'ours suppressed',
      rc ? `without theirs we answer after ${ms(rc.t - control.t)}` : 'without theirs: no answer either',
    ].join('; '));
  },
};
