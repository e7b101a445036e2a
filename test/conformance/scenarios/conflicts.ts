// Conflicts: simultaneous probe tiebreaking (RFC 6762 §8.2), probe denial (§8.1, §9), the
// 15-conflicts-in-10-s rate limit (§8.1), and conflicts after announcing (§9) for the host's A
// record and for an instance's SRV record. The peer plays the other host.
import { defend, peerInstance, probe } from '../lib/acts.js';
import type { Capture, Seen } from '../lib/capture.js';
import { compareProbeSets, lower, type Rec } from '../lib/dns.js';
import { asks, isProbe, mcastAnswer, ms, multicastAnswers, named, probesFor, waitAnnounced } from '../lib/observe.js';
import { sleep, type Trial } from '../lib/trial.js';

/** An SRV of an instance of `type` on the ambassador's `port` (optionally: not named `exclude`). */
const srvOf = (type: string, port: number, exclude?: string) => (r: Rec) => r.type === 'SRV' && lower(r.name).endsWith('.' + type) &&
  (r.data as { port: number }).port === port && (exclude === undefined || lower(r.name) !== exclude);

/** Multicast responses of the host under test announcing an SRV of `type` on `port`. */
function announcedSrv(cap: Capture, type: string, port: number, since = 0, exclude?: string): Seen[] {
  return multicastAnswers(cap, srvOf(type, port, exclude), since);
}

function srvName(p: Seen, port: number): string {
  return lower(p.msg!.answers.find((r) => r.type === 'SRV' && (r.data as { port: number }).port === port)!.name);
}

const label = (name: string) => name.split('._')[0]!;

/** Simultaneous probing: the peer probes the same instance name while the ambassador probes it. */
function tiebreak(outcome: 'win' | 'lose'): Trial {
  const TYPE = `_tb${outcome[0]}._tcp.local`;
  const NAME = `tiebreak.${TYPE}`;
  const id = outcome === 'win' ? 'tiebreak-win' : 'tiebreak-lose';
  return {
    name: id,
    duts: ['ambassador', 'avahi'],
    budgetMs: 30_000,
    scenarios: [outcome === 'win'
      ? { id, rfc: '6762 §8.2', rule: 'a peer probing the same name with lexicographically earlier data loses: we keep probing on schedule and announce the name' }
      : { id, rfc: '6762 §8.2', rule: 'a peer probing the same name with later data wins: we stop probing that name for 1 s, then (the winner defending it) take a new name' }],
    async run({ cap, peer, ambassador, targets, record }) {
      await targets([7001]);
      await ambassador(['--advertise', `tb${outcome[0]}=7001,instance=tiebreak`]);
      const first = await cap.waitFor((p) => p.fromHost && isProbe(p) && asks(p, NAME), { timeoutMs: 15_000, what: `probe of ${NAME}` });
      const ours = first.msg!.authorities.filter(named(NAME));
      // Same TXT as the ambassador's; the SRV port decides (1: earlier, 65000: later).
      const txt = ours.find((r) => r.type === 'TXT')?.data as Buffer[] | undefined;
      const theirs = peerInstance(NAME, outcome === 'win' ? 1 : 65000, txt);
      const cmp = compareProbeSets(theirs, ours);
      if (outcome === 'win' ? cmp >= 0 : cmp <= 0) throw new Error(`peer's probe set does not ${outcome === 'win' ? 'lose' : 'win'} against ${JSON.stringify(ours)}`);
      const defender = outcome === 'lose' ? defend(cap, peer, (n) => (n === NAME ? theirs : undefined)) : undefined;
      const mark = cap.mark();
      const sent = await probe(peer, NAME, theirs);
      const ourFirst = await cap.sent(sent[0]!, mark);
      if (outcome === 'lose') {
        // The winner announces once its probing is done (250 ms after its third probe).
        await sleep(250);
        await peer.send({ kind: 'response', answers: [...theirs.map((r) => ({ ...r, flush: true })), { name: TYPE, type: 'PTR', ttl: 4500, data: NAME }] });
      }
      const ann = await cap.maybe((p) => mcastAnswer(p, srvOf(TYPE, 7001)), { timeoutMs: 8000, what: 'an announcement' });
      await sleep(300);
      defender?.stop();
      const probes = probesFor(cap, NAME);
      const keptName = ann && srvName(ann, 7001) === NAME;
      if (outcome === 'win') {
        const gaps = probes.slice(1).map((p, i) => p.t - probes[i]!.t);
        const pass = !!keptName && probes.length === 3 && gaps.every((g) => g < 900);
        record(id, pass, ann
          ? `${keptName ? 'kept' : 'gave up'} '${label(srvName(ann, 7001))}'; ${probes.length} probes (gaps ${gaps.map(ms).join(', ')}), our probe ${ms(ourFirst.t - first.t)} after its first`
          : `no announcement within 8 s; ${probes.length} probes of '${label(NAME)}'`);
      } else {
        // Deferral: no probe of the contested name for a second after our first (winning) probe.
        const grace = 50; // a probe already on its way when ours arrived
        const during = probes.filter((p) => p.t > ourFirst.t + grace && p.t < ourFirst.t + 1000);
        const announcedContested = announcedSrv(cap, TYPE, 7001).some((p) => srvName(p, 7001) === NAME);
        const pass = during.length === 0 && !announcedContested && !!ann && !keptName;
        const next = probes.find((p) => p.t > ourFirst.t + grace);
        record(id, pass, [
          during.length ? `probed '${label(NAME)}' again ${ms(during[0]!.t - ourFirst.t)} after losing` : `no probe of '${label(NAME)}' for ${next ? ms(next.t - ourFirst.t) : 'the rest of the run'} after losing`,
          announcedContested ? `announced the contested name` : ann ? `announced as '${label(srvName(ann, 7001))}' ${ms(ann.t - ourFirst.t)} after our probe` : 'no announcement within 8 s',
        ].join('; '));
      }
    },
  };
}

export const tiebreakWin = tiebreak('win');
export const tiebreakLose = tiebreak('lose');

export const probeDenial: Trial = {
  name: 'probe-denial',
  duts: ['ambassador', 'avahi'],
  budgetMs: 30_000,
  scenarios: [{ id: 'probe-denial', rfc: '6762 §8.1, §9', rule: 'a probe answered by the owner of the name makes us choose a new name, probe it and announce that' }],
  async run({ cap, peer, ambassador, targets, record }) {
    const TYPE = '_pd._tcp.local';
    const NAME = `deny.${TYPE}`;
    await targets([7001]);
    const defender = defend(cap, peer, (n) => (n === NAME ? peerInstance(NAME, 9) : undefined));
    await ambassador(['--advertise', 'pd=7001,instance=deny']);
    const ann = await cap.maybe((p) => mcastAnswer(p, srvOf(TYPE, 7001)), { timeoutMs: 15_000, what: 'an announcement' });
    defender.stop();
    const denial = defender.denials[0];
    const contested = announcedSrv(cap, TYPE, 7001).some((p) => srvName(p, 7001) === NAME);
    const newName = ann ? srvName(ann, 7001) : undefined;
    const newProbe = newName && newName !== NAME ? probesFor(cap, newName)[0] : undefined;
    const pass = !!denial && !!ann && newName !== NAME && !contested && !!newProbe;
    record('probe-denial', pass, !denial ? 'no probe of the name to deny'
      : !ann ? 'no announcement within 15 s after the denial'
        : `denied ${defender.denials.length}×; renamed '${label(newName!)}', probed ${newProbe ? ms(newProbe.t - denial.probe.t) : '–'} and announced ${ms(ann.t - denial.probe.t)} after the denial`);
  },
};

export const rateLimit: Trial = {
  name: 'conflict-rate-limit',
  duts: ['ambassador', 'avahi'],
  budgetMs: 45_000,
  scenarios: [{
    id: 'conflict-rate-limit', rfc: '6762 §8.1',
    rule: 'after 15 conflicts within 10 s, at least 5 s pass before each further probe attempt',
    timing: 'the 5 s hold-off is a lower bound (10 ms send jitter allowed); later is fine',
  }],
  async run({ cap, peer, ambassador, targets, record }) {
    const TYPE = '_rl._tcp.local';
    await targets([7001]);
    // Every instance name of the type is ours: each probe attempt is denied.
    const defender = defend(cap, peer, (n) => (n.endsWith('.' + TYPE) ? peerInstance(n, 9) : undefined));
    await ambassador(['--advertise', 'rl=7001,instance=rl']);
    // Attempts = distinct names probed; wait for the 17th (two attempts after the hold-off starts).
    const attempts = () => {
      const seen = new Map<string, Seen>();
      for (const p of cap.filter((x) => x.fromHost && isProbe(x))) {
        for (const q of p.msg!.questions) if (lower(q.name).endsWith('.' + TYPE) && !seen.has(lower(q.name))) seen.set(lower(q.name), p);
      }
      return [...seen.entries()];
    };
    const deadline = Date.now() + 35_000;
    while (attempts().length < 17 && Date.now() < deadline) await sleep(200);
    defender.stop();
    const list = attempts();
    const denialOf = (name: string) => defender.denials.find((d) => d.name === name)?.probe.t;
    const conflicts = list.map(([n]) => denialOf(n)).filter((t): t is number => t !== undefined);
    // Attempt k+1 (0-based k ≥ 15) is held off when 15 conflicts fell in the 10 s before the
    // k-th conflict; it must then come ≥ 5 s after that conflict.
    const holds: string[] = [];
    let applicable = 0;
    let pass = true;
    for (let k = 15; k < list.length; k++) {
      const conflictT = denialOf(list[k - 1]![0]);
      if (conflictT === undefined) continue;
      const inWindow = conflicts.filter((t) => t <= conflictT && t > conflictT - 10_000).length;
      if (inWindow < 15) continue;
      applicable++;
      const gap = list[k]![1].t - conflictT;
      holds.push(`attempt ${k + 1}: ${ms(gap)} after conflict ${k}`);
      if (!(gap >= 4990)) pass = false;
    }
    // Most conflicts in any 10 s window: a host that paces itself never reaches 15.
    const densest = Math.max(0, ...conflicts.map((t) => conflicts.filter((u) => u >= t && u < t + 10_000).length));
    if (applicable === 0 && densest >= 15) pass = false; // reached 15 but never tried again
    const first15 = conflicts.length >= 15 ? conflicts[14]! - list[0]![1].t : NaN;
    record('conflict-rate-limit', pass && list.length > 1, [
      `${conflicts.length} conflicts, at most ${densest} in 10 s${conflicts.length >= 15 ? ` (first 15 in ${ms(first15)})` : ''}`,
      applicable ? holds.join(', ') : densest < 15 ? 'never 15 in 10 s: paces itself' : 'no attempt after the 15th conflict',
    ].join('; '));
  },
};

/** §9: a conflicting record after announcing sends the name back to probing. */
function laterConflict(kind: 'srv' | 'a'): Trial {
  const id = kind === 'srv' ? 'conflict-after-announce-srv' : 'conflict-after-announce-a';
  const TYPE = `_c${kind}._tcp.local`;
  const NAME = kind === 'srv' ? `later.${TYPE}` : 'dut.local';
  return {
    name: id,
    duts: ['ambassador', 'avahi'],
    budgetMs: 30_000,
    scenarios: [{
      id, rfc: '6762 §9',
      rule: kind === 'srv'
        ? 'a conflicting SRV for an announced instance sends it back to probing that name (within 1 s); denied, it is renamed and announced again'
        : 'a conflicting A for our announced host name sends it back to probing that name (within 1 s); denied, the host is renamed and its A and SRV announced again',
    }],
    async run({ cap, peer, lab, ambassador, targets, record }) {
      await targets([7001]);
      await ambassador(['--advertise', `c${kind}=7001${kind === 'srv' ? ',instance=later' : ''}`]);
      await cap.waitFor((p) => mcastAnswer(p, srvOf(TYPE, 7001)), { timeoutMs: 15_000, what: 'announcement' });
      await waitAnnounced(cap);
      const claim: Rec[] = kind === 'srv' ? peerInstance(NAME, 9) : [{ name: NAME, type: 'A', ttl: 120, data: lab.gateway! }];
      const defender = defend(cap, peer, (n) => (n === NAME ? claim : undefined));
      const mark = cap.mark();
      const conflict = await cap.sent(await peer.send({ kind: 'response', answers: claim.map((r) => ({ ...r, flush: true })) }), mark);
      // Renamed and announced again: an SRV on our port under another name (kind srv), or an A
      // for our address under another host name (kind a).
      const dutIp = lab.host('dut').ip;
      const reannounced = await cap.maybe((p) => p.t > conflict.t && mcastAnswer(p, kind === 'srv'
        ? srvOf(TYPE, 7001, NAME)
        : (r) => r.type === 'A' && r.data === dutIp && lower(r.name) !== NAME), { timeoutMs: 10_000, what: 'renamed announcement' });
      await sleep(1200);
      defender.stop();
      const after = cap.filter((p) => p.fromHost && isProbe(p) && p.t > conflict.t);
      const firstProbe = after[0];
      const reprobedSame = !!firstProbe && asks(firstProbe, NAME);
      const quick = !!firstProbe && firstProbe.t - conflict.t <= 1000;
      let newName: string | undefined;
      let srvOk = true;
      if (reannounced && kind === 'srv') newName = srvName(reannounced, 7001);
      if (reannounced && kind === 'a') {
        newName = lower(reannounced.msg!.answers.find((r) => r.type === 'A' && r.data === dutIp)!.name);
        // The instance's SRV must follow the host to its new name.
        srvOk = multicastAnswers(cap, (r) => r.type === 'SRV' && lower((r.data as { target: string }).target) === newName, conflict.seq).length > 0;
      }
      const pass = reprobedSame && quick && !!reannounced && srvOk;
      const firstAsked = firstProbe?.msg!.questions.map((q) => label(lower(q.name))).join('+');
      record(id, pass, [
        firstProbe ? `first probe ${ms(firstProbe.t - conflict.t)} after the conflict, for '${firstAsked}'${reprobedSame ? '' : ` (not '${label(NAME)}': renamed without re-probing)`}` : 'no probe after the conflict',
        reannounced ? `announced as '${label(newName!)}' ${ms(reannounced.t - conflict.t)} after` : 'not announced again within 10 s',
        kind === 'a' && reannounced ? (srvOk ? 'SRV target follows' : 'SRV target not updated') : '',
      ].filter(Boolean).join('; '));
    },
  };
}

export const conflictSrv = laterConflict('srv');
export const conflictA = laterConflict('a');
