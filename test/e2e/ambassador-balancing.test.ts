// Ambassador end to end: how new connections spread over the instances announcing a service, per
// balancing strategy. a and b each run redis-server (tagged: key `whoami` = a / b) behind one
// advertiser that announces `redis` and `redisp` (the latter with SRV priority 0 on a, 10 on b);
// c runs one connector per strategy, so every connection tells which backend served it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, type RedisServer, canUseNetns, haveCommand, startRedis, waitFor } from '../lib/netns.js';
import { type Amb, type ConnResult, fmt, runLoop, startAdvertiser, startConnector, tagRedis } from './ambassador-kit.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') && haveCommand('redis-cli') ? undefined : 'redis-server/redis-cli not installed');

const seq = (rs: ConnResult[]) => rs.map((r) => (r.ok ? r.who : 'x')).join('');

describe('ambassador: balancing', { skip }, () => {
  let lab: Lab;
  let ra: RedisServer;
  let rb: RedisServer;
  let advA: Amb;
  let conn: Amb;

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c'] });
    const [a, b, c] = [lab.host('a'), lab.host('b'), lab.host('c')];
    [ra, rb] = await Promise.all([startRedis(a, { port: 7001 }), startRedis(b, { port: 7002 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
    conn = await startConnector(c, [
      '--connect', 'redis=6379',
      '--connect', 'redis=6380,balance=least-conn',
      '--connect', 'redis=6381,balance=random',
      '--connect', 'redisp=6382,balance=srv',
      '--connect', 'redis=6383,where.zone=east',
      '--health-interval', '500',
    ]);
    const fast = ['--health-interval', '500'];
    [advA] = (await Promise.all([
      startAdvertiser(a, ['--advertise', 'redis=7001,txt.zone=east', '--advertise', 'redisp=7001,priority=0', ...fast]),
      startAdvertiser(b, ['--advertise', 'redis=7002,txt.zone=west', '--advertise', 'redisp=7002,priority=10', ...fast]),
    ])).map((x) => x.amb) as [Amb, Amb];
    // every connector sees its endpoints: 3 redis connectors × 2, the where.zone=east one × 1, redisp × 2
    await waitFor(() => conn.findAll({ msg: 'endpoint up' }).length >= 9,
      { timeoutMs: 10_000, message: `all endpoints up at c: ${conn.proc.output.slice(-2000)}` });
  });
  after(async () => {
    await lab?.destroy();
  });

  test('round-robin (default): new connections alternate between a and b', async () => {
    const loop = runLoop(lab.host('c'), { port: 6379, count: 40, intervalMs: 5, deadlineMs: 30_000 });
    const s = await loop.finished;
    console.log(`# round-robin, 40 connections: ${JSON.stringify(s.byWho)} sequence ${seq(loop.conns())}`);
    assert.equal(s.failed, 0);
    assert.equal(s.byWho.a, 20);
    assert.equal(s.byWho.b, 20);
    const rs = loop.conns();
    for (let i = 1; i < rs.length; i++) assert.notEqual(rs[i]!.who, rs[i - 1]!.who, `alternates: ${seq(rs)}`);
  });

  test('least-conn: new connections go to the backend with fewer open connections', async () => {
    // three long-lived connections: a, b, a (ties rotate) → a has 2 open, b 1
    // A short connection counts as open until both its sides are closed: after the client closes,
    // that takes the ambassador a round trip to the server (FIN forwarded, FIN back), a few ms on
    // a loaded machine. The next short connection waits well beyond that (100 ms), else it may
    // find a tie and go to the other backend (seen with 5 ms under load, before and after
    // the per-connection fast path, on Node 20 and 24).
    const loop = runLoop(lab.host('c'), { port: 6380, hold: 3, count: 20, intervalMs: 100, deadlineMs: 30_000 });
    const s = await loop.finished;
    const held = loop.results().filter((r) => r.held).map((r) => r.who).join('');
    console.log(`# least-conn: held ${held}; then 20 short connections: ${JSON.stringify(s.byWho)}`);
    assert.equal(s.failed, 0);
    const heldA = [...held].filter((w) => w === 'a').length;
    const fewer = heldA > held.length - heldA ? 'b' : 'a';
    assert.equal(s.byWho[fewer], 20, `all to ${fewer}: ${seq(loop.conns())}`);
    // with nothing held, equal counts: ties rotate, both get a share
    const loop2 = runLoop(lab.host('c'), { port: 6380, count: 20, intervalMs: 5, deadlineMs: 30_000 });
    const s2 = await loop2.finished;
    console.log(`# least-conn, nothing held, 20 connections: ${JSON.stringify(s2.byWho)}`);
    assert.ok((s2.byWho.a ?? 0) >= 5 && (s2.byWho.b ?? 0) >= 5);
  });

  test('random: both backends get a share, not in strict alternation', async () => {
    const loop = runLoop(lab.host('c'), { port: 6381, count: 60, intervalMs: 5, deadlineMs: 30_000 });
    const s = await loop.finished;
    const rs = loop.conns();
    let repeats = 0;
    for (let i = 1; i < rs.length; i++) if (rs[i]!.who === rs[i - 1]!.who) repeats++;
    console.log(`# random, 60 connections: ${JSON.stringify(s.byWho)}, ${repeats} repeats of the previous backend; ${seq(rs)}`);
    assert.equal(s.failed, 0);
    // P(one side < 10 of 60) ≈ 1e-7; P(no repeat in 60 fair coin flips) = 2^-59
    assert.ok((s.byWho.a ?? 0) >= 10 && (s.byWho.b ?? 0) >= 10);
    assert.ok(repeats > 0);
  });

  test('where.zone=east: only instances whose TXT says zone=east', async () => {
    const loop = runLoop(lab.host('c'), { port: 6383, count: 10, intervalMs: 5, deadlineMs: 30_000 });
    const s = await loop.finished;
    console.log(`# where.zone=east, 10 connections: ${JSON.stringify(s.byWho)}`);
    assert.deepEqual(s.byWho, { a: 10 });
  });

  test('srv: everything to priority 0 (a) while it is up, to b once a goes away', async () => {
    const c = lab.host('c');
    const loop = runLoop(c, { port: 6382, count: 30, intervalMs: 5, deadlineMs: 30_000 });
    const s = await loop.finished;
    console.log(`# srv (a priority 0, b priority 10), 30 connections: ${JSON.stringify(s.byWho)}`);
    assert.deepEqual(s.byWho, { a: 30 });

    // a's ambassador stops (goodbyes); a's redis keeps running, so only discovery moves traffic
    const loop2 = runLoop(c, { port: 6382, count: 400, intervalMs: 10, deadlineMs: 20_000 });
    await loop2.waitCount(10);
    const t0 = Date.now();
    await advA.stop();
    const stoppedAt = Date.now();
    await waitFor(() => loop2.conns().filter((r) => r.at > stoppedAt && r.who === 'b').length >= 20,
      { timeoutMs: 10_000, message: 'connections served by b after a left' });
    await loop2.stop();
    const rs = loop2.conns();
    const firstB = rs.find((r) => r.who === 'b');
    const lastA = [...rs].reverse().find((r) => r.who === 'a');
    const down = conn.find({ msg: 'endpoint down', service: 'redisp', address: `${lab.host('a').ip}:7001` });
    console.log(`# srv: SIGTERM of a's ambassador → endpoint down at c ${fmt(down && down.time - t0)}, first connection served by b ${fmt(firstB && firstB.at - t0)}; ` +
      `last served by a started ${fmt(lastA && lastA.at - t0)}; ${JSON.stringify(loop2.summary().byWho)}, failed ${loop2.summary().failed}`);
    assert.equal(loop2.summary().failed, 0);
    assert.ok(firstB && lastA && firstB.at > lastA.at, `b only after a: ${seq(rs)}`);
    assert.ok(rs.filter((r) => r.at > firstB.at).every((r) => r.who === 'b'), 'never back to a');
    assert.ok(firstB.at - t0 < 5000);
  });
});
