// Ambassador end to end: where endpoints come from and where they go. A service migrating to
// another host and port over mDNS (with goodbyes, and with a crashed advertiser whose instance
// name is re-announced elsewhere); relays for a loopback-only target and for a target on another
// host; the static source; and unicast DNS SRV from a real dnsmasq whose records change mid-test.
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, type Host, type LabProcess, type RedisServer, canUseNetns, haveCommand, redisCli, startRedis, waitFor } from '../lib/netns.js';
import {
  type ConnResult, fmt, runLoop, startAdvertiser, startAmbassador, startConnector, tagRedis, waitServedBy,
} from './ambassador-kit.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') && haveCommand('redis-cli') ? undefined : 'redis-server/redis-cli not installed');
const FAST = ['--health-interval', '500'];

describe('ambassador: discovery sources, migration and relays', { skip }, () => {
  let lab: Lab;
  /** Stopped after each test (advertisers, connectors, redis servers, dnsmasq). */
  let live: Array<{ stop(): Promise<unknown> }> = [];
  const track = <T extends { stop(): Promise<unknown> }>(x: T): T => { live.push(x); return x; };
  const h = (n: string): Host => lab.host(n);

  async function redis(host: Host, port: number, tag: string, bind?: string): Promise<RedisServer> {
    const r = track(await startRedis(host, { port, bind }));
    await tagRedis(r, tag);
    return r;
  }

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c', 'd', 'dns'] });
  });
  afterEach(async () => {
    const xs = live.reverse();
    live = [];
    for (const x of xs) await x.stop().catch(() => {});
  });
  after(async () => {
    await lab?.destroy();
  });

  test('migration: the service moves to another host and port; new connections follow', async () => {
    const c = h('c');
    const ra = await redis(h('a'), 7001, 'a');
    const advA = track((await startAdvertiser(h('a'), ['--advertise', 'redis=7001,instance=main', ...FAST])).amb);
    // A client arriving between a's goodbye and d's announcement waits for the new location: that
    // gap is the time d's redis and advertiser take to start (5.4 s at load 24, over the default
    // --wait-for-endpoint of 5 s), so the wait is long enough for a loaded machine.
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', '--wait-for-endpoint', '30000', ...FAST]));
    await waitServedBy(c, 'a');
    // new connections in a loop, plus one long-lived connection (to a) that must not stay on the old location
    const loop = track(runLoop(c, { hold: 1, count: 3000, intervalMs: 10, deadlineMs: 40_000, timeoutMs: 10_000 }));
    await loop.waitCount(20);
    assert.equal(loop.results().find((r) => r.held)?.who, 'a');

    // 1. graceful move: a's advertiser and redis stop (goodbyes), d starts redis on 7777 and announces
    const t0 = Date.now();
    await advA.stop();
    await ra.stop();
    await redis(h('d'), 7777, 'd');
    const { amb: advD, announced } = await startAdvertiser(h('d'), ['--advertise', 'redis=7777,instance=main', ...FAST]);
    track(advD);
    await waitFor(() => loop.conns().find((r) => r.who === 'd'), { timeoutMs: 10_000, message: 'a connection served by d' });
    const firstD = loop.conns().find((r) => r.who === 'd')!;
    const up = conn.find({ msg: 'endpoint up', address: `${h('d').ip}:7777` });
    console.log(`# migration a:7001 → d:7777 (goodbye, then new announcement): gap without the service ${fmt(announced.time - t0)}; ` +
      `announced → endpoint up at c ${fmt(up && up.time - announced.time)}, → first connection served by d ended ${fmt(firstD.end - announced.time)} after it`);
    assert.ok(firstD.end - announced.time < 1000, 'followed within a second of the announcement');
    const heldClosed = await waitFor(() => loop.heldClosed().get('h0'), { timeoutMs: 5000, message: 'the connection held to a is closed' });
    console.log(`# migration: the connection held to a was closed ${fmt(heldClosed - t0)} after a's advertiser got SIGTERM`);
    const holder = track(runLoop(c, { hold: 1, count: 0, deadlineMs: 30_000 }));
    await waitFor(() => holder.results().find((r) => r.held), { timeoutMs: 10_000, message: 'a connection held to d' });
    assert.equal(holder.results().find((r) => r.held)?.who, 'd');

    // 2. crash and re-announce elsewhere: d's advertiser is killed (no goodbye: c still caches d's
    // records for their TTL) while d's redis keeps serving; the same instance name is announced
    // from a on 7001 — the new SRV (cache-flush) moves the endpoint at c.
    const t1 = Date.now();
    advD.proc.kill('SIGKILL');
    await advD.proc.exited;
    await redis(h('a'), 7001, 'a');
    const { amb: advA2, announced: ann2 } = await startAdvertiser(h('a'), ['--advertise', 'redis=7001,instance=main', ...FAST]);
    track(advA2);
    await waitFor(() => loop.conns().find((r) => r.at > t1 && r.who === 'a'), { timeoutMs: 10_000, message: 'a connection served by a again' });
    const firstA = loop.conns().find((r) => r.at > t1 && r.who === 'a')!;
    const moved = conn.find({ msg: 'endpoint moved' }, t1);
    console.log(`# migration d:7777 → a:7001 (d's advertiser killed, same instance re-announced from a): ` +
      `announced → '${moved ? 'endpoint moved' : 'no endpoint moved line'}' at c ${fmt(moved && moved.time - ann2.time)}, first connection served by a ended ${fmt(firstA.end - ann2.time)} after it`);
    assert.ok(firstA.end - ann2.time < 1000, 'followed within a second of the announcement');
    // the connection held to d (still running) is closed too: the service is no longer there
    const held2 = await waitFor(() => holder.heldClosed().get('h0'), { timeoutMs: 5000, message: 'the connection held to d is closed after the move' });
    console.log(`# migration: the connection held to d was closed ${fmt(held2 - ann2.time)} after the move was announced`);
    const t2 = Date.now();
    await loop.waitCount(loop.conns().filter((r) => r.at <= t2).length + 30);
    await loop.stop();
    const after = loop.conns().filter((r) => r.at > firstA.end);
    const s = loop.summary();
    console.log(`# migration loop: ${s.total} connections, ${s.failed} failed, by backend ${JSON.stringify(s.byWho)}`);
    assert.equal(s.failed, 0, JSON.stringify(loop.conns().filter((r) => !r.ok).slice(0, 5)));
    assert.ok(after.length > 0 && after.every((r) => r.who === 'a'), 'no connection goes back to d');
  });

  test('health before announcing: an advertiser started before its redis announces only once redis accepts', async () => {
    const [a, c] = [h('a'), h('c')];
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', ...FAST]));
    const adv = track(startAmbassador(a, ['--advertise', 'redis=7031', ...FAST]));
    const waiting = await adv.waitLog({ msg: 'advertisement', state: 'waiting-for-target' });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(adv.find({ msg: 'advertisement', state: 'announced' }), undefined, 'nothing announced without a target');
    assert.equal(conn.find({ msg: 'endpoint up' }), undefined, 'c sees nothing');
    const t0 = Date.now();
    await redis(a, 7031, 'a');
    const announced = await adv.waitLog({ msg: 'advertisement', state: 'announced' }, { since: t0 });
    const ms = await waitServedBy(c, 'a');
    console.log(`# health before announcing: '${waiting.reason}'; redis up → announced after ${fmt(announced.time - t0)}, served through c ${fmt(Date.now() - t0)} after`);
    assert.ok(announced.time - t0 < 5000);
    assert.ok(ms < 10_000);
  });

  test('relay: a loopback-only redis, and a redis on another host, are relayed and reachable from c', async () => {
    const [a, b, c, d] = [h('a'), h('b'), h('c'), h('d')];
    await redis(a, 7011, 'a-loopback', '127.0.0.1');
    await redis(d, 7012, 'd-behind-b');
    // a: `--advertise redis=7011` where redis listens only on 127.0.0.1 → relay on a's address
    const { amb: advA } = await startAdvertiser(a, ['--advertise', 'redis=7011', ...FAST]);
    track(advA);
    // b: `--advertise redis=D:7012` → relay on b to a target on another host
    const { amb: advB } = await startAdvertiser(b, ['--advertise', `redis=${d.ip}:7012`, ...FAST]);
    track(advB);
    const relayA = advA.find({ msg: 'target not reachable from peers directly: relaying' });
    const relayB = advB.find({ msg: 'target not reachable from peers directly: relaying' });
    console.log(`# relay: a relays port ${relayA?.relay} → ${relayA?.target}; b relays port ${relayB?.relay} → ${relayB?.target}`);
    assert.ok(relayA && relayB, 'both advertisers relay');
    assert.equal(relayA.target, '127.0.0.1:7011');
    assert.equal(relayB.target, `${d.ip}:7012`);
    assert.equal(advA.find({ msg: 'advertisement', state: 'announced' })?.port, relayA.relay);

    // c cannot reach a's redis directly, only through the relays
    assert.notEqual((await redisCli(c, ['-h', a.ip, '-p', '7011', 'ping'], { timeoutMs: 3000 })).reply, 'PONG');
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', ...FAST]));
    await conn.waitLog({ msg: 'endpoint up', address: `${a.ip}:${relayA.relay}` });
    await conn.waitLog({ msg: 'endpoint up', address: `${b.ip}:${relayB.relay}` });
    const loop = runLoop(c, { count: 20, intervalMs: 5, deadlineMs: 20_000 });
    const s = await loop.finished;
    console.log(`# relay: 20 connections via c: ${JSON.stringify(s.byWho)}, failed ${s.failed}`);
    assert.equal(s.failed, 0);
    assert.equal(s.byWho['a-loopback'], 10);
    assert.equal(s.byWho['d-behind-b'], 10);
  });

  test('relay: SIGTERM of a relaying advertiser under parallel clients loses no connection', async () => {
    const [a, b, c] = [h('a'), h('b'), h('c')];
    await redis(a, 7021, 'a-loopback', '127.0.0.1');
    await redis(b, 7022, 'b');
    const { amb: advA } = await startAdvertiser(a, ['--advertise', 'redis=7021', ...FAST]);
    track(advA);
    track((await startAdvertiser(b, ['--advertise', 'redis=7022', ...FAST])).amb);
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', ...FAST]));
    await waitServedBy(c, 'a-loopback');
    await waitServedBy(c, 'b');
    const loop = track(runLoop(c, { count: 400, parallel: 8, intervalMs: 2, deadlineMs: 30_000, timeoutMs: 10_000 }));
    await loop.waitCount(40);
    const t0 = Date.now();
    const st = await advA.stop();
    const exitMs = Date.now() - t0;
    await loop.finished;
    const s = loop.summary();
    const down = conn.find({ msg: 'endpoint down', endpoint: 'redis@a' }, t0);
    console.log(`# relay graceful stop: a's ambassador exit ${st.code} after ${fmt(exitMs)}, endpoint down at c ${fmt(down && down.time - t0)}; ` +
      `loop ${s.total} connections, ${s.failed} failed, ${JSON.stringify(s.byWho)}`);
    for (const f of loop.conns().filter((r) => !r.ok).slice(0, 5)) console.log(`#   failed: started ${fmt(f.at - t0)} after SIGTERM: ${f.err}`);
    assert.equal(st.code, 0);
    assert.equal(s.failed, 0);
    // every client is gone by then: the drain ends with the last relayed connection, long
    // before the 10 s drain bound (goodbye linger ~300 ms + drain)
    assert.ok(exitMs < 5000, `relaying advertiser exited ${exitMs} ms after SIGTERM: relayed connections did not finish`);
  });

  test('static source: --static a+b, no mDNS; fail over when one dies', async () => {
    const [a, b, c] = [h('a'), h('b'), h('c')];
    const ra = await redis(a, 7001, 'a');
    await redis(b, 7002, 'b');
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', '--static', `redis=${a.ip}:7001+${b.ip}:7002`, ...FAST], { iface: false }));
    assert.equal(conn.find({ msg: 'mDNS started' }), undefined, 'no multicast for a static-only connector');
    const loop = track(runLoop(c, { count: 400, intervalMs: 10, deadlineMs: 30_000, timeoutMs: 10_000 }));
    await loop.waitCount(30);
    const before = loop.summary();
    const t0 = Date.now();
    ra.process.kill('SIGKILL');
    const down = await conn.waitLog({ msg: 'endpoint down', address: `${a.ip}:7001` }, { since: t0, timeoutMs: 8000 });
    await loop.waitCount(loop.conns().length + 50);
    const t1 = Date.now();
    await redis(a, 7001, 'a');
    const up = await conn.waitLog({ msg: 'endpoint up', address: `${a.ip}:7001` }, { since: t1, timeoutMs: 8000 });
    await waitFor(() => loop.conns().find((r) => r.at > up.time && r.who === 'a'), { timeoutMs: 5000, message: 'a used again' });
    await loop.stop();
    const s = loop.summary();
    console.log(`# static: before the kill ${JSON.stringify(before.byWho)}; a's redis kill -9 → endpoint down after ${fmt(down.time - t0)} (${down.reason}); ` +
      `restarted → endpoint up after ${fmt(up.time - t1)}; loop ${s.total} connections, ${s.failed} failed, ${JSON.stringify(s.byWho)}`);
    const failed = loop.conns().filter((r) => !r.ok);
    for (const f of failed) console.log(`#   failed: started ${fmt(f.at - t0)} after the kill: ${f.err}`);
    assert.ok((before.byWho.a ?? 0) > 5 && (before.byWho.b ?? 0) > 5);
    // only a request in flight on the redis that died can be lost; later connections never fail
    assert.ok(failed.every((r) => r.at < t0 + 100), 'no new connection failed');
    assert.ok(loop.conns().filter((r) => r.at > down.time + 20 && r.end < t1).every((r) => r.who === 'b'));
  });

  test('DNS SRV source: a real dnsmasq; the SRV record moves from a to b and c follows', { skip: haveCommand('dnsmasq') ? undefined : 'dnsmasq not installed' }, async () => {
    const [a, b, c, dns] = [h('a'), h('b'), h('c'), h('dns')];
    await redis(a, 7001, 'a');
    await redis(b, 7002, 'b');
    // dnsmasq re-reads only hosts-style files on SIGHUP, not --srv-host: changing the SRV record
    // means restarting it with the new configuration (as a config-management rollout would).
    const startDns = async (target: Host, port: number): Promise<LabProcess> => {
      const conf = join(dns.dir, `dnsmasq-${target.name}.conf`);
      writeFileSync(conf, [
        'no-resolv', 'no-hosts', 'no-daemon', 'log-facility=-', 'log-queries', 'port=53',
        `listen-address=${dns.ip}`, 'bind-interfaces', 'pid-file=', 'user=root', 'local=/lab.test/', 'local-ttl=1',
        `host-record=a.lab.test,${a.ip}`, `host-record=b.lab.test,${b.ip}`,
        `srv-host=_redis._tcp.lab.test,${target.name}.lab.test,${port},0,0`, '',
      ].join('\n'));
      const p = dns.spawn('dnsmasq', ['--conf-file=' + conf], { name: `[dns] dnsmasq → ${target.name}` });
      await waitFor(async () => {
        if (!p.running) throw new Error(`dnsmasq exited: ${p.output}`);
        const r = await dns.exec('dig', ['+short', '+time=1', '+tries=1', `@${dns.ip}`, 'SRV', '_redis._tcp.lab.test'], { timeoutMs: 3000 });
        return r.stdout.includes(`${port} ${target.name}.lab.test`);
      }, { timeoutMs: 10_000, intervalMs: 50, message: 'dnsmasq answers the SRV query' });
      return p;
    };
    let dnsmasq = await startDns(a, 7001);
    const dig = await c.exec('dig', ['+noall', '+answer', '+additional', `@${dns.ip}`, 'SRV', '_redis._tcp.lab.test'], { timeoutMs: 5000 });
    for (const l of dig.stdout.trim().split('\n')) console.log(`# dns srv, dig from c: ${l.replace(/\s+/g, ' ')}`);
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', '--srv', 'redis=_redis._tcp.lab.test', '--dns-server', dns.ip, ...FAST], { iface: false }));
    await conn.waitLog({ msg: 'endpoint up', address: `${a.ip}:7001` });
    const loop = track(runLoop(c, { count: 3000, intervalMs: 10, deadlineMs: 30_000, timeoutMs: 10_000 }));
    await loop.waitCount(20);

    const t0 = Date.now();
    await dnsmasq.stop();
    dnsmasq = await startDns(b, 7002);
    track({ stop: () => dnsmasq.stop() });
    const changed = Date.now();
    await waitFor(() => loop.conns().find((r) => r.who === 'b'), { timeoutMs: 10_000, message: 'a connection served by b' });
    const firstB = loop.conns().find((r) => r.who === 'b')!;
    const up = conn.find({ msg: 'endpoint up', address: `${b.ip}:7002` });
    await loop.waitCount(loop.conns().filter((r) => r.at <= Date.now()).length + 30);
    await loop.stop();
    const s = loop.summary();
    const afterB = loop.conns().filter((r: ConnResult) => r.at > firstB.end);
    console.log(`# dns srv: dnsmasq restarted with SRV → b.lab.test:7002 (restart took ${fmt(changed - t0)}); endpoint up at c ${fmt(up && up.time - changed)} ` +
      `and first connection served by b ${fmt(firstB.end - changed)} after the new record was served; loop ${s.total} connections, ${s.failed} failed, ${JSON.stringify(s.byWho)}`);
    assert.ok(firstB.end - changed < 5000, 'followed within a few seconds (TTL 1 s)');
    assert.equal(s.failed, 0);
    assert.ok(afterB.length > 0 && afterB.every((r) => r.who === 'b'));
    assert.ok(conn.find({ msg: 'endpoint down', address: `${a.ip}:7001` }));
  });
});
