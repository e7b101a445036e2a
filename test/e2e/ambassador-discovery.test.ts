// Ambassador end to end, on default settings: discovery across hosts, redis-benchmark's workload
// through the connector, and clean shutdown on SIGTERM/SIGINT. Hosts a and b run redis-server on non-default
// ports behind `ambassador --advertise redis=PORT`; host c runs `ambassador --connect redis=6379`
// and real clients.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, type RedisServer, canUseNetns, haveCommand, redisCli, startRedis, waitFor } from '../lib/netns.js';
import { type Amb, fmt, runLoop, sleep, startAdvertiser, startAmbassador, startConnector, tagRedis } from './ambassador-kit.js';

const skip = canUseNetns() ??
  (['redis-server', 'redis-cli', 'redis-benchmark'].every(haveCommand) ? undefined : 'redis-server/redis-cli/redis-benchmark not installed');

describe('ambassador: discovery, benchmark and shutdown (default settings)', { skip }, () => {
  let lab: Lab;
  let ra: RedisServer;
  let rb: RedisServer;
  let advA: Amb;
  let advB: Amb;
  let conn: Amb;

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c'] });
    [ra, rb] = await Promise.all([startRedis(lab.host('a'), { port: 7001 }), startRedis(lab.host('b'), { port: 7002 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
  });
  after(async () => {
    await lab?.destroy();
  });

  test('discovery: c can SET/GET through 127.0.0.1:6379 within 2 s of the advertisers being announced', async () => {
    const c = lab.host('c');
    conn = await startConnector(c, ['--connect', 'redis=6379']);
    // A client that connects before anything is announced waits (bounded) for an endpoint.
    const loop = runLoop(c, { count: 20, untilOk: true, intervalMs: 20, timeoutMs: 8000, deadlineMs: 20_000 });
    const spawned = Date.now();
    const [a, b] = await Promise.all([
      startAdvertiser(lab.host('a'), ['--advertise', 'redis=7001']),
      startAdvertiser(lab.host('b'), ['--advertise', 'redis=7002']),
    ]);
    advA = a.amb;
    advB = b.amb;
    const summary = await loop.finished;
    const first = loop.conns().find((r) => r.ok);
    assert.ok(first, `a SET through c succeeded: ${JSON.stringify(summary)}`);
    const firstAnnounced = Math.min(a.announced.time, b.announced.time);
    const upAt = conn.find({ msg: 'endpoint up' })?.time;
    console.log(`# discovery: advertisers spawned → announced ${fmt(firstAnnounced - spawned)} (a ${fmt(a.announced.time - spawned)}, b ${fmt(b.announced.time - spawned)})`);
    console.log(`# discovery: advertisers spawned → first SET OK through c ${fmt(first.end - spawned)}; announced → first SET OK ${fmt(first.end - firstAnnounced)}; announced → endpoint up at c ${fmt(upAt === undefined ? undefined : upAt - firstAnnounced)}`);
    assert.ok(first.end - firstAnnounced < 2000, `first SET ${first.end - firstAnnounced} ms after the announcement`);
    assert.ok(first.end - spawned < 15_000);

    // SET then GET of the same key on one connection (round-robin may switch between connections)
    const r = await redisCli(c, ['-p', '6379'], { input: 'SET greeting hello\nGET greeting\n' });
    assert.deepEqual(r.reply.split('\n'), ['OK', 'hello']);
    // both advertisers are seen, each at its own address and port
    await conn.waitLog({ msg: 'endpoint up', address: `${lab.host('a').ip}:7001` });
    await conn.waitLog({ msg: 'endpoint up', address: `${lab.host('b').ip}:7002` });
  });

  // A real client's workload through the connector, spread over both backends. (Its speed against
  // a direct connection, HAProxy and socat is measured by bench/datapath.mjs, not here.)
  test('redis-benchmark through c (-n 2000 -c 20 -t get,set): every request answered, both backends used', async () => {
    const c = lab.host('c');
    const r = await c.exec('redis-benchmark', ['-p', '6379', '-n', '2000', '-c', '20', '-t', 'get,set', '-q'], { timeoutMs: 60_000 });
    const out = (r.stdout + r.stderr).replace(/\r/g, '\n');
    const rates: Record<string, number> = {};
    for (const m of out.matchAll(/^(SET|GET): ([\d.]+) requests per second/gm)) rates[m[1]!] = Number(m[2]);
    assert.equal(r.code, 0, out);
    assert.ok(rates.SET! > 0 && rates.GET! > 0, out);
    assert.doesNotMatch(out, /error|closed/i, out);
    // the benchmark's 20 connections were spread over both backends: its key is on both
    const has = async (h: string, port: number) => (await redisCli(lab.host(h), ['-p', String(port), 'exists', 'key:__rand_int__'])).reply;
    assert.deepEqual([await has('a', 7001), await has('b', 7002)], ['1', '1'], 'SETs reached a and b');
  });

  test('SIGTERM of c: exit 0, listener closed; SIGINT too', async () => {
    const c = lab.host('c');
    // an idle client connection is open: drained (bounded by --drain-timeout), then closed
    const held = runLoop(c, { count: 0, hold: 1, deadlineMs: 30_000 });
    await waitFor(() => held.results().length >= 1, { timeoutMs: 10_000, message: 'held connection' });
    const t0 = Date.now();
    conn.proc.kill('SIGTERM');
    // while the open connection drains, the listener is already closed to new clients
    await waitFor(async () => { const r = await redisCli(c, ['-p', '6379', 'ping']); return /refused/i.test(r.stdout + r.stderr); },
      { timeoutMs: 5000, intervalMs: 50, message: 'listener closed after SIGTERM' });
    const closedAfter = Date.now() - t0;
    await sleep(300);
    assert.ok(conn.proc.running, `still draining the open connection: ${conn.proc.output.slice(-2500)}\n${held.proc.output}`);
    const t1 = Date.now();
    await held.stop(); // the client leaves: the drain ends
    const st = await conn.proc.exited;
    console.log(`# SIGTERM of c's ambassador: listener refused new clients after ${fmt(closedAfter)}; exit ${st.code ?? st.signal} ${fmt(Date.now() - t1)} after the last client left`);
    assert.equal(st.code, 0, conn.proc.output.slice(-1500));
    assert.ok(conn.find({ msg: 'stopped' }));

    const c2 = await startConnector(c, ['--connect', 'redis=6379', '--connect', 'redis=6380,balance=least-conn']);
    assert.equal((await redisCli(c, ['-p', '6380', 'ping'])).reply, 'PONG');
    const t2 = Date.now();
    c2.proc.kill('SIGINT');
    const st2 = await c2.proc.exited;
    console.log(`# SIGINT of c's ambassador (no open client): exit ${st2.code ?? st2.signal} after ${fmt(Date.now() - t2)}`);
    assert.equal(st2.code, 0, c2.proc.output.slice(-1500));
    for (const port of ['6379', '6380']) assert.notEqual((await redisCli(c, ['-p', port, 'ping'])).reply, 'PONG');

    // the advertisers exit 0 on SIGTERM as well, after their goodbyes
    for (const adv of [advA, advB]) {
      const s = await adv.stop();
      assert.equal(s.code, 0, adv.proc.output.slice(-1500));
    }
    // a connect-only ambassador started on the same host never announces anything
    const quiet = startAmbassador(c, ['--connect', 'redis=6381']);
    await quiet.waitLog({ msg: 'listening' });
    assert.equal(quiet.find({ msg: 'advertisement' }), undefined);
    assert.equal((await quiet.stop()).code, 0);
  });
});
