// Answering: reply timing for shared and unique records (RFC 6762 §6), probe defence (§8.1),
// the one-second rule for answers (§6), QU and legacy unicast replies (§5.4, §6.7), IP TTL of
// unicast (§11), negative answers and additional records (§6.1, §6.2, RFC 6763 §12).
import { ask, probe, peerInstance, replyTo } from '../lib/acts.js';
import type { Seen } from '../lib/capture.js';
import { lower, type Rec } from '../lib/dns.js';
import { ms, median, mcastAnswer, named, spread, waitAnnounced, waitQuiet } from '../lib/observe.js';
import { sleep, type Trial } from '../lib/trial.js';

// The lower bound is the rule; the upper one allows for timers that fire late on a loaded 2-core machine.
const SHARED_DELAY = { min: 19, max: 300 };
const UNIQUE_MEDIAN_MAX = 15;

export const replyTiming: Trial = {
  name: 'reply-timing',
  duts: ['ambassador', 'avahi'],
  budgetMs: 45_000,
  scenarios: [
    { id: 'shared-reply-delay', rfc: '6762 §6', rule: `an answer with shared records (PTR) is delayed 20–120 ms (accepted ${SHARED_DELAY.min}–${SHARED_DELAY.max} ms)`, timing: 'upper bound +60 ms for late timers on a loaded machine; the lower bound is firm (1 ms allowance)' },
    { id: 'unique-reply-immediate', rfc: '6762 §6', rule: `an answer with only unique records (SRV) is not delayed ("normally within 10 ms"; accepted: median ≤ ${UNIQUE_MEDIAN_MAX} ms)`, timing: 'RFC 10 ms +5 ms on the median for scheduling on a loaded machine; single samples not judged' },
    { id: 'probe-defense', rfc: '6762 §8.1, §6', rule: 'a probe for one of our announced names is answered with our record within 250 ms (before the prober\'s next probe)' },
    { id: 'one-second-rule-answers', rfc: '6762 §6', rule: 'queries for a record 300 ms apart do not make us multicast it more than once per second', timing: '10 ms send jitter allowed (≥ 990 ms)' },
  ],
  async run({ cap, peer, ambassador, targets, record }) {
    const N = 8;
    const svc = Array.from({ length: N }, (_, i) => ({ type: `_rt${i + 1}._tcp.local`, instance: `rt${i + 1}@dut._rt${i + 1}._tcp.local`, port: 7001 + i }));
    await targets(svc.map((s) => s.port));
    await ambassador(svc.flatMap((s) => ['--advertise', `rt${s.port - 7000}=${s.port}`]));
    for (const s of svc) await cap.waitFor((p) => mcastAnswer(p, named(s.instance, 'SRV')), { timeoutMs: 20_000, what: `announcement of ${s.instance}` });
    await waitAnnounced(cap);

    // Shared: PTR queries, one type every 300 ms (answer windows do not overlap).
    const pending: Array<Promise<number | undefined>> = [];
    for (const s of svc) {
      const q = await ask(cap, peer, { questions: [{ name: s.type, type: 'PTR' }] });
      pending.push(replyTo(cap, q, named(s.type, 'PTR'), 1000).then((r) => r && r.t - q.t));
      await sleep(300);
    }
    const shared = (await Promise.all(pending)).filter((x): x is number => x !== undefined);
    record('shared-reply-delay', shared.length === N && shared.every((d) => d >= SHARED_DELAY.min && d <= SHARED_DELAY.max),
      `${spread(shared)}${shared.length < N ? `; ${N - shared.length} unanswered` : ''}`);
    await waitQuiet(cap);

    // Unique: SRV queries.
    pending.length = 0;
    for (const s of svc) {
      const q = await ask(cap, peer, { questions: [{ name: s.instance, type: 'SRV' }] });
      pending.push(replyTo(cap, q, named(s.instance, 'SRV'), 1000).then((r) => r && r.t - q.t));
      await sleep(300);
    }
    const unique = (await Promise.all(pending)).filter((x): x is number => x !== undefined);
    record('unique-reply-immediate', unique.length === N && median(unique) <= UNIQUE_MEDIAN_MAX,
      `${spread(unique)}${unique.length < N ? `; ${N - unique.length} unanswered` : ''}`);
    await waitQuiet(cap);

    // Probe defence: another host probes for rt1's instance name with other data.
    const target = svc[0]!;
    const mark = cap.mark();
    const sent = await probe(peer, target.instance, peerInstance(target.instance, 9), 1);
    const p1 = await cap.sent(sent[0]!, mark);
    const defence = await replyTo(cap, p1, named(target.instance, 'SRV'), 1000);
    const d = defence && defence.t - p1.t;
    record('probe-defense', d !== undefined && d <= 250,
      defence ? `answered ${ms(d!)} after the probe (${defence.multicast ? 'multicast' : `unicast to ${defence.dst}`})` : 'no answer within 1 s');
    await waitQuiet(cap);

    // One-second rule: three queries for one SRV, 300 ms apart; its multicasts ≥ 1 s apart.
    const s2 = svc[1]!;
    const first = await ask(cap, peer, { questions: [{ name: s2.instance, type: 'SRV' }] });
    await sleep(300);
    await ask(cap, peer, { questions: [{ name: s2.instance, type: 'SRV' }] });
    await sleep(300);
    await ask(cap, peer, { questions: [{ name: s2.instance, type: 'SRV' }] });
    await sleep(1500);
    const sends = cap.filter((p) => p.seq > first.seq && mcastAnswer(p, named(s2.instance, 'SRV')));
    const gaps = sends.slice(1).map((p, i) => p.t - sends[i]!.t);
    record('one-second-rule-answers', sends.length >= 1 && gaps.every((g) => g >= 990),
      sends.length === 0 ? 'never answered' : `${sends.length} multicast(s) of the SRV in 2.1 s${gaps.length ? `, gaps ${gaps.map(ms).join(', ')}` : ''}`);
  },
};

/** Whether `p` carries no cache-flush bit and only TTLs ≤ 10 s. */
function legacyClean(p: Seen): string[] {
  const problems: string[] = [];
  const recs = [...p.msg!.answers, ...p.msg!.authorities, ...p.msg!.additionals];
  const flushed = recs.filter((r) => r.flush);
  if (flushed.length) problems.push(`cache-flush bit on ${flushed.map((r) => r.type).join(', ')}`);
  const long = recs.filter((r) => r.ttl > 10);
  if (long.length) problems.push(`TTL ${[...new Set(long.map((r) => r.ttl))].join('/')} s`);
  return problems;
}

export const unicastReplies: Trial = {
  name: 'unicast-replies',
  duts: ['ambassador', 'avahi'],
  budgetMs: 30_000,
  scenarios: [
    { id: 'qu-unicast-reply', rfc: '6762 §5.4', rule: 'a QU question for a record multicast recently is answered by unicast to the querier\'s address and port 5353' },
    { id: 'legacy-unicast-reply', rfc: '6762 §6.7', rule: 'a query from a port other than 5353 (multicast or unicast) gets a unicast reply to that port: ID and question echoed, TTLs ≤ 10 s, no cache-flush bit' },
    { id: 'ip-ttl-unicast', rfc: '6762 §11', rule: 'unicast replies (QU and legacy) leave with IP TTL 255' },
    { id: 'nsec-negative', rfc: '6762 §6.1', rule: 'a query for a type our host name does not have (AAAA on an IPv4-only host) is answered with an NSEC listing the types it has' },
    { id: 'additionals-nsec', rfc: '6762 §6.2', rule: 'an answer with our A record on an IPv4-only host carries an NSEC asserting there is no AAAA, in the additional section' },
  ],
  async run({ cap, peer, dut, ambassador, targets, record }) {
    const TYPE = '_ql._tcp.local';
    const NAME = `ql@dut.${TYPE}`;
    await targets([7001]);
    await ambassador(['--advertise', 'ql=7001']);
    await cap.waitFor((p) => mcastAnswer(p, named(NAME, 'SRV')), { timeoutMs: 15_000, what: 'announcement' });
    await waitAnnounced(cap);
    const unicastTtls: string[] = [];

    // QU: the SRV was announced a second ago, so a unicast reply is due.
    const qu = await ask(cap, peer, { questions: [{ name: NAME, type: 'SRV', qu: true }] });
    const quReply = await replyTo(cap, qu, named(NAME, 'SRV'), 1000);
    const quUnicast = !!quReply && !quReply.multicast && quReply.dst === peer.address && quReply.dport === 5353;
    record('qu-unicast-reply', quUnicast, !quReply ? 'no reply within 1 s'
      : `${quReply.multicast ? 'multicast' : `unicast to ${quReply.dst}:${quReply.dport}`} after ${ms(quReply.t - qu.t)}`);
    if (quReply && !quReply.multicast) unicastTtls.push(`QU ${quReply.ttl}`);
    await waitQuiet(cap);

    // Legacy: from an ephemeral port, ID 0xbeef; once to the group, once straight to the host.
    const legacyProblems: string[] = [];
    const legacyNotes: string[] = [];
    for (const [how, to] of [['multicast', undefined], ['unicast', { address: dut.ip, port: 5353 }]] as const) {
      const id = how === 'multicast' ? 0xbeef : 0xcafe;
      const mark = cap.mark();
      const q = await cap.sent(await peer.sendLegacy({ kind: 'query', id, questions: [{ name: TYPE, type: 'PTR' }] }, to), mark);
      const r = await cap.maybe((p) => p.fromHost && p.seq > q.seq && p.msg?.kind === 'response' && p.dport === peer.legacyPort, { timeoutMs: 1000, since: q.seq + 1 });
      if (!r) {
        legacyProblems.push(`${how} query: no reply to port ${peer.legacyPort}`);
        continue;
      }
      unicastTtls.push(`legacy ${r.ttl}`);
      const m = r.msg!;
      const problems = legacyClean(r);
      if (r.multicast) problems.push('reply was multicast');
      if (m.id !== id) problems.push(`ID ${m.id} instead of ${id}`);
      if (!(m.questions.length === 1 && lower(m.questions[0]!.name) === TYPE && m.questions[0]!.type === 'PTR')) problems.push('question not echoed');
      if (!m.answers.some(named(TYPE, 'PTR'))) problems.push('no PTR answer');
      if (problems.length) legacyProblems.push(`${how} query: ${problems.join(', ')}`);
      else legacyNotes.push(`${how} query: ID, question echoed, max TTL ${Math.max(...[...m.answers, ...m.additionals].map((x) => x.ttl))} s, no flush bit, ${ms(r.t - q.t)}`);
      await waitQuiet(cap);
    }
    record('legacy-unicast-reply', legacyProblems.length === 0, [...legacyProblems, ...legacyNotes].join('; '));
    record('ip-ttl-unicast', unicastTtls.length > 0 && unicastTtls.every((x) => x.endsWith(' 255')),
      unicastTtls.length ? `IP TTL: ${unicastTtls.join(', ')}` : 'no unicast reply to measure');

    // §6.1: AAAA for our IPv4-only host name → NSEC.
    const host = 'dut.local';
    const q6 = await ask(cap, peer, { questions: [{ name: host, type: 'AAAA' }] });
    const neg = await cap.maybe((p) => p.fromHost && p.seq > q6.seq && p.msg?.kind === 'response' &&
      [...p.msg.answers, ...p.msg.additionals].some(named(host, 'NSEC')), { timeoutMs: 1000, since: q6.seq + 1 });
    const nsec = neg && [...neg.msg!.answers, ...neg.msg!.additionals].find(named(host, 'NSEC'));
    const types = nsec ? ((nsec.data as { rrtypes?: string[] }).rrtypes ?? []) : [];
    record('nsec-negative', !!nsec && !types.includes('AAAA') && types.includes('A'),
      nsec ? `NSEC ${lower(nsec.name)} [${types.join(' ')}], ${nsec.flush ? 'flush' : 'no flush bit'}, after ${ms(neg!.t - q6.t)}` : 'no NSEC within 1 s');
    await waitQuiet(cap);

    // §6.2: an A answer carries NSEC(no AAAA) in the additional section.
    const q4 = await ask(cap, peer, { questions: [{ name: host, type: 'A' }] });
    const a = await replyTo(cap, q4, named(host, 'A'), 1000);
    const addNsec = a?.msg!.additionals.find(named(host, 'NSEC'));
    const addTypes = addNsec ? ((addNsec.data as { rrtypes?: string[] }).rrtypes ?? []) : [];
    record('additionals-nsec', !!addNsec && !addTypes.includes('AAAA'),
      !a ? 'no A answer within 1 s' : addNsec ? `NSEC [${addTypes.join(' ')}] in additionals` : `additionals: ${a.msg!.additionals.map((r) => r.type).join(', ') || 'none'}`);
  },
};

export const additionals: Trial = {
  name: 'additionals',
  duts: ['ambassador', 'avahi'],
  budgetMs: 40_000,
  ipv6: true,
  scenarios: [
    { id: 'additionals-ptr', rfc: '6763 §12.1', rule: 'a PTR answer carries the instance\'s SRV, TXT and the host\'s A and AAAA as additional records, none repeated from the answer section' },
    { id: 'additionals-srv', rfc: '6763 §12.2', rule: 'an SRV answer carries the target\'s A and AAAA as additional records' },
    { id: 'additionals-address', rfc: '6762 §6.2', rule: 'an A answer carries the host\'s AAAA records as additionals, and an AAAA answer its A records' },
  ],
  async run({ cap, peer, dut, ambassador, targets, record }) {
    // Link-local IPv6 must be usable (DAD done) before the ambassador lists its addresses.
    const deadline = Date.now() + 10_000;
    while (/tentative/.test(await dut.run('ip', ['-6', '-o', 'addr', 'show', 'dev', dut.ifname])) && Date.now() < deadline) await sleep(100);
    const TYPE = '_ad._tcp.local';
    const NAME = `ad@dut.${TYPE}`;
    const HOST = 'dut.local';
    await targets([7001]);
    await ambassador(['--advertise', 'ad=7001']);
    await cap.waitFor((p) => mcastAnswer(p, named(NAME, 'SRV')), { timeoutMs: 15_000, what: 'announcement' });
    await waitAnnounced(cap);

    const check = async (question: { name: string; type: string }, want: Array<[string, string]>) => {
      const q = await ask(cap, peer, { questions: [question] });
      // IPv4 reply (the question went over IPv4).
      const r = await cap.maybe((p) => p.fromHost && p.family === 4 && p.seq > q.seq && p.msg?.kind === 'response' && p.msg.answers.some(named(question.name, question.type)), { timeoutMs: 1000, since: q.seq + 1 });
      await waitQuiet(cap);
      if (!r) return { ok: false, text: `${question.type}: no answer within 1 s` };
      const add = r.msg!.additionals;
      const missingRecs = want.filter(([n, t]) => !add.some(named(n, t)));
      const missing = missingRecs.map(([n, t]) => `${t} ${n.split('.')[0]}`);
      const inAnswers = missingRecs.filter(([n, t]) => r.msg!.answers.some(named(n, t))).map(([, t]) => t);
      const ansKeys = new Set(r.msg!.answers.map((x) => `${lower(x.name)}|${x.type}|${JSON.stringify(x.data)}`));
      const repeated = add.filter((x: Rec) => ansKeys.has(`${lower(x.name)}|${x.type}|${JSON.stringify(x.data)}`));
      const has = add.map((x) => x.type).join(', ') || 'none';
      return {
        ok: missing.length === 0 && repeated.length === 0,
        text: `${question.type}: additionals ${has}${missing.length ? `; missing ${missing.join(', ')}` : ''}` +
          `${inAnswers.length ? ` (${inAnswers.join(', ')} in the answer section instead)` : ''}${repeated.length ? `; ${repeated.length} repeated from answers` : ''}`,
      };
    };
    const ptr = await check({ name: TYPE, type: 'PTR' }, [[NAME, 'SRV'], [NAME, 'TXT'], [HOST, 'A'], [HOST, 'AAAA']]);
    record('additionals-ptr', ptr.ok, ptr.text);
    const srv = await check({ name: NAME, type: 'SRV' }, [[HOST, 'A'], [HOST, 'AAAA']]);
    record('additionals-srv', srv.ok, srv.text);
    const a = await check({ name: HOST, type: 'A' }, [[HOST, 'AAAA']]);
    const aaaa = await check({ name: HOST, type: 'AAAA' }, [[HOST, 'A']]);
    record('additionals-address', a.ok && aaaa.ok, `${a.text}; ${aaaa.text}`);
  },
};
