// An endpoint whose service port drops SYNs, while its host and its ambassador stay fine: a
// firewall rule on the service's host, as a newcomer would meet it. Host probes keep answering,
// so nothing but the failed connects can tell; every connect there loses its race against the
// other replica. Those lost connects must still count: the endpoint is ejected once two of them
// timed out (--connect-timeout), instead of every second request paying --race-delay for ever.
//
// a, b: redis :7000 (tagged a / b) behind `ambassador --advertise pri=7000`
// c:    `ambassador --connect pri=7852 --admin 9924`; b drops SYNs from c to port 7000.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { canUseNetns, haveCommand, Lab, startRedis, type Host } from '../lib/netns.js';
import { adminGet, type Amb, fmt, metricSum, runLoop, startAdvertiser, startConnector, tagRedis, waitServedBy } from './ambassador-kit.js';

const skip = canUseNetns() ??
  (haveCommand('redis-server') && haveCommand('redis-cli') && haveCommand('iptables') && haveCommand('curl')
    ? undefined : 'needs redis-server, redis-cli, iptables and curl');

const RACE_DELAY = 250;

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
}

describe('an endpoint whose port drops SYNs', { skip }, () => {
  let lab: Lab;
  let b: Host;
  let c: Host;
  let conn: Amb;

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c'], prefix: 'fw' });
    const a = lab.host('a');
    [b, c] = [lab.host('b'), lab.host('c')];
    const [ra, rb] = await Promise.all([startRedis(a, { port: 7000 }), startRedis(b, { port: 7000 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
    conn = await startConnector(c, ['--connect', 'pri=7852', '--admin', '9924']);
    await Promise.all([startAdvertiser(a, ['--advertise', 'pri=7000']), startAdvertiser(b, ['--advertise', 'pri=7000'])]);
    await waitServedBy(c, 'a', { port: 7852 });
    await waitServedBy(c, 'b', { port: 7852 });
  });
  after(async () => {
    await lab?.destroy();
  });

  test('is ejected after two timed-out connects, though every one lost its race; requests then stop paying the race delay', async () => {
    await b.run('iptables', ['-A', 'INPUT', '-s', c.ip, '-p', 'tcp', '--dport', '7000', '--syn', '-j', 'DROP']);
    const t0 = Date.now();
    const loop = runLoop(c, { port: 7852, count: 400, intervalMs: 20, deadlineMs: 12_000, timeoutMs: 5000 });
    const down = await conn.waitLog({ msg: 'endpoint down', address: `${b.ip}:7000` }, { since: t0, timeoutMs: 12_000 });
    await loop.waitCount(loop.conns().filter((r) => r.at < down.time).length + 10);
    // The first ejection lasts 1 s: requests started within it go straight to a.
    const up = conn.find({ msg: 'endpoint up', address: `${b.ip}:7000` }, down.time);
    const metrics = await adminGet(c, 9924, '/metrics');
    await loop.stop();
    const rs = loop.conns();
    const before = rs.filter((r) => r.end < down.time);
    const ejected = rs.filter((r) => r.at > down.time && (up === undefined || r.end < up.time));
    const timeouts = metricSum(metrics, 'ambassador_connect_failures_total', { endpoint: `pri@b`, code: 'ETIMEDOUT' });
    const raced = (xs: typeof rs) => xs.filter((r) => r.ms >= RACE_DELAY).length;
    console.log(`# SYNs to b:7000 dropped: endpoint down at c after ${fmt(down.time - t0)} (reason ${down.reason}), ` +
      `${timeouts} timed-out connects to b counted. Before the ejection: ${before.length} requests, ${raced(before)} of them ` +
      `>= ${RACE_DELAY} ms (the race delay), median ${fmt(median(before.map((r) => r.ms)))}, max ${fmt(Math.max(...before.map((r) => r.ms)))}; ` +
      `while ejected: ${ejected.length} requests, ${raced(ejected)} >= ${RACE_DELAY} ms, median ${fmt(median(ejected.map((r) => r.ms)))}, ` +
      `max ${fmt(Math.max(...ejected.map((r) => r.ms)))}`);
    assert.equal(down.reason, 'outlier');
    // Two lost attempts time out after --connect-timeout (3 s): bounded with a loaded machine's margin.
    assert.ok(down.time - t0 < 8000, `ejected ${down.time - t0} ms after the firewall rule`);
    assert.ok(timeouts >= 2, `timed-out connects counted: ${timeouts}`);
    assert.equal(rs.filter((r) => !r.ok).length, 0, 'no request failed');
    assert.ok(ejected.length >= 5, `requests while ejected: ${ejected.length}`);
    assert.ok(median(ejected.map((r) => r.ms)) < RACE_DELAY, 'while ejected, requests are not raced');
    // Round-robin: a race away from b does not move the rotation, so b is every second client's first try, not every one's.
    assert.ok(raced(before) <= Math.ceil(before.length / 2) + 1, `${raced(before)} of ${before.length} requests raced before the ejection`);
  });
});
