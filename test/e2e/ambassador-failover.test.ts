// Ambassador end to end: fail over under load. a and b run redis-server (tagged a / b) behind
// `ambassador --advertise redis=PORT`; c runs `ambassador --connect redis=6379` and a bounded loop
// of new client connections (each SET + GET whoami). The tests take a away in every way the design
// names — target stops accepting (health gating), SIGTERM (goodbyes), kill -9 of ambassador and
// redis, a cut cable — and count failed connections, printing how fast c noticed.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, type RedisServer, canUseNetns, haveCommand, startRedis } from '../lib/netns.js';
import {
  type Amb, type ClientLoop, type ConnResult, fmt, runLoop, startAdvertiser, startConnector, tagRedis, waitServedBy,
} from './ambassador-kit.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') && haveCommand('redis-cli') ? undefined : 'redis-server/redis-cli not installed');

const FAST = ['--health-interval', '500'];

function report(name: string, loop: ClientLoop, t0: number): { failed: ConnResult[]; slow: ConnResult[] } {
  const rs = loop.conns();
  const failed = rs.filter((r) => !r.ok);
  const slow = rs.filter((r) => r.ok && r.ms > 500);
  const maxMs = Math.max(0, ...rs.map((r) => r.ms));
  const s = loop.summary();
  console.log(`# ${name}: ${s.total} connections, ${s.failed} failed, by backend ${JSON.stringify(s.byWho)}, ` +
    `${slow.length} slower than 500 ms (max ${fmt(maxMs)}${slow.length ? `, last slow one started ${fmt(slow.at(-1)!.at - t0)} after the event` : ''})`);
  for (const f of failed.slice(0, 5)) console.log(`#   failed: started ${fmt(f.at - t0)} after the event, ${f.err}`);
  return { failed, slow };
}

describe('ambassador: failover under a client loop', { skip }, () => {
  let lab: Lab;
  let ra: RedisServer;
  let rb: RedisServer;
  let advA: Amb;
  let conn: Amb;
  const aAddr = () => `${lab.host('a').ip}:7001`;

  /** Brings a's redis and advertiser back (as needed) and waits until c uses a again. */
  async function restoreA(): Promise<number> {
    const a = lab.host('a');
    const t0 = Date.now();
    if (!ra.process.running) {
      ra = await startRedis(a, { port: 7001 });
      await tagRedis(ra, 'a');
    }
    if (!advA.proc.running) advA = (await startAdvertiser(a, ['--advertise', 'redis=7001', ...FAST])).amb;
    await waitServedBy(lab.host('c'), 'a', { timeoutMs: 15_000 });
    return Date.now() - t0;
  }

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c'] });
    const [a, b, c] = [lab.host('a'), lab.host('b'), lab.host('c')];
    [ra, rb] = await Promise.all([startRedis(a, { port: 7001 }), startRedis(b, { port: 7002 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
    conn = await startConnector(c, ['--connect', 'redis=6379', ...FAST]);
    [advA] = (await Promise.all([
      startAdvertiser(a, ['--advertise', 'redis=7001', ...FAST]),
      startAdvertiser(b, ['--advertise', 'redis=7002', ...FAST]),
    ])).map((x) => x.amb) as [Amb, Amb];
    await waitServedBy(c, 'a');
    await waitServedBy(c, 'b');
  });
  after(async () => {
    await lab?.destroy();
  });

  test('health gating: a\'s redis stops → a withdraws, c stops using it; redis back → a re-announces, c uses it', async () => {
    const c = lab.host('c');
    const loop = runLoop(c, { count: 1500, intervalMs: 10, deadlineMs: 25_000, timeoutMs: 10_000 });
    await loop.waitCount(20);
    const t0 = Date.now();
    await ra.stop();
    // redis shuts down while stop() waits for its exit: a request started before that may have
    // been in flight on it; one started later must not fail
    const tStopped = Date.now();
    const withdrawn = await advA.waitLog({ msg: 'advertisement', state: 'withdrawn' }, { since: t0, timeoutMs: 8000 });
    const down = await conn.waitLog({ msg: 'endpoint down', address: aAddr() }, { since: t0, timeoutMs: 8000 });
    const downAt = down.time;
    // after the endpoint is gone, c does not even try a
    await loop.waitCount(loop.conns().length + 30);
    const retriesAfter = conn.findAll({ msg: 'connect failed, retrying on next endpoint' }, downAt + 50).length;
    const retriesBefore = conn.findAll({ msg: 'connect failed, retrying on next endpoint' }, t0).length - retriesAfter;
    console.log(`# health gating: redis on a stopped → a withdrew after ${fmt(withdrawn.time - t0)} (${withdrawn.reason}); ` +
      `endpoint down at c after ${fmt(downAt - t0)} (reason ${down.reason}); connects retried on b: ${retriesBefore} before, ${retriesAfter} after`);
    assert.ok(withdrawn.time - t0 < 5000);
    assert.ok(downAt - t0 < 5000);
    assert.equal(retriesAfter, 0);

    const t1 = Date.now();
    ra = await startRedis(lab.host('a'), { port: 7001 });
    await tagRedis(ra, 'a');
    const back = await advA.waitLog({ msg: 'advertisement', state: 'announced' }, { since: t1, timeoutMs: 8000 });
    const up = await conn.waitLog({ msg: 'endpoint up', address: aAddr() }, { since: t1, timeoutMs: 8000 });
    const t2 = Date.now();
    await loop.waitCount(loop.conns().filter((r) => r.at <= t2).length + 20);
    await loop.stop();
    const servedA = loop.conns().find((r) => r.at > up.time && r.who === 'a');
    console.log(`# health gating: redis on a restarted → a announced again after ${fmt(back.time - t1)}, endpoint up at c after ${fmt(up.time - t1)}, ` +
      `first connection served by a ${fmt(servedA && servedA.end - t1)}`);
    const { failed } = report('health gating loop', loop, t0);
    assert.ok(servedA, 'c uses a again');
    // at most a request in flight on redis as it shut down; no connection started later fails
    assert.ok(failed.every((r) => r.at < tStopped), 'no new connection failed');
    const mid = loop.conns().filter((r) => r.at > downAt + 50 && r.end < up.time);
    assert.ok(mid.length > 0 && mid.every((r) => r.who === 'b'), 'only b while a was withdrawn');
  });

  test('graceful failover: SIGTERM of a\'s ambassador under 300 new connections loses none', async () => {
    const c = lab.host('c');
    console.log(`# (a in service again after ${fmt(await restoreA())})`);
    const loop = runLoop(c, { count: 300, parallel: 8, intervalMs: 2, deadlineMs: 30_000, timeoutMs: 10_000 });
    await loop.waitCount(30);
    const t0 = Date.now();
    const st = await advA.stop();
    const exitMs = Date.now() - t0;
    const down = await conn.waitLog({ msg: 'endpoint down', address: aAddr() }, { since: t0, timeoutMs: 5000 });
    await loop.finished;
    const { failed } = report('graceful failover loop', loop, t0);
    const afterDown = loop.conns().filter((r) => r.at > down.time + 20);
    console.log(`# graceful failover: a's ambassador exit ${st.code} after ${fmt(exitMs)}; endpoint down at c ${fmt(down.time - t0)} after SIGTERM (reason ${down.reason}); ` +
      `${afterDown.length} connections after that, all to b: ${afterDown.every((r) => r.who === 'b')}`);
    assert.equal(st.code, 0);
    assert.equal(failed.length, 0);
    assert.ok(down.time - t0 < 2000);
    assert.ok(afterDown.length > 50 && afterDown.every((r) => r.who === 'b'));
  });

  test('hard failover: kill -9 of a\'s ambassador and redis → no new connection fails', async () => {
    const c = lab.host('c');
    console.log(`# (a in service again after ${fmt(await restoreA())})`);
    const loop = runLoop(c, { count: 400, parallel: 4, intervalMs: 10, deadlineMs: 30_000, timeoutMs: 10_000 });
    await loop.waitCount(40);
    const t0 = Date.now();
    advA.proc.kill('SIGKILL');
    ra.process.kill('SIGKILL');
    // dead (their sockets closed by the kernel) once both exits are seen
    await Promise.all([advA.proc.exited, ra.process.exited]);
    const tDead = Date.now();
    const down = await conn.waitLog({ msg: 'endpoint down', address: aAddr() }, { since: t0, timeoutMs: 8000 });
    await loop.finished;
    const { failed } = report('kill -9 loop', loop, t0);
    const retried = conn.findAll({ msg: 'connect failed, retrying on next endpoint', from: 'redis@a' }, t0);
    console.log(`# kill -9: endpoint down at c after ${fmt(down.time - t0)} (reason ${down.reason}); ${retried.length} connects refused by a and retried on b, ` +
      `the last ${fmt(retried.length ? retried.at(-1)!.time - t0 : undefined)} after the kill`);
    assert.ok(down.time - t0 < 5000, 'detection bounded');
    // Requests in flight on a's redis when it died are lost (nothing can save those); a new
    // connection refused by a is retried on b before the client notices.
    assert.equal(failed.filter((r) => r.at > down.time).length, 0, 'no failure after detection');
    assert.ok(failed.every((r) => r.at < tDead), 'only connections already in flight at the kill failed');
  });

  test('TTL expiry: kill -9 of a\'s ambassador alone (redis stays up) → c checks a itself, drops it when its records expire (--ttl 2)', async () => {
    const c = lab.host('c');
    await restoreA();
    await advA.stop();
    advA = (await startAdvertiser(lab.host('a'), ['--advertise', 'redis=7001', '--ttl', '2', ...FAST])).amb;
    await waitServedBy(c, 'a');
    const loop = runLoop(c, { count: 2000, intervalMs: 10, deadlineMs: 20_000, timeoutMs: 10_000 });
    await loop.waitCount(20);
    const t0 = Date.now();
    advA.proc.kill('SIGKILL');
    const down = await conn.waitLog({ msg: 'endpoint down', address: aAddr() }, { since: t0, timeoutMs: 8000 });
    await loop.waitCount(loop.conns().filter((r) => r.at <= Date.now()).length + 30);
    await loop.stop();
    const { failed } = report('TTL expiry loop', loop, t0);
    const lastA = [...loop.conns()].reverse().find((r) => r.who === 'a');
    const orphaned = conn.find({ msg: /its ambassador is gone/ }, t0);
    console.log(`# TTL expiry: a's ambassador killed (no goodbye, redis still up) → c checks a itself after ${fmt(orphaned && orphaned.time - t0)}; ` +
      `endpoint down at c after ${fmt(down.time - t0)} (reason ${down.reason}); last connection served by a started ${fmt(lastA && lastA.at - t0)} after the kill`);
    // a's host answers the host probe with "port unreachable": nobody vouches for its redis any
    // more, so c checks it itself (it still serves) until the records expire.
    assert.ok(orphaned, 'c took over the checks of a');
    assert.equal(down.reason, 'removed');
    assert.ok(down.time - t0 < 4000, 'within the 2 s TTL (+ slack)');
    assert.equal(failed.length, 0);
    assert.ok(loop.conns().filter((r) => r.at > down.time + 20).every((r) => r.who === 'b'));
  });

  test('hard failover: a\'s cable cut → no new connection fails; slow ones only until detection', async () => {
    const c = lab.host('c');
    const a = lab.host('a');
    console.log(`# (a in service again after ${fmt(await restoreA())})`);
    // 8 clients at a time, so that some start while c has not noticed yet
    const loop = runLoop(c, { count: 600, parallel: 8, intervalMs: 20, deadlineMs: 30_000, timeoutMs: 10_000 });
    await loop.waitCount(40);
    // The cut lands while `ip link set down` runs: requests started before it returned may have
    // been in flight at the cut; detection is timed from the moment the cut is surely in place.
    const t0 = Date.now();
    await a.linkDown();
    const tCut = Date.now();
    try {
      const down = await conn.waitLog({ msg: 'endpoint down', address: aAddr() }, { since: t0, timeoutMs: 8000 });
      await loop.finished;
      const { failed, slow } = report('cable cut loop', loop, tCut);
      const lastSlow = slow.at(-1);
      console.log(`# cable cut (${fmt(tCut - t0)} to cut): endpoint down at c after ${fmt(down.time - tCut)} (reason ${down.reason}); ` +
        `connections slowed by a connect timeout + retry: ${slow.length}, the last started ${fmt(lastSlow && lastSlow.at - tCut)} after the cut`);
      // host probes: ~0.8 s of silence after the first unanswered probe (one interval at most)
      assert.ok(down.time - tCut < 3000, 'detection bounded');
      // a request in flight to a at the cut never gets its reply: that connection is closed once a
      // is found dead; every connection started later succeeds
      assert.ok(failed.every((r) => r.at < tCut), 'only connections in flight at the cut failed');
      // nothing started after detection waits for a dead peer: one still tried would hold up every
      // connection sent its way (half of them, by rotation) by a connect race; a loaded machine
      // slows a few at random (7 of 575 at load average 15), so the bound is one in ten
      const afterDetection = loop.conns().filter((r) => r.at > down.time + 100);
      const slowAfter = slow.filter((r) => r.at > down.time + 100);
      assert.ok(slowAfter.length <= afterDetection.length / 10,
        `${slowAfter.length} of the ${afterDetection.length} connections started after detection were slower than 500 ms`);
    } finally {
      await a.linkUp();
    }
  });
});
