// Live networks (issue 11): the dut's link changes under a running advertiser. Renumbering (a new
// address added, the old one deleted) must be announced at once with the cache-flush bit, in one
// packet with the goodbye of the old address, and nothing probed again (the name is ours on
// that link already); a link that goes down and comes back must settle before its names are
// probed again (echoes of our own packets are no rival, RFC 6762 §8, §13), and keep its names.
import { lower } from '../lib/dns.js';
import { isProbe, ms, probesFor, waitAnnounced } from '../lib/observe.js';
import { sleep, type Trial } from '../lib/trial.js';

export const liveNetwork: Trial[] = [{
  name: 'address-change',
  budgetMs: 40_000,
  scenarios: [
    {
      id: 'address-change-announce', rfc: '6762 §10.2, §10.1; issue 11',
      rule: 'a renumbered host announces its new address with the cache-flush bit, in the same packet as the goodbye (TTL 0) of the old one, within 2 s of the change (interfaces are looked at once a second), and once more ≥ 1 s later',
      timing: 'the 2 s bound is the 1 s interface poll plus a second for a loaded machine',
    },
    {
      id: 'address-change-quiet', rfc: '6762 §8; issue 11',
      rule: 'renumbering a link whose names are ours costs at most 3 packets in 3 s, no probe, no rename',
    },
  ],
  async run({ dut, cap, ambassador, targets, record }) {
    await dut.sysctl('net.ipv4.conf.all.promote_secondaries', '1');
    await dut.sysctl(`net.ipv4.conf.${dut.ifname}.promote_secondaries`, '1');
    await targets([7001]);
    await ambassador(['--advertise', 'ren=7001']);
    await cap.waitFor((p) => p.fromHost && p.msg?.kind === 'response' && p.msg.answers.some((r) => r.type === 'SRV'), { timeoutMs: 15_000, what: 'announcement' });
    await waitAnnounced(cap);
    const oldIp = dut.ip;
    const newIp = oldIp.replace(/\.\d+$/, '.201');
    const mark = cap.mark();
    await dut.addAddress(`${newIp}/24`);
    await dut.delAddress(`${oldIp}/24`);
    const changedAt = Date.now();
    const isA = (r: { name: string; type: string }) => lower(r.name) === 'dut.local' && r.type === 'A';
    const first = await cap.maybe((p) => p.fromHost && p.multicast && p.msg?.kind === 'response' && p.msg.answers.some((r) => isA(r) && r.data === newIp), { since: mark, timeoutMs: 5000 });
    await sleep(3000);
    const after = cap.filter((p) => p.fromHost && p.multicast, mark);
    const announcing = after.filter((p) => p.msg?.kind === 'response' && p.msg.answers.some((r) => isA(r) && r.data === newIp && r.ttl > 0));
    const newA = first?.msg?.answers.find((r) => isA(r) && r.data === newIp);
    const oldBye = first?.msg?.answers.find((r) => isA(r) && r.data === oldIp && r.ttl === 0);
    const gap = announcing.length >= 2 ? announcing[1]!.t - announcing[0]!.t : NaN;
    const delay = first ? first.t - changedAt : Infinity;
    record('address-change-announce', !!newA?.flush && !!oldBye && delay <= 2000 && gap >= 990,
      !first ? `no announcement of ${newIp} within 5 s`
        : `new A ${newA?.flush ? 'with' : 'WITHOUT'} cache-flush ${ms(delay)} after the change, ${oldBye ? 'goodbye of the old A in the same packet' : 'NO goodbye of the old A in that packet'}; repeated ${Number.isFinite(gap) ? `${ms(gap)} later` : 'never'}`);
    const probes = after.filter(isProbe);
    const renamed = after.some((p) => p.msg?.kind === 'response' && p.msg.answers.some((r) => /^dut-\d+\.local$/i.test(r.name)));
    record('address-change-quiet', after.length <= 3 && probes.length === 0 && !renamed,
      `${after.length} packets in 3 s (${probes.length} probes)${renamed ? ', RENAMED' : ''}`);
  },
}, {
  name: 'link-up',
  budgetMs: 45_000,
  scenarios: [
    {
      id: 'link-up-settle', rfc: '6762 §8.1, §13; issue 11',
      rule: 'a link back up waits ≥ 500 ms before probing, then probes every name 3 times and announces them again under the same names',
      timing: 'lower bound firm; the link is seen by the next 1 s look at the interfaces',
    },
  ],
  async run({ dut, cap, ambassador, targets, record }) {
    await targets([7001]);
    await ambassador(['--advertise', 'lu=7001']);
    await cap.waitFor((p) => p.fromHost && p.msg?.kind === 'response' && p.msg.answers.some((r) => r.type === 'SRV'), { timeoutMs: 15_000, what: 'announcement' });
    await waitAnnounced(cap);
    await dut.linkDown('host');
    await sleep(2000); // seen down (the next look)
    const mark = cap.mark();
    await dut.linkUp('host');
    const upAt = Date.now();
    const inst = 'lu@dut._lu._tcp.local';
    const announced = await cap.maybe((p) => p.fromHost && p.msg?.kind === 'response' && p.msg.answers.some((r) => lower(r.name) === inst && r.type === 'SRV' && r.ttl > 0), { since: mark, timeoutMs: 8000 });
    const host = probesFor(cap, 'dut.local', mark);
    const svc = probesFor(cap, inst, mark);
    const firstProbe = Math.min(...[...host, ...svc].map((p) => p.t));
    const renamed = cap.filter((p) => p.fromHost && isProbe(p), mark).some((p) => p.msg!.questions.some((q) => /^dut-\d+\.local$|\(\d+\)/i.test(q.name)));
    const ok = !!announced && host.length >= 3 && svc.length >= 3 && firstProbe - upAt >= 500 && !renamed;
    record('link-up-settle', ok, !announced ? 'not announced again within 8 s of link-up'
      : `first probe ${ms(firstProbe - upAt)} after link-up, ${host.length} probes of the host name, ${svc.length} of the instance, announced ${ms(announced.t - upAt)} after${renamed ? ', RENAMED' : ''}`);
  },
}];
