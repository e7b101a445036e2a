// Lossy links, on a netns lab with real redis-server: every host drops a share of the
// packets it receives on its lab interface (iptables statistic match; this kernel has no netem).
//
// a: redis :7001 behind `--advertise one=7001 --advertise two=7001`
// b: redis :7002 behind `--advertise two=7002`
// c: `--connect one=6379` (one replica) and `--connect two=6380` (two replicas), and the clients:
//    bounded loops of one new connection per request (SET + GET, 3 s client timeout), direct to
//    a's and b's redis and through the ambassador, side by side in the same run.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { canUseNetns, haveCommand, Lab, startRedis, type Host, type RedisServer } from '../lib/netns.js';
import {
  type Amb, type ClientLoop, fmt, type LogLine, runLoop, startAdvertiser, startConnector, tagRedis, waitServedBy,
} from './ambassador-kit.js';

const skip = canUseNetns() ??
  (haveCommand('redis-server') && haveCommand('redis-cli') && haveCommand('iptables') ? undefined : 'needs redis-server, redis-cli and iptables');

/** Drops `share` of the packets `host` receives on its lab interface (0 = none). */
async function setLoss(host: Host, share: number): Promise<void> {
  await host.run('iptables', ['-F', 'INPUT']);
  if (share > 0) {
    await host.run('iptables', ['-A', 'INPUT', '-i', host.ifname, '-m', 'statistic', '--mode', 'random', '--probability', String(share), '-j', 'DROP']);
  }
}

interface Row {
  name: string;
  ok: number;
  failed: number;
}

function row(name: string, loop: ClientLoop): Row {
  const s = loop.summary();
  return { name, ok: s.ok, failed: s.failed };
}

const pct = (r: Row): string => `${r.ok} / ${r.failed} (${((100 * r.failed) / Math.max(1, r.ok + r.failed)).toFixed(1)} %)`;
const rate = (r: Row): number => r.failed / Math.max(1, r.ok + r.failed);

describe('lossy links: never worse than a direct connection', { skip }, () => {
  let lab: Lab;
  let a: Host;
  let b: Host;
  let c: Host;
  let rb: RedisServer;
  let advB: Amb;
  let conn: Amb;

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c'], prefix: 'loss' });
    [a, b, c] = [lab.host('a'), lab.host('b'), lab.host('c')];
    let ra: RedisServer;
    [ra, rb] = await Promise.all([startRedis(a, { port: 7001 }), startRedis(b, { port: 7002 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
    conn = await startConnector(c, ['--connect', 'one=6379', '--connect', 'two=6380']);
    [, advB] = (await Promise.all([
      startAdvertiser(a, ['--advertise', 'one=7001', '--advertise', 'two=7001']),
      startAdvertiser(b, ['--advertise', 'two=7002']),
    ])).map((x) => x.amb) as [Amb, Amb];
    await waitServedBy(c, 'a', { port: 6379 });
    await waitServedBy(c, 'a', { port: 6380 });
    await waitServedBy(c, 'b', { port: 6380 });
    for (const h of [a, b, c]) await setLoss(h, 0.1);
  });
  after(async () => {
    await lab?.destroy();
  });

  const downsSince = (t0: number, service?: string): LogLine[] =>
    conn.findAll((l) => l.msg === 'endpoint down' && l.time >= t0 && (service === undefined || l.service === service));

  test('10 % loss, 60 s: through the ambassador no worse than direct, one replica and two; no endpoint goes down', async () => {
    const o = { count: 5000, intervalMs: 100, deadlineMs: 60_000, timeoutMs: 3000 };
    const t0 = Date.now();
    const loops = {
      directA: runLoop(c, { ...o, host: a.ip, port: 7001 }),
      directB: runLoop(c, { ...o, host: b.ip, port: 7002 }),
      one: runLoop(c, { ...o, port: 6379 }),
      two: runLoop(c, { ...o, port: 6380 }),
    };
    await Promise.all(Object.values(loops).map((l) => l.finished));
    const [dA, dB, one, two] = [row('direct a', loops.directA), row('direct b', loops.directB), row('via one', loops.one), row('via two', loops.two)];
    const direct2: Row = { name: 'direct a+b', ok: dA.ok + dB.ok, failed: dA.failed + dB.failed };
    const downsOne = downsSince(t0, 'one');
    const downsTwo = downsSince(t0, 'two');
    const reasons = (ls: LogLine[]) => ls.map((l) => `${l.endpoint}:${l.reason}`).join(', ') || 'none';
    console.log('# | replicas | direct: ok / failed | through the ambassador: ok / failed | endpoint-down events, every replica alive |');
    console.log(`# | 1 | ${pct(dA)} | ${pct(one)} | ${downsOne.length} (${reasons(downsOne)}) |`);
    console.log(`# | 2 | ${pct(direct2)} | ${pct(two)} | ${downsTwo.length} (${reasons(downsTwo)}) |`);
    // Bounded loops of the same length side by side: compare the shares of failed requests.
    assert.ok(rate(one) <= rate(dA) + 0.01, `one replica: ${pct(one)} through vs ${pct(dA)} direct`);
    assert.ok(rate(two) <= rate(direct2) + 0.01, `two replicas: ${pct(two)} through vs ${pct(direct2)} direct`);
    assert.ok(one.ok + one.failed > 200 && two.ok + two.failed > 200, 'the loops ran');
    assert.ok(downsOne.length + downsTwo.length <= 1, `a rare flap at most: ${reasons([...downsOne, ...downsTwo])}`);
  });

  test('10 % loss: kill -9 of a replica and a cut link still fail over fast; no new connection fails', async () => {
    // kill -9 of b's ambassador and redis
    let loop = runLoop(c, { port: 6380, count: 2000, parallel: 4, intervalMs: 20, deadlineMs: 8000, timeoutMs: 10_000 });
    await loop.waitCount(40);
    let t0 = Date.now();
    advB.proc.kill('SIGKILL');
    rb.process.kill('SIGKILL');
    const downB = await conn.waitLog({ msg: 'endpoint down', service: 'two', address: `${b.ip}:7002` }, { since: t0, timeoutMs: 8000 });
    await loop.finished;
    let failedNew = loop.conns().filter((r) => !r.ok && r.at > t0 + 100);
    console.log(`# 10 % loss, kill -9 of b: endpoint down at c after ${fmt(downB.time - t0)} (reason ${downB.reason}); ` +
      `${loop.summary().total} connections, ${loop.summary().failed} failed, ${failedNew.length} of them started after the kill`);
    assert.ok(downB.time - t0 < 2500, 'detected about as fast as without loss');
    assert.equal(failedNew.length, 0, `new connections failed: ${JSON.stringify(failedNew.slice(0, 3))}`);

    // b back, then a's cable cut
    rb = await startRedis(b, { port: 7002 });
    await tagRedis(rb, 'b');
    advB = (await startAdvertiser(b, ['--advertise', 'two=7002'], { timeoutMs: 20_000 })).amb;
    await waitServedBy(c, 'b', { port: 6380, timeoutMs: 20_000 });
    loop = runLoop(c, { port: 6380, count: 2000, parallel: 4, intervalMs: 20, deadlineMs: 8000, timeoutMs: 10_000 });
    await loop.waitCount(40);
    t0 = Date.now();
    await a.linkDown();
    try {
      const downA = await conn.waitLog({ msg: 'endpoint down', service: 'two', address: `${a.ip}:7001` }, { since: t0, timeoutMs: 8000 });
      await loop.finished;
      failedNew = loop.conns().filter((r) => !r.ok && r.at > t0 + 200);
      console.log(`# 10 % loss, a's cable cut: endpoint down at c after ${fmt(downA.time - t0)} (reason ${downA.reason}); ` +
        `${loop.summary().total} connections, ${loop.summary().failed} failed, ${failedNew.length} of them started after the cut`);
      assert.ok(downA.time - t0 < 2500, 'detected about as fast as without loss');
      assert.equal(failedNew.length, 0, `new connections failed: ${JSON.stringify(failedNew.slice(0, 3))}`);
    } finally {
      await a.linkUp();
    }
    await waitServedBy(c, 'a', { port: 6380, timeoutMs: 20_000 });
  });

  test('30 % loss: the ambassador stays up and keeps its endpoints; clients get what TCP can give', async () => {
    for (const h of [a, b, c]) await setLoss(h, 0.3);
    try {
      const o = { count: 5000, intervalMs: 100, deadlineMs: 30_000, timeoutMs: 3000 };
      const t0 = Date.now();
      const direct = runLoop(c, { ...o, host: a.ip, port: 7001 });
      const two = runLoop(c, { ...o, port: 6380 });
      await Promise.all([direct.finished, two.finished]);
      const [d, t] = [row('direct a', direct), row('via two', two)];
      const downs = downsSince(t0);
      const verdicts = conn.findAll((l) => typeof l.msg === 'string' && l.msg.startsWith('peer host') && l.time >= t0);
      console.log(`# 30 % loss, 30 s: direct ${pct(d)}, through the ambassador (two replicas) ${pct(t)}; endpoint-down events ${downs.length} ` +
        `(${downs.map((l) => `${l.service}/${l.endpoint}:${l.reason}`).join(', ') || 'none'})` +
        `${verdicts.map((l) => `; ${l.msg} ${l.host} ${l.code ?? ''} loss ${l.lossRate ?? ''} misses ${l.misses ?? ''}`).join('')}`);
      assert.ok(conn.proc.running, 'the ambassador is up');
      assert.ok(rate(t) <= rate(d) + 0.02, 'no worse than direct');
      assert.ok(downs.length <= 1, 'keeps its endpoints');
    } finally {
      for (const h of [a, b, c]) await setLoss(h, 0.1);
    }
  });
});
