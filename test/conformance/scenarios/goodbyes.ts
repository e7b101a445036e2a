// Goodbyes (RFC 6762 §10.1): TTL-0 records when one service is withdrawn (its target stopped
// accepting connections) and when the ambassador stops (SIGTERM).
import type { Seen } from '../lib/capture.js';
import { lower, type Rec } from '../lib/dns.js';
import { mcastAnswer, ms, named, waitAnnounced, waitQuiet } from '../lib/observe.js';
import { sleep, type Trial } from '../lib/trial.js';

const goodbyesIn = (ps: Seen[]): Rec[] => ps.filter((p) => p.fromHost && p.multicast && p.msg?.kind === 'response').flatMap((p) => p.msg!.answers.filter((r) => r.ttl === 0));
const short = (r: Rec) => `${r.type} ${lower(r.name).split('._')[0]}`;

export const goodbyes: Trial = {
  name: 'goodbyes',
  budgetMs: 35_000,
  scenarios: [
    { id: 'goodbye-withdraw', rfc: '6762 §10.1', rule: 'a withdrawn service (target down) gets goodbyes (TTL 0) for its PTR, SRV and TXT; other services and the host A are left alone' },
    { id: 'goodbye-stop', rfc: '6762 §10.1', rule: 'on SIGTERM, goodbyes (TTL 0) for every record still published (PTR, SRV, TXT, host A) within 1 s' },
  ],
  async run({ cap, ambassador, targets, record }) {
    const keep = { type: '_g1._tcp.local', name: 'g1@dut._g1._tcp.local' };
    const drop = { type: '_g2._tcp.local', name: 'g2@dut._g2._tcp.local' };
    const t = await targets([7001, 7002]);
    const amb = await ambassador(['--advertise', 'g1=7001', '--advertise', 'g2=7002']);
    for (const s of [keep, drop]) await cap.waitFor((p) => mcastAnswer(p, named(s.name, 'SRV')), { timeoutMs: 15_000, what: `announcement of ${s.name}` });
    await waitAnnounced(cap);

    // Withdrawal: the health check notices the closed port, then goodbyes.
    let mark = cap.mark();
    const closedAt = Date.now();
    await t.close(7002);
    const bye = await cap.maybe((p) => p.fromHost && p.msg?.kind === 'response' && p.msg.answers.some((r) => r.ttl === 0), { since: mark, timeoutMs: 6000 });
    await sleep(1000);
    const byes = goodbyesIn(cap.packets.slice(mark));
    const want = [named(drop.type, 'PTR'), named(drop.name, 'SRV'), named(drop.name, 'TXT')];
    const missing = ['PTR', 'SRV', 'TXT'].filter((_, i) => !byes.some(want[i]!));
    const wrong = byes.filter((r) => !(lower(r.name) === drop.type || lower(r.name) === drop.name || (lower(r.name) === '_services._dns-sd._udp.local' && lower(String(r.data)) === drop.type)));
    record('goodbye-withdraw', !!bye && missing.length === 0 && wrong.length === 0, !bye ? 'no goodbye within 6 s of closing the target'
      : `${byes.map(short).join(', ')} ${ms(bye.t - closedAt)} after the target closed (incl. health check)` +
        `${missing.length ? `; missing ${missing.join(', ')}` : ''}${wrong.length ? `; also said goodbye to ${wrong.map(short).join(', ')}` : ''}`);
    await waitQuiet(cap);

    // Stop.
    mark = cap.mark();
    const termAt = Date.now();
    amb.signal('SIGTERM');
    await Promise.race([amb.exited, sleep(10_000)]);
    await sleep(300);
    const stopByes = goodbyesIn(cap.packets.slice(mark));
    const first = cap.packets.slice(mark).find((p) => p.fromHost && p.msg?.kind === 'response' && p.msg.answers.some((r) => r.ttl === 0));
    const wantStop: Array<[string, string]> = [[keep.type, 'PTR'], [keep.name, 'SRV'], [keep.name, 'TXT'], ['dut.local', 'A']];
    const missingStop = wantStop.filter(([n, ty]) => !stopByes.some(named(n, ty))).map(([n, ty]) => `${ty} ${n.split('._')[0]}`);
    const delay = first ? first.t - termAt : Infinity;
    record('goodbye-stop', !!first && missingStop.length === 0 && delay <= 1000, !first ? 'no goodbye after SIGTERM'
      : `${stopByes.map(short).join(', ')} ${ms(delay)} after SIGTERM${missingStop.length ? `; missing ${missingStop.join(', ')}` : ''}`);
  },
};
