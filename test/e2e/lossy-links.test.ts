// Lossy links, on a netns lab with real redis-server: every host drops a share of the
// packets it receives on its lab interface (iptables statistic match; this kernel has no netem).
//
// a: redis :7001 behind `--advertise one=7001 --advertise two=7001`
// b: redis :7002 behind `--advertise two=7002`
// c: `--connect one=6379` (one replica) and `--connect two=6380` (two replicas), and the clients:
//    bounded loops of one new connection per request (SET + GET, 3 s client timeout), direct to
//    a's and b's redis and through the ambassador, side by side in the same run.
// Short windows (20 s at 10 %, 10 s at 30 %): "no worse than direct" is judged by a one-sided
// exact test, so a few dozen requests a side can only fail when the ambassador is really worse.
// The long measurement (60 s a side, the figures in bench/RESULTS.md) is bench/lossy.mjs.
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

const lnFactorial = (() => {
  const memo = [0];
  return (n: number): number => {
    for (let i = memo.length; i <= n; i++) memo.push(memo[i - 1]! + Math.log(i));
    return memo[n]!;
  };
})();
const lnChoose = (n: number, k: number): number => lnFactorial(n) - lnFactorial(k) - lnFactorial(n - k);

/**
 * Fisher's exact test, one-sided: the probability, were both sides to fail at the same rate, of
 * `through` getting at least as many of all the failures as it got (hypergeometric tail, the
 * totals fixed). Small: the ambassador's side fails more than chance explains.
 */
function worseByChance(through: Row, direct: Row): number {
  const n1 = through.ok + through.failed;
  const n = n1 + direct.ok + direct.failed;
  const k = through.failed + direct.failed;
  let p = 0;
  for (let x = through.failed; x <= Math.min(k, n1); x++) p += Math.exp(lnChoose(k, x) + lnChoose(n - k, n1 - x) - lnChoose(n, n1));
  return Math.min(1, p);
}
/** Below this, "no worse than direct" fails: one false alarm in a thousand runs at most. */
const ALPHA = 0.001;

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

  test('10 % loss, 20 s: through the ambassador no worse than direct, one replica and two; no endpoint goes down', async () => {
    const o = { count: 5000, intervalMs: 100, deadlineMs: 20_000, timeoutMs: 3000 };
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
    const [pOne, pTwo] = [worseByChance(one, dA), worseByChance(two, direct2)];
    const reasons = (ls: LogLine[]) => ls.map((l) => `${l.endpoint}:${l.reason}`).join(', ') || 'none';
    console.log('# | replicas | direct: ok / failed | through the ambassador: ok / failed | p (worse by chance) | endpoint-down events, every replica alive |');
    console.log(`# | 1 | ${pct(dA)} | ${pct(one)} | ${pOne.toPrecision(2)} | ${downsOne.length} (${reasons(downsOne)}) |`);
    console.log(`# | 2 | ${pct(direct2)} | ${pct(two)} | ${pTwo.toPrecision(2)} | ${downsTwo.length} (${reasons(downsTwo)}) |`);
    assert.ok(pOne >= ALPHA, `one replica: ${pct(one)} through vs ${pct(dA)} direct (p = ${pOne.toPrecision(2)})`);
    assert.ok(pTwo >= ALPHA, `two replicas: ${pct(two)} through vs ${pct(direct2)} direct (p = ${pTwo.toPrecision(2)})`);
    assert.ok(one.ok + one.failed > 30 && two.ok + two.failed > 30, 'the loops ran');
    assert.ok(downsOne.length + downsTwo.length <= 1, `a rare flap at most: ${reasons([...downsOne, ...downsTwo])}`);
  });

  test('10 % loss: kill -9 of a replica and a cut link still fail over fast; no new connection fails', async () => {
    // kill -9 of b's ambassador and redis
    let loop = runLoop(c, { port: 6380, count: 2000, parallel: 4, intervalMs: 20, deadlineMs: 8000, timeoutMs: 10_000 });
    await loop.waitCount(40);
    let t0 = Date.now();
    advB.proc.kill('SIGKILL');
    rb.process.kill('SIGKILL');
    // dead (their sockets closed by the kernel) once both exits are seen: a request started
    // before may have been in flight on them
    await Promise.all([advB.proc.exited, rb.process.exited]);
    const tDead = Date.now();
    const downB = await conn.waitLog({ msg: 'endpoint down', service: 'two', address: `${b.ip}:7002` }, { since: t0, timeoutMs: 8000 });
    await loop.finished;
    let failedNew = loop.conns().filter((r) => !r.ok && r.at >= tDead);
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
    // the cut lands while `ip link set down` runs: requests started before it returned may have
    // been in flight at the cut; detection is timed from the moment it is surely in place
    t0 = Date.now();
    await a.linkDown();
    const tCut = Date.now();
    try {
      const downA = await conn.waitLog({ msg: 'endpoint down', service: 'two', address: `${a.ip}:7001` }, { since: t0, timeoutMs: 8000 });
      await loop.finished;
      failedNew = loop.conns().filter((r) => !r.ok && r.at >= tCut);
      console.log(`# 10 % loss, a's cable cut (${fmt(tCut - t0)} to cut): endpoint down at c after ${fmt(downA.time - tCut)} (reason ${downA.reason}); ` +
        `${loop.summary().total} connections, ${loop.summary().failed} failed, ${failedNew.length} of them started after the cut`);
      assert.ok(downA.time - tCut < 2500, 'detected about as fast as without loss');
      assert.equal(failedNew.length, 0, `new connections failed: ${JSON.stringify(failedNew.slice(0, 3))}`);
    } finally {
      await a.linkUp();
    }
    await waitServedBy(c, 'a', { port: 6380, timeoutMs: 20_000 });
  });

  test('30 % loss, 10 s: the ambassador stays up and keeps its endpoints; clients get what TCP can give', async () => {
    for (const h of [a, b, c]) await setLoss(h, 0.3);
    try {
      const o = { count: 5000, intervalMs: 100, deadlineMs: 10_000, timeoutMs: 3000 };
      const t0 = Date.now();
      const direct = runLoop(c, { ...o, host: a.ip, port: 7001 });
      const two = runLoop(c, { ...o, port: 6380 });
      await Promise.all([direct.finished, two.finished]);
      const [d, t] = [row('direct a', direct), row('via two', two)];
      const p = worseByChance(t, d);
      const downs = downsSince(t0);
      const verdicts = conn.findAll((l) => typeof l.msg === 'string' && l.msg.startsWith('peer host') && l.time >= t0);
      console.log(`# 30 % loss, 10 s: direct ${pct(d)}, through the ambassador (two replicas) ${pct(t)}, p (worse by chance) ${p.toPrecision(2)}; endpoint-down events ${downs.length} ` +
        `(${downs.map((l) => `${l.service}/${l.endpoint}:${l.reason}`).join(', ') || 'none'})` +
        `${verdicts.map((l) => `; ${l.msg} ${l.host} ${l.code ?? ''} loss ${l.lossRate ?? ''} misses ${l.misses ?? ''}`).join('')}`);
      assert.ok(conn.proc.running, 'the ambassador is up');
      assert.ok(p >= ALPHA, `no worse than direct: ${pct(t)} through vs ${pct(d)} direct (p = ${p.toPrecision(2)})`);
      assert.ok(downs.length <= 1, 'keeps its endpoints');
    } finally {
      for (const h of [a, b, c]) await setLoss(h, 0.1);
    }
  });
});
