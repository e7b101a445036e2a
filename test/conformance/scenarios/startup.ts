// Start-up of an advertiser: probing (RFC 6762 §8.1, §8.2), announcing (§8.3), cache-flush bits
// (§10.2), record TTLs (§10) and the IP TTL of multicast (§11), all read off one start-up of an
// ambassador advertising two services, one with TXT data.
import { lower, type Rec } from '../lib/dns.js';
import { isProbe, mcastAnswer, ms, multicastAnswers, named, probesFor, spread } from '../lib/observe.js';
import { sleep, type Trial } from '../lib/trial.js';

const HOST = 'dut.local';
const SERVICES = [
  { type: '_alpha._tcp.local', instance: 'alpha@dut._alpha._tcp.local', port: 7001, arg: 'alpha=7001' },
  { type: '_beta._tcp.local', instance: 'beta@dut._beta._tcp.local', port: 7002, arg: 'beta=7002,txt.k=v' },
];
const UNIQUE_NAMES = [HOST, ...SERVICES.map((s) => s.instance)];
const SERVICES_ENUM = '_services._dns-sd._udp.local';

/** Probe gap bounds: 250 ms by the RFC; +150 ms for timers late under load, -10 ms send jitter. */
// The lower bound is the rule; the upper one allows for timers that fire late on a loaded 2-core machine.
const PROBE_GAP = { min: 240, max: 500 };

export const startup: Trial = {
  name: 'startup',
  duts: ['ambassador', 'avahi'],
  budgetMs: 30_000,
  scenarios: [
    { id: 'probe-count', rfc: '6762 §8.1', rule: 'every unique name (host, each instance) is probed exactly 3 times before it is announced' },
    { id: 'probe-interval', rfc: '6762 §8.1', rule: `probes of one name are 250 ms apart (accepted ${PROBE_GAP.min}–${PROBE_GAP.max} ms)`, timing: 'upper bound +150 ms for late timers on a loaded machine' },
    { id: 'probe-qu', rfc: '6762 §8.1', rule: 'the first probe of a name asks for a unicast reply (QU), later ones are QM' },
    { id: 'probe-authority', rfc: '6762 §8.2', rule: 'every probe carries the proposed records of the name in the authority section (host: A; instance: SRV and TXT)' },
    { id: 'probe-wait', rfc: '6762 §8.1', rule: 'a name is announced no earlier than 250 ms after its third probe', timing: '10 ms send jitter allowed' },
    { id: 'announce-two', rfc: '6762 §8.3', rule: 'every record is announced at least twice, a second time ≥ 1 s after the first (repeats in between are the one-second rule\'s business)', timing: '10 ms send jitter allowed (≥ 990 ms)' },
    { id: 'announce-all', rfc: '6762 §8.3, 6763 §9', rule: 'the announcements carry every record: PTR, SRV, TXT per instance, the _services._dns-sd._udp PTR, the host A' },
    { id: 'flush-unique-only', rfc: '6762 §10.2', rule: 'the cache-flush bit is set on unique records (SRV, TXT, A/AAAA, NSEC) and never on shared ones (the DNS-SD PTRs)' },
    { id: 'record-ttls', rfc: '6762 §10', rule: 'records naming a host (SRV, A/AAAA, reverse PTR) have TTL 120 s, the others (DNS-SD PTR, TXT) 75 min' },
    { id: 'ip-ttl-multicast', rfc: '6762 §11', rule: 'every multicast packet leaves with IP TTL 255' },
    { id: 'message-header', rfc: '6762 §18', rule: 'multicast messages have ID 0, opcode 0, rcode 0; responses set AA; all from and to port 5353' },
  ],
  async run({ cap, ambassador, targets, record }) {
    await targets(SERVICES.map((s) => s.port));
    const amb = await ambassador(SERVICES.flatMap((s) => ['--advertise', s.arg]));
    // Both instances announced, then time for the second announcement round and a margin.
    for (const s of SERVICES) await cap.waitFor((p) => mcastAnswer(p, named(s.instance, 'SRV')), { timeoutMs: 15_000, what: `announcement of ${s.instance}` });
    await sleep(2500);
    await amb.stop();

    const firstAnnouncement = (name: string) => {
      const type = name === HOST ? 'A' : 'SRV';
      return multicastAnswers(cap, named(name, type))[0];
    };

    // §8.1 probe count, interval, QU; §8.2 authority records; §8.1 250 ms before announcing.
    const counts: string[] = [];
    const gaps: number[] = [];
    let countOk = true;
    let quOk = true;
    const quNotes: string[] = [];
    let authOk = true;
    const authNotes: string[] = [];
    const waits: number[] = [];
    for (const name of UNIQUE_NAMES) {
      const ann = firstAnnouncement(name);
      const probes = probesFor(cap, name).filter((p) => !ann || p.t < ann.t);
      counts.push(`${name.split('.')[0]} ${probes.length}`);
      if (probes.length !== 3 || !ann) countOk = false;
      for (let i = 1; i < probes.length; i++) gaps.push(probes[i]!.t - probes[i - 1]!.t);
      probes.forEach((p, i) => {
        const q = p.msg!.questions.find((x) => lower(x.name) === lower(name))!;
        if (q.qu !== (i === 0)) {
          quOk = false;
          quNotes.push(`${name.split('.')[0]} probe ${i + 1} ${q.qu ? 'QU' : 'QM'}`);
        }
        const auth = p.msg!.authorities.filter((r) => lower(r.name) === lower(name)).map((r) => r.type);
        const want = name === HOST ? ['A'] : ['SRV', 'TXT'];
        const missing = want.filter((t) => !auth.includes(t));
        if (missing.length) {
          authOk = false;
          authNotes.push(`${name.split('.')[0]} probe ${i + 1} lacks ${missing.join('+')}`);
        }
      });
      if (ann && probes.length) waits.push(ann.t - probes[probes.length - 1]!.t);
    }
    record('probe-count', countOk, counts.join(', '));
    record('probe-interval', gaps.length > 0 && gaps.every((g) => g >= PROBE_GAP.min && g <= PROBE_GAP.max), `gaps ${spread(gaps)}`);
    record('probe-qu', quOk && gaps.length > 0, quOk ? `first probe QU, later QM for ${UNIQUE_NAMES.length} names` : quNotes.join('; '));
    record('probe-authority', authOk && gaps.length > 0, authOk ? `${cap.filter((p) => p.fromHost && isProbe(p)).length} probe packets, all complete` : authNotes.slice(0, 4).join('; '));
    record('probe-wait', waits.length === UNIQUE_NAMES.length && waits.every((w) => w >= 240), `third probe → announcement ${spread(waits)}`);

    // §8.3: two announcements ≥ 1 s apart, for every record set: the first send of the record
    // and a later one at least a second after it. Sends in between are repeats, which the
    // one-second rule judges (a record sent again with another service's announcement, say).
    const annGaps: string[] = [];
    let twoOk = true;
    for (const name of UNIQUE_NAMES) {
      const type = name === HOST ? 'A' : 'SRV';
      const sends = multicastAnswers(cap, named(name, type)).map((p) => p.t);
      const second = sends.find((t) => t - sends[0]! >= 990);
      const repeats = sends.filter((t) => t > sends[0]! && t - sends[0]! < 990).length;
      if (second === undefined) {
        twoOk = false;
        annGaps.push(`${name.split('.')[0]} ${type}: ${sends.length ? 'no second announcement ≥ 1 s after the first' : 'never announced'}`);
        continue;
      }
      annGaps.push(`${name.split('.')[0]} ${type} ${ms(second - sends[0]!)}${repeats ? ` (${repeats} repeat${repeats > 1 ? 's' : ''} before)` : ''}`);
    }
    record('announce-two', twoOk, annGaps.join(', '));

    // §8.3 all records announced (within the first announcement round of each service).
    const want: Array<[string, string, unknown?]> = [[HOST, 'A']];
    for (const s of SERVICES) want.push([s.type, 'PTR', s.instance], [s.instance, 'SRV'], [s.instance, 'TXT'], [SERVICES_ENUM, 'PTR', s.type]);
    const announced = cap.filter((p) => p.fromHost && p.multicast && p.msg?.kind === 'response').flatMap((p) => p.msg!.answers.filter((r) => r.ttl > 0));
    const has = ([name, type, data]: [string, string, unknown?]) => announced.some((r) => lower(r.name) === lower(name) && r.type === type && (data === undefined || lower(String(r.data)) === lower(String(data))));
    const missing = want.filter((w) => !has(w)).map(([n, t]) => `${t} ${n}`);
    record('announce-all', missing.length === 0, missing.length ? `missing ${missing.join(', ')}` : `all ${want.length} records announced`);

    // §10.2 cache-flush bits, §10 TTLs, over every response the ambassador sent.
    const all: Rec[] = cap.filter((p) => p.fromHost && p.msg?.kind === 'response').flatMap((p) => [...p.msg!.answers, ...p.msg!.additionals]).filter((r) => r.ttl > 0);
    // Shared: the DNS-SD browsing PTRs (service types, their enumeration, subtypes). Every other
    // record, reverse-mapping PTRs included, is unique to its host.
    const isShared = (r: Rec) => r.type === 'PTR' && /\._(tcp|udp)\.local$/.test(lower(r.name));
    const unique = all.filter((r) => !isShared(r));
    const shared = all.filter(isShared);
    const uniqueFlush = unique.filter((r) => r.flush).length;
    const sharedFlush = shared.filter((r) => r.flush).length;
    record('flush-unique-only', all.length > 0 && uniqueFlush === unique.length && sharedFlush === 0,
      `flush on ${uniqueFlush}/${unique.length} unique, ${sharedFlush}/${shared.length} shared records`);
    // §10: 120 s for records that name a host (A/AAAA, SRV, reverse-mapping PTR), 75 min else.
    const hostTtl = (r: Rec) => ['SRV', 'A', 'AAAA'].includes(r.type) || (r.type === 'PTR' && !isShared(r));
    const wrongTtl = all.filter((r) => r.type !== 'NSEC' && r.ttl !== (hostTtl(r) ? 120 : 4500));
    record('record-ttls', all.length > 0 && wrongTtl.length === 0,
      wrongTtl.length ? `unexpected: ${[...new Set(wrongTtl.map((r) => `${r.type} ${r.ttl} s`))].join(', ')}` : `SRV/A 120 s, PTR/TXT 4500 s (${all.length} records)`);

    // §11 IP TTL of multicast.
    const mcast = cap.filter((p) => p.fromHost && p.multicast);
    const ttls = [...new Set(mcast.map((p) => p.ttl))];
    record('ip-ttl-multicast', mcast.length > 0 && ttls.every((t) => t === 255), `IP TTL ${ttls.join('/')} on ${mcast.length} multicast packets`);

    // §18 header fields of everything multicast.
    const bad: string[] = [];
    for (const p of mcast) {
      const m = p.msg;
      if (!m) { bad.push(`${p.size}-byte packet that is not DNS`); continue; }
      if (m.id !== 0) bad.push(`ID ${m.id}`);
      if (m.opcode !== 0) bad.push(`opcode ${m.opcode}`);
      if (m.rcode !== 0) bad.push(`rcode ${m.rcode}`);
      if (m.kind === 'response' && !m.aa) bad.push('response without AA');
      if (p.sport !== 5353 || p.dport !== 5353) bad.push(`ports ${p.sport}→${p.dport}`);
    }
    record('message-header', mcast.length > 0 && bad.length === 0, bad.length ? [...new Set(bad)].join(', ') : `${mcast.length} packets: ID 0, opcode 0, rcode 0, AA on responses, port 5353`);
  },
};
