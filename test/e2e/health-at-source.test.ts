// Health checks that scale with the mesh, on a netns lab with real redis-server:
// - 20 idle connecting ambassadors: the redis behind an advertising ambassador sees only that
//   ambassador's own checks; the advertiser receives one small host probe per connector host.
// - A peer published by avahi-publish-service (no ambassador behind it) is still checked by the
//   connector itself and failed over.
// - check=redis: a SIGSTOPped redis still completes TCP handshakes (the kernel does), but does
//   not answer PING: the advertiser withdraws it, and a connector's own redis check drops it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { canUseNetns, haveCommand, Lab, startRedis, waitFor, type Host, type RedisServer } from '../lib/netns.js';
import { avahiPublish, canUseAvahi, startAvahi } from '../lib/avahi.js';
import {
  adminGet, type Amb, fmt, metricSum, redisConnectionsReceived, runLoop, sleep, startAdvertiser, startConnector, tagRedis, waitServedBy,
} from './ambassador-kit.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') && haveCommand('redis-cli') && haveCommand('curl') ? undefined : 'needs redis-server, redis-cli and curl');
const CONNECTORS = 20;
const IDLE_MS = 10_000;

describe('health at the source: 20 idle connectors', { skip }, () => {
  let lab: Lab;
  let db: Host;
  let redis: RedisServer;
  let adv: Amb;
  const conns: Amb[] = [];

  before(async () => {
    const names = Array.from({ length: CONNECTORS }, (_, i) => `c${i + 1}`);
    lab = await Lab.create({ hosts: ['db', ...names], prefix: 'hsrc' });
    db = lab.host('db');
    redis = await startRedis(db, { port: 7001 });
    ({ amb: adv } = await startAdvertiser(db, ['--advertise', 'redis=7001', '--admin', '9901']));
    // Started a few at a time: twenty node processes starting at once on a small machine would
    // stall everything for seconds.
    for (let i = 0; i < names.length; i += 5) {
      const batch = await Promise.all(names.slice(i, i + 5).map((n) => startConnector(lab.host(n), ['--connect', 'redis=6379'])));
      conns.push(...batch);
    }
    await Promise.all(conns.map((c) => c.waitLog({ msg: 'endpoint up', service: 'redis' }, { timeoutMs: 60_000 })));
  });
  after(async () => {
    await lab?.destroy();
  });

  test(`redis sees only the advertiser's own checks; host probes stay small`, async () => {
    // Past the start: every connector's host probes are answered (what follows is steady state).
    await waitFor(async () => metricSum(await adminGet(db, 9901, '/metrics'), 'ambassador_host_probe_replies_sent_total') >= CONNECTORS * 2,
      { timeoutMs: 20_000, intervalMs: 250, message: 'two host probes answered per connector' });
    // Redis counts connections, the advertiser counts its checks; each reading takes a process
    // start (redis-cli, curl), which can last seconds on a loaded machine. So the metrics are read
    // twice on each side of the redis window: the redis window lies inside [m0, m1] and contains
    // [m0b, m1b], and the check counts over those two windows bound what redis may have seen.
    const m0 = await adminGet(db, 9901, '/metrics');
    const r0 = await redisConnectionsReceived(redis);
    const a0 = Date.now();
    const m0b = await adminGet(db, 9901, '/metrics');
    const a1 = Date.now();
    await sleep(IDLE_MS); // the measuring window
    const b0 = Date.now();
    const m1b = await adminGet(db, 9901, '/metrics');
    const b1 = Date.now();
    const r1 = await redisConnectionsReceived(redis);
    const m1 = await adminGet(db, 9901, '/metrics');
    // [m0b, m1b] lasted at least b0 - a1 and at most b1 - a0
    const [minSecs, maxSecs] = [(b0 - a1) / 1000, (b1 - a0) / 1000];
    const secs = minSecs;
    const atRedis = r1 - r0 - 1; // the second INFO's own connection
    const checks = (a: string, b: string) => metricSum(b, 'ambassador_health_checks_total', { cluster: 'advertise:redis' })
      - metricSum(a, 'ambassador_health_checks_total', { cluster: 'advertise:redis' });
    const [outer, inner] = [checks(m0, m1), checks(m0b, m1b)];
    const probes = metricSum(m1b, 'ambassador_host_probe_requests_received_total') - metricSum(m0b, 'ambassador_host_probe_requests_received_total');
    const probeBytes = metricSum(m1b, 'ambassador_host_probe_request_bytes_received_total') - metricSum(m0b, 'ambassador_host_probe_request_bytes_received_total');
    const replies = metricSum(m1b, 'ambassador_host_probe_replies_sent_total') - metricSum(m0b, 'ambassador_host_probe_replies_sent_total');
    console.log(`# ${CONNECTORS} idle connectors, ${secs.toFixed(1)} s: redis accepted ${atRedis} connections (${(atRedis / secs).toFixed(1)}/s), ` +
      `the advertiser's own checks ${inner}..${outer} (inner and outer window); host probes received ${probes} (${(probes / secs).toFixed(1)}/s, ` +
      `${(probes / secs / CONNECTORS).toFixed(2)}/s per connector, ${Math.round(probeBytes / Math.max(1, probes))} bytes each), replies ${replies}`);
    // Only the advertiser's checks reach redis: what redis counted lies between the checks of
    // the inner and of the outer window (one check in flight at each edge).
    assert.ok(atRedis <= outer + 1, `redis saw ${atRedis}, the advertiser checked ${outer} times around that window`);
    assert.ok(atRedis >= inner - 1, `redis saw ${atRedis}, the advertiser checked ${inner} times within that window`);
    assert.ok(inner > 0, 'the advertiser checks its redis');
    // One probe per connector host every --health-interval (500 ms ± 10 %), a few more on a miss.
    assert.ok(probes / minSecs < CONNECTORS * 3, `${(probes / minSecs).toFixed(1)} probes/s at most`);
    assert.ok(probes / maxSecs > CONNECTORS * 1.5, `${(probes / maxSecs).toFixed(1)} probes/s at least: every connector probes`);
    assert.ok(replies >= probes * 0.99, 'every probe answered');
    // Each connector judges the endpoint by host probe, and has never checked it itself.
    const peers = JSON.parse(await adminGet(db, 9901, '/peers')) as { hostProbes: { answered: { port: number } } };
    assert.ok(peers.hostProbes.answered.port > 0);
    for (const c of conns) {
      const down = c.find({ msg: 'endpoint down' });
      const verdict = c.find((l) => typeof l.msg === 'string' && l.msg.startsWith('peer host'));
      assert.equal(down, undefined, `${c.host.name}: no endpoint went down (${JSON.stringify(down)} ${JSON.stringify(verdict)})`);
    }
  });
});

describe('a peer with no ambassador (avahi-publish-service) is still checked and failed over', { skip: skip ?? canUseAvahi() }, () => {
  let lab: Lab;
  let conn: Amb;

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c'], prefix: 'hsav' });
    const [a, b, c] = [lab.host('a'), lab.host('b'), lab.host('c')];
    const [ra, rb] = await Promise.all([startRedis(a, { port: 7001 }), startRedis(b, { port: 7002 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
    await startAvahi(a);
    await avahiPublish(a, 'redis on a', '_redis._tcp', 7001);
    await startAdvertiser(b, ['--advertise', 'redis=7002']);
    conn = await startConnector(c, ['--connect', 'redis=6379', '--admin', '9901']);
    await waitServedBy(c, 'a');
    await waitServedBy(c, 'b');
  });
  after(async () => {
    await lab?.destroy();
  });

  test('a (Avahi) by our own check, b by host probe; a\'s cable cut: out of rotation, no new connection fails', async () => {
    const c = lab.host('c');
    const peers = JSON.parse(await adminGet(c, 9901, '/peers')) as {
      clusters: Array<{ endpoints: Array<{ port: number; health: { from: string; ownCheck: unknown; hostProbe: unknown } }> }>;
    };
    const eps = peers.clusters[0]!.endpoints;
    const ea = eps.find((e) => e.port === 7001)!;
    const eb = eps.find((e) => e.port === 7002)!;
    assert.equal(ea.health.from, 'own-check');
    assert.equal(eb.health.from, 'host-probe');

    const loop = runLoop(c, { count: 600, parallel: 4, intervalMs: 20, deadlineMs: 12_000, timeoutMs: 10_000 });
    await loop.waitCount(40);
    const a = lab.host('a');
    // The cut lands while `ip link set down` runs: every request started before it returned may
    // have been in flight at the cut; the ones started after must not fail.
    const t0 = Date.now();
    await a.linkDown();
    const tCut = Date.now();
    try {
      const down = await conn.waitLog({ msg: 'endpoint down', address: `${a.ip}:7001` }, { since: t0, timeoutMs: 8000 });
      await loop.finished;
      const rs = loop.conns();
      const failed = rs.filter((r) => !r.ok);
      const after = rs.filter((r) => r.at > down.time + 50);
      console.log(`# avahi peer cut (${fmt(tCut - t0)} to cut): endpoint down at c after ${fmt(down.time - tCut)} (reason ${down.reason}); loop ${rs.length} connections, ` +
        `${failed.length} failed (${failed.map((f) => `${f.at - tCut} ms: ${f.err}`).join(', ')}); ${after.length} after detection, all b: ${after.every((r) => r.who === 'b')}`);
      assert.equal(down.reason, 'health-check');
      assert.ok(down.time - tCut < 5000);
      assert.ok(failed.every((r) => r.at < tCut), 'only requests in flight at the cut failed');
      assert.ok(after.length > 20 && after.every((r) => r.who === 'b'));
    } finally {
      await a.linkUp();
    }
  });
});

describe('check=redis: a frozen (SIGSTOPped) redis is caught', { skip }, () => {
  let lab: Lab;
  let ra: RedisServer;
  let advA: Amb;
  let conn: Amb;

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c'], prefix: 'hsrd' });
    const [a, b, c] = [lab.host('a'), lab.host('b'), lab.host('c')];
    let rb: RedisServer;
    [ra, rb] = await Promise.all([startRedis(a, { port: 7001 }), startRedis(b, { port: 7002 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
    [advA] = (await Promise.all([
      startAdvertiser(a, ['--advertise', 'redis=7001,check=redis']),
      startAdvertiser(b, ['--advertise', 'redis=7002,check=redis']),
    ])).map((x) => x.amb) as [Amb, Amb];
    // Two listeners: one through the advertisers (mDNS), one with --static endpoints that only
    // this connector's own check=redis can judge.
    conn = await startConnector(c, ['--connect', 'redis=6379', '--connect', `sredis=6380,check=redis`,
      '--static', `sredis=${a.ip}:7001+${b.ip}:7002`]);
    await waitServedBy(c, 'a');
    await waitServedBy(c, 'b');
    await waitServedBy(c, 'a', { port: 6380 });
    await waitServedBy(c, 'b', { port: 6380 });
  });
  after(async () => {
    if (ra?.process.running) ra.process.kill('SIGCONT');
    await lab?.destroy();
  });

  test('SIGSTOP a\'s redis: its advertiser withdraws it, the static endpoint fails our PING; clients go to b; SIGCONT brings it back', async () => {
    const c = lab.host('c');
    const aAddr = `${lab.host('a').ip}:7001`;
    const t0 = Date.now();
    ra.process.kill('SIGSTOP');
    try {
      const withdrawn = await advA.waitLog({ msg: 'advertisement', state: 'withdrawn' }, { since: t0, timeoutMs: 8000 });
      const downM = await conn.waitLog({ msg: 'endpoint down', service: 'redis', address: aAddr }, { since: t0, timeoutMs: 8000 });
      const downS = await conn.waitLog({ msg: 'endpoint down', service: 'sredis', address: aAddr }, { since: t0, timeoutMs: 8000 });
      console.log(`# SIGSTOP: a withdrew after ${fmt(withdrawn.time - t0)} (${withdrawn.reason}); at c: via mDNS down after ${fmt(downM.time - t0)} ` +
        `(${downM.reason}), static down after ${fmt(downS.time - t0)} (${downS.reason})`);
      assert.equal(downS.reason, 'health-check');
      assert.ok(['goodbye', 'source-check'].includes(String(downM.reason)));
      for (const port of [6379, 6380]) {
        const loop = runLoop(c, { port, count: 20, intervalMs: 10, deadlineMs: 10_000, timeoutMs: 5000 });
        const s = await loop.finished;
        assert.deepEqual(s, { total: 20, ok: 20, failed: 0, byWho: { b: 20 } }, `port ${port}: all served by b`);
      }
    } finally {
      ra.process.kill('SIGCONT');
    }
    await waitServedBy(c, 'a', { timeoutMs: 10_000 });
    await waitServedBy(c, 'a', { port: 6380, timeoutMs: 10_000 });
  });
});
