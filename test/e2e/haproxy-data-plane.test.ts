// The HAProxy data plane end to end (--data-plane haproxy): the ambassador discovers and judges
// endpoints, a real HAProxy 2.6 carries the bytes. One lab: a and b run redis-server (tagged a / b)
// behind advertising ambassadors; c runs one connecting ambassador with HAProxy and several
// listeners (one per scenario); d is where the service migrates. The Node data plane's scenarios
// that apply to plain TCP listeners, run again here: discovery, balancing, panic mode, circuit
// breakers, credentials injection staying on the Node plane beside HAProxy, replicas coming and
// going without a reload, graceful and hard failover, migration, HAProxy killed under load, and the
// ambassador stopped or killed (no HAProxy left behind).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, type Host, type RedisServer, canUseNetns, haveCommand, redisCli, startRedis, waitFor } from '../lib/netns.js';
import {
  type Amb, type ClientLoop, type ConnResult, adminGet, fmt, metricSum, runLoop, startAdvertiser, startAmbassador, startConnector, tagRedis, waitServedBy, whoServes,
} from './ambassador-kit.js';

const skip = canUseNetns()
  ?? (haveCommand('redis-server') && haveCommand('redis-cli') ? undefined : 'redis-server/redis-cli not installed')
  ?? (haveCommand('haproxy') ? undefined : 'haproxy not installed (apt-get install haproxy)');

const REPLICAS = fileURLToPath(new URL('../fixtures/mdns-replicas.js', import.meta.url));
const FAST = ['--health-interval', '500'];
const ADMIN = 9901;

interface Peers {
  clusters: Array<{ name: string; listen: string; dataPlane: { kind: string; state?: string; reason?: string }; panic: boolean; endpoints: Array<{ label: string; state: string }> }>;
  haproxy: { state: string; masterPid: number; workerPid: number; restarts: number; reloads: number } | null;
}

async function peers(host: Host): Promise<Peers> {
  return JSON.parse(await adminGet(host, ADMIN, '/peers')) as Peers;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

function report(name: string, loop: ClientLoop, t0: number): ConnResult[] {
  const rs = loop.conns();
  const failed = rs.filter((r) => !r.ok);
  const s = loop.summary();
  console.log(`# ${name}: ${s.total} connections, ${s.failed} failed, by backend ${JSON.stringify(s.byWho)}, max ${fmt(Math.max(0, ...rs.map((r) => r.ms)))}`);
  for (const f of failed.slice(0, 5)) console.log(`#   failed: started ${fmt(f.at - t0)} after the event, ${f.err}`);
  return failed;
}

describe('HAProxy data plane (--data-plane haproxy)', { skip }, () => {
  let lab: Lab;
  let ra: RedisServer;
  let advA: Amb;
  let advB: Amb;
  let conn: Amb;
  const h = (n: string) => lab.host(n);
  const aAddr = () => `${h('a').ip}:7001`;

  async function restoreA(): Promise<void> {
    if (!ra.process.running) {
      ra = await startRedis(h('a'), { port: 7001 });
      await tagRedis(ra, 'a');
    }
    if (!advA.proc.running) advA = (await startAdvertiser(h('a'), ['--advertise', 'redis=7001', '--advertise', 'redisp=7001,priority=0', ...FAST])).amb;
    await waitServedBy(h('c'), 'a', { timeoutMs: 15_000 });
  }

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c', 'd'] });
    const [a, b, c] = [h('a'), h('b'), h('c')];
    let rb: RedisServer;
    [ra, rb] = await Promise.all([startRedis(a, { port: 7001 }), startRedis(b, { port: 7002 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
    // Credentials injection (Node data plane): a redis that wants a password.
    await startRedis(b, { port: 7003, password: 'hunter2' });
    await redisCli(b, ['-p', '7003', '-a', 'hunter2', '--no-auth-warning', 'set', 'whoami', 'kv']);
    // Panic mode: a redis that refuses PING (ACL), so our check=redis judges it down although it serves.
    const rp = await startRedis(b, { port: 7004 });
    await tagRedis(rp, 'p');
    assert.equal((await redisCli(b, ['-p', '7004', 'acl', 'setuser', 'default', '-ping'])).reply, 'OK');
    const authFile = join(lab.tmpdir, 'kv-auth');
    writeFileSync(authFile, 'hunter2\n');
    conn = await startConnector(c, [
      '--data-plane', 'haproxy', '--admin', String(ADMIN), ...FAST,
      '--connect', 'redis=6379',
      '--connect', 'redis=6380,balance=least-conn',
      '--connect', 'redisp=6382,balance=srv',
      '--connect', 'redis=6383,max-connections=3',
      '--connect', `kv=6384,auth-file=${authFile}`, '--static', `kv=${b.ip}:7003`,
      '--connect', 'panic=6385,check=redis', '--static', `panic=${b.ip}:7004`,
      '--connect', 'churn=6386',
    ]);
    [advA, advB] = (await Promise.all([
      startAdvertiser(a, ['--advertise', 'redis=7001', '--advertise', 'redisp=7001,priority=0', ...FAST]),
      startAdvertiser(b, ['--advertise', 'redis=7002', '--advertise', 'redisp=7002,priority=10', ...FAST]),
    ])).map((x) => x.amb) as [Amb, Amb];
    // redis × 3 listeners × 2, redisp × 2, kv, panic
    await waitFor(() => conn.findAll({ msg: 'endpoint up' }).length >= 10, { timeoutMs: 15_000, message: `all endpoints up at c: ${conn.proc.output.slice(-2000)}` });
  });
  after(async () => {
    await lab?.destroy();
  });

  test('discovery: one line per listener says which data plane and why; HAProxy serves what mDNS found', async () => {
    const c = h('c');
    const lines = conn.findAll({ msg: 'listening' });
    const plane = Object.fromEntries(lines.map((l) => [l.listen as string, `${l.dataPlane}${l.why ? `: ${l.why}` : ''}`]));
    console.log(`# data planes: ${JSON.stringify(plane)}`);
    assert.equal(lines.length, 7);
    for (const port of [6379, 6380, 6382, 6383, 6385, 6386]) assert.equal(plane[`127.0.0.1:${port}`], 'haproxy');
    assert.match(plane['127.0.0.1:6384']!, /^node: credentials injection/);
    const started = conn.find({ msg: 'HAProxy started' })!;
    console.log(`# HAProxy ${started.version} started in ${fmt(started.ms as number)} (${started.dies})`);
    const p = await peers(c);
    assert.deepEqual(p.clusters.map((x) => `${x.dataPlane.kind} ${x.dataPlane.state ?? ''}`), ['haproxy running', 'haproxy running', 'haproxy running', 'haproxy running', 'node ', 'haproxy running', 'haproxy running']);
    assert.match(p.clusters[4]!.dataPlane.reason ?? '', /^credentials injection/);
    assert.equal(p.haproxy?.state, 'running');
    const served = new Set<string>();
    for (let i = 0; i < 4; i++) served.add(await whoServes(c, 6379));
    assert.deepEqual([...served].sort(), ['a', 'b']);
    const m = await adminGet(c, ADMIN, '/metrics');
    assert.equal(metricSum(m, 'ambassador_connections_established_total', { listener: '127.0.0.1:6379' }), metricSum(m, 'ambassador_connections_accepted_total', { listener: '127.0.0.1:6379' }));
    assert.ok(metricSum(m, 'ambassador_upstream_bytes_received_total', { listener: '127.0.0.1:6379' }) > 0);
  });

  test('balancing: round-robin alternates, least-conn goes to the one with fewer open, srv only to priority 0', async () => {
    const c = h('c');
    const rr = runLoop(c, { port: 6379, count: 20, intervalMs: 5, deadlineMs: 30_000 });
    const s = await rr.finished;
    const seq = rr.conns().map((r) => r.who).join('');
    console.log(`# round-robin: ${seq}`);
    assert.equal(s.failed, 0);
    assert.deepEqual(s.byWho, { a: 10, b: 10 });
    for (let i = 1; i < seq.length; i++) assert.notEqual(seq[i], seq[i - 1], seq);

    const lc = runLoop(c, { port: 6380, hold: 3, count: 10, intervalMs: 100, deadlineMs: 30_000 });
    const s2 = await lc.finished;
    const held = lc.results().filter((r) => r.held).map((r) => r.who).join('');
    const fewer = [...held].filter((w) => w === 'a').length > 1 ? 'b' : 'a';
    console.log(`# least-conn: held ${held}; then ${JSON.stringify(s2.byWho)}`);
    assert.equal(s2.byWho[fewer], 10);

    const srv = runLoop(c, { port: 6382, count: 20, intervalMs: 5, deadlineMs: 30_000 });
    assert.deepEqual((await srv.finished).byWho, { a: 20 });
  });

  test('circuit breaker: max-connections=3 refuses the 4th client at once, counted', async () => {
    const c = h('c');
    const holders = runLoop(c, { port: 6383, hold: 3, count: 0, deadlineMs: 20_000 });
    await waitFor(() => holders.results().filter((r) => r.held && r.ok).length === 3, { timeoutMs: 10_000, message: '3 held connections' });
    const t0 = Date.now();
    const extra = runLoop(c, { port: 6383, count: 3, intervalMs: 0, deadlineMs: 10_000, timeoutMs: 3000 });
    const s = await extra.finished;
    console.log(`# max-connections=3: 3 held, 3 more: ${s.failed} refused (${extra.conns().map((r) => `${r.err} after ${r.ms} ms`).join(', ')})`);
    assert.equal(s.failed, 3);
    assert.ok(extra.conns().every((r) => r.end - t0 < 2500), 'refused at once, not after a timeout');
    const m = await adminGet(c, ADMIN, '/metrics');
    assert.equal(metricSum(m, 'ambassador_connections_refused_total', { listener: '127.0.0.1:6383', limit: 'max-connections' }), 3);
    await holders.stop();
  });

  test('panic mode: the only endpoint is down on our own check\'s evidence; clients are still sent to it', async () => {
    const c = h('c');
    await waitFor(async () => (await peers(c)).clusters.find((x) => x.name === 'panic')?.panic, { timeoutMs: 10_000, message: 'cluster panic in panic mode' });
    const p = (await peers(c)).clusters.find((x) => x.name === 'panic')!;
    assert.equal(p.endpoints[0]!.state, 'down');
    const loop = runLoop(c, { port: 6385, count: 5, intervalMs: 5, deadlineMs: 10_000 });
    assert.deepEqual((await loop.finished).byWho, { p: 5 });
    assert.equal(metricSum(await adminGet(c, ADMIN, '/metrics'), 'ambassador_panic_mode', { cluster: 'panic' }), 1);
  });

  test('credentials injection stays on the Node data plane, beside the HAProxy listeners', async () => {
    const r = await redisCli(h('c'), ['-p', '6384', 'get', 'whoami']);
    assert.equal(r.reply, 'kv');
    assert.ok(!conn.proc.output.includes('hunter2'), 'the secret is in no log line');
  });

  test('a replica added and removed 50 times: each one served at once, no HAProxy reload', async () => {
    const c = h('c');
    const before = await peers(c);
    const replicas = h('d').spawn(process.execPath, [REPLICAS, JSON.stringify({ iface: h('d').ip, service: 'churn', address: h('b').ip, port: 7002, durationMs: 90_000 })],
      { name: '[d] mdns-replicas', stdin: 'pipe' });
    const firstMs: number[] = [];
    const t0 = Date.now();
    for (let i = 1; i <= 50; i++) {
      const name = `r${i}`;
      const since = Date.now();
      replicas.write(`+${name}\n`);
      const up = await conn.waitLog({ msg: 'endpoint up', service: 'churn', endpoint: name }, { since, timeoutMs: 5000 });
      assert.equal(await whoServes(c, 6386), 'b');
      firstMs.push(Date.now() - up.time);
      replicas.write(`-${name}\n`);
      await conn.waitLog({ msg: 'endpoint down', service: 'churn', endpoint: name }, { since, timeoutMs: 5000 });
    }
    const after = await peers(c);
    const m = await adminGet(c, ADMIN, '/metrics');
    firstMs.sort((x, y) => x - y);
    console.log(`# 50 replicas added and removed in ${fmt(Date.now() - t0)}: endpoint up → a connection served (redis-cli spawned in c) median ${fmt(firstMs[25])}, max ${fmt(firstMs[49])}; ` +
      `reloads ${after.haproxy!.reloads}, worker ${before.haproxy!.workerPid} → ${after.haproxy!.workerPid}, slots ${metricSum(m, 'ambassador_haproxy_slots', { cluster: 'churn', state: 'used' })} used / ${metricSum(m, 'ambassador_haproxy_slots', { cluster: 'churn' })}`);
    assert.equal(after.haproxy!.reloads, 0);
    assert.equal(metricSum(m, 'ambassador_haproxy_reloads_total'), 0);
    assert.equal(after.haproxy!.workerPid, before.haproxy!.workerPid, 'the same HAProxy worker all along');
    await replicas.stop(2000);
  });

  test('graceful failover: SIGTERM of a\'s ambassador under load loses no connection', async () => {
    const c = h('c');
    const loop = runLoop(c, { count: 3000, parallel: 8, intervalMs: 2, deadlineMs: 30_000, timeoutMs: 10_000 });
    await loop.waitCount(30);
    const t0 = Date.now();
    await advA.stop();
    const down = await conn.waitLog({ msg: 'endpoint down', service: 'redis', address: aAddr() }, { since: t0, timeoutMs: 5000 });
    // Until 30 connections started past the margin below (a fast machine got through a fixed count before it).
    await waitFor(() => loop.conns().filter((r) => r.at > down.time + 250).length >= 30, { timeoutMs: 20_000, message: '30 connections after the verdict' });
    await loop.stop();
    const failed = report('graceful failover', loop, t0);
    // The verdict reaches HAProxy over its runtime API a turn of the event loop after the log
    // line: a few ms idle, more on a loaded machine; a connection started later than this margin
    // must not go to a.
    const afterDown = loop.conns().filter((r) => r.at > down.time + 250);
    const lastToA = Math.max(-Infinity, ...loop.conns().filter((r) => r.who === 'a').map((r) => r.at - down.time));
    console.log(`# graceful failover: endpoint down at c ${fmt(down.time - t0)} after SIGTERM (${down.reason}); the last connection to a started ${fmt(lastToA)} after it; ` +
      `${afterDown.length} connections 250 ms after it, all to b: ${afterDown.every((r) => r.who === 'b')}`);
    assert.equal(failed.length, 0);
    assert.ok(afterDown.length > 20 && afterDown.every((r) => r.who === 'b'));
  });

  test('hard failover: kill -9 of a\'s ambassador and redis; no connection started after the kill fails', async () => {
    const c = h('c');
    await restoreA();
    const loop = runLoop(c, { count: 300, parallel: 4, intervalMs: 10, deadlineMs: 30_000, timeoutMs: 10_000 });
    await loop.waitCount(30);
    const t0 = Date.now();
    advA.proc.kill('SIGKILL');
    ra.process.kill('SIGKILL');
    const down = await conn.waitLog({ msg: 'endpoint down', service: 'redis', address: aAddr() }, { since: t0, timeoutMs: 8000 });
    await loop.finished;
    const failed = report('kill -9', loop, t0);
    console.log(`# kill -9: endpoint down at c after ${fmt(down.time - t0)} (${down.reason}); HAProxy retried refused connects on b meanwhile`);
    // requests in flight on a's redis at the kill are lost; a new connection refused by a is retried on b
    assert.ok(failed.every((r) => r.at < t0 + 100), 'only connections in flight at the kill failed');
    assert.ok(down.time - t0 < 5000);
  });

  test('migration: the service moves to d (new host, new port); new connections follow, held ones are closed', async () => {
    const [c, d] = [h('c'), h('d')];
    await restoreA();
    await advB.stop();
    await waitFor(async () => (await peers(c)).clusters[0]!.endpoints.length === 1, { timeoutMs: 5000, message: 'b gone from c' });
    const loop = runLoop(c, { hold: 1, count: 2000, intervalMs: 10, deadlineMs: 30_000, timeoutMs: 10_000 });
    await loop.waitCount(10);
    const t0 = Date.now();
    await advA.stop();
    await ra.stop();
    const rd = await startRedis(d, { port: 7777 });
    await tagRedis(rd, 'd');
    const { announced } = await startAdvertiser(d, ['--advertise', 'redis=7777', ...FAST]);
    await waitFor(() => loop.conns().find((r) => r.who === 'd'), { timeoutMs: 10_000, message: 'a connection served by d' });
    const firstD = loop.conns().find((r) => r.who === 'd')!;
    const heldClosed = await waitFor(() => loop.heldClosed().get('h0'), { timeoutMs: 8000, message: 'the connection held to a is closed' });
    const t1 = Date.now();
    await loop.waitCount(loop.conns().filter((r) => r.at <= t1).length + 20);
    await loop.stop();
    console.log(`# migration a → d:7777: announced → first connection served by d ${fmt(firstD.end - announced.time)}; held connection to a closed ${fmt(heldClosed - t0)} after a's SIGTERM`);
    // discovery (mDNS, FAST timers) + one runtime-API command; the margin is for a loaded machine
    assert.ok(firstD.end - announced.time < 3000, `announced → first connection by d: ${fmt(firstD.end - announced.time)}`);
    assert.ok(loop.conns().filter((r) => r.at > firstD.end).every((r) => r.who === 'd'));
  });

  test('HAProxy killed with -9 under load: started again with its endpoints within about a second; clients reconnect', async () => {
    const c = h('c');
    const before = await peers(c);
    const loop = runLoop(c, { count: 3000, parallel: 2, intervalMs: 5, deadlineMs: 30_000, timeoutMs: 3000 });
    await loop.waitCount(20);
    const t0 = Date.now();
    process.kill(before.haproxy!.workerPid, 'SIGKILL');
    const again = await conn.waitLog({ msg: 'HAProxy running again' }, { since: t0, timeoutMs: 10_000 });
    const t1 = Date.now();
    await loop.waitCount(loop.conns().filter((r) => r.at <= t1).length + 40);
    await loop.stop();
    const failed = report('HAProxy killed', loop, t0);
    const lastFailed = failed.at(-1);
    const m = await adminGet(c, ADMIN, '/metrics');
    console.log(`# HAProxy worker killed: running again ${fmt(again.time - t0)} later (its start took ${fmt(again.ms as number)}); ` +
      `${failed.length} connections failed, the last started ${fmt(lastFailed && lastFailed.at - t0)} after the kill; restarts ${metricSum(m, 'ambassador_haproxy_restarts_total')}`);
    assert.equal(metricSum(m, 'ambassador_haproxy_restarts_total'), 1);
    assert.ok(again.time - t0 < 3000, 'restarted within a few seconds on a loaded machine');
    assert.ok(failed.every((r) => r.at < again.time + 100), 'every connection after the restart succeeds');
    assert.ok(loop.conns().filter((r) => r.at > again.time + 100).every((r) => r.who === 'd'));
  });

  test('SIGTERM: HAProxy soft-stops within the drain time; kill -9 of the ambassador leaves no HAProxy either', async () => {
    const c = h('c');
    const p = await peers(c);
    const t0 = Date.now();
    const st = await conn.stop();
    console.log(`# SIGTERM of the connector: exit ${st.code} after ${fmt(Date.now() - t0)}`);
    assert.equal(st.code, 0);
    assert.ok(!alive(p.haproxy!.masterPid) && !alive(p.haproxy!.workerPid), 'HAProxy gone with the ambassador');

    const other = startAmbassador(c, ['--data-plane', 'haproxy', '--admin', String(ADMIN), '--connect', 'redis=6379', ...FAST]);
    await other.waitLog({ msg: 'HAProxy started' });
    const q = await peers(c);
    assert.ok(alive(q.haproxy!.masterPid) && alive(q.haproxy!.workerPid));
    other.proc.kill('SIGKILL');
    const t1 = Date.now();
    await waitFor(() => !alive(q.haproxy!.masterPid) && !alive(q.haproxy!.workerPid), { timeoutMs: 5000, intervalMs: 20, message: 'HAProxy gone after kill -9 of the ambassador' });
    console.log(`# kill -9 of the ambassador: HAProxy (master ${q.haproxy!.masterPid}, worker ${q.haproxy!.workerPid}) gone ${fmt(Date.now() - t1)} later`);
  });
});
