// The mesh over etcd between two subnets that no multicast crosses (a router namespace forwards
// unicast only): a real etcd 3.4 cluster of three members (two in the east site, one in the
// west), advertisers in the east with their Redis on loopback (reached through their relays),
// a connector in the west, all with --no-mdns. One lab and one etcd cluster for the whole file;
// the scenarios run in order and leave the mesh as they found it. The 60-s outage of the whole
// cluster has a file of its own (registry-etcd-outage.test.ts): the runner bounds each file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { type Amb, CLI, adminGet, fmt, runLoop, startAmbassador } from './ambassador-kit.js';
import { EtcdMesh } from './registry-kit.js';
import { type Host, type Lab, canUseNetns, haveCommand, waitFor } from '../lib/netns.js';
import { type RegistryCluster, etcdctl, registryMissing } from '../lib/registries.js';

const skip = canUseNetns() ?? registryMissing('etcd') ?? (haveCommand('redis-server') ? undefined : 'redis-server not installed');
const TTL = 4000;

describe('registry: etcd between two subnets without multicast', { skip }, () => {
  let mesh: EtcdMesh;
  let lab: Lab;
  let etcd: RegistryCluster;
  let url: string;
  let adv: Map<string, Amb>;
  let conn: Amb;
  let c: Host;
  const advertise = (name: string) => mesh.advertise(name);
  const peers = (host?: Host) => mesh.peers(host);
  const registered = () => mesh.registered();
  const endpointsUp = () => mesh.endpointsUp();

  before(async () => {
    mesh = await EtcdMesh.create(TTL);
    ({ lab, etcd, url, adv, c } = mesh);
  });
  after(async () => {
    await mesh?.destroy();
  });

  test('a service in the east is reached from the west through etcd (--no-mdns on both sides)', async () => {
    conn = await mesh.connect();
    const t0 = Date.now();
    const a1 = await advertise('a1');
    const registeredAt = a1.find({ msg: 'registry registration', state: 'registered' })!.time as number;
    const loop = runLoop(c, { count: 200, intervalMs: 20, untilOk: true, timeoutMs: 3000, deadlineMs: 15_000 });
    await loop.finished;
    const first = loop.conns().find((r) => r.ok)!;
    assert.equal(first.who, 'a1');
    console.log(`# registration -> first request served across the router: ${fmt(first.end - registeredAt)} (advertiser start -> served ${fmt(first.end - t0)})`);
    await advertise('a2');
    await waitFor(async () => (await endpointsUp()).join() === 'redis@a1,redis@a2', { timeoutMs: 10_000, message: 'both replicas up at c' });
    const p = await peers();
    assert.equal(p.registry.state, 'connected');
    assert.equal(p.registry.endpointsTrusted, 'like-mdns');
    assert.deepEqual(p.clusters[0].sources, ['registry']);
    assert.equal(p.clusters[0].endpoints[0].health.from, 'host-probe', 'host probes cross the router');
    // browse lists what is registered
    const b = await c.exec(process.execPath, [CLI, 'browse', 'redis', '--no-mdns', '--registry', url, '--once', '--wait', '1500']);
    assert.match(b.stdout, /^\+ redis@a1 .*\(registry\)/m);
    assert.match(b.stdout, /^\+ redis@a2 .*\(registry\)/m);
    // the value is the documented schema
    const value = JSON.parse((await etcdctl(etcd, c, ['get', '--print-value-only', '/mesh/redis/redis%40a1'])).trim());
    assert.equal(value.v, 1);
    assert.deepEqual(value.addresses, [lab.host('a1').ip]);
    assert.ok(value.txt.hostprobe && value.txt['relay-to'] === '127.0.0.1:7001');
  });

  test('kill -9 of an advertiser: out at the connector within ~1.5 s (host probes), its key gone within the TTL', async () => {
    const loop = runLoop(c, { count: 100_000, intervalMs: 10, timeoutMs: 3000, deadlineMs: 30_000 });
    await loop.waitCount(20);
    const t0 = Date.now();
    adv.get('a2')!.proc.kill('SIGKILL');
    const down = await conn.waitLog((l) => l.msg === 'endpoint down' && l.endpoint === 'redis@a2' && (l.time as number) >= t0, { timeoutMs: 5000 });
    await waitFor(async () => !(await registered()).some((k) => k.includes('a2')), { timeoutMs: TTL + 4000, intervalMs: 200, message: 'a2 key gone' });
    const gone = Date.now() - t0;
    await loop.stop();
    const failed = loop.conns().filter((r) => !r.ok);
    console.log(`# kill -9: endpoint down at c after ${fmt((down.time as number) - t0)} (${down.reason}); key gone after ${fmt(gone)} (TTL ${TTL} ms); ${failed.length} failed of ${loop.conns().length}`);
    assert.ok((down.time as number) - t0 < 2500, 'out as fast as on a LAN');
    assert.ok(gone < TTL + 3000);
    // (a request in flight on the killed relay dies with it, as on a LAN)
    assert.ok(failed.every((r) => r.at < t0 + 100 && r.end >= t0), `only requests in flight at the kill: ${JSON.stringify(failed.slice(0, 3))}`);
    // restarted: registered again under its own name (no rename: same host takes its key back)
    const again = await advertise('a2');
    assert.equal(again.find({ msg: 'registry registration', state: 'registered' })!.instance, 'redis@a2');
  });

  test('graceful stop: the key is deleted before the listeners close; 0 failed requests with two replicas', async () => {
    await waitFor(async () => (await endpointsUp()).length === 2, { timeoutMs: 10_000, message: 'two replicas up' });
    const loop = runLoop(c, { count: 100_000, intervalMs: 5, timeoutMs: 3000, deadlineMs: 30_000 });
    await loop.waitCount(20);
    const a2 = adv.get('a2')!;
    const t0 = Date.now();
    a2.proc.kill('SIGTERM');
    await a2.proc.exited;
    const withdrawn = a2.find({ msg: 'registry registration', state: 'withdrawn' })!;
    const stopped = a2.find({ msg: 'advertisement', state: 'stopped' })!;
    assert.ok((withdrawn.time as number) <= (stopped.time as number), 'deleted before the relay closed');
    const removed = await conn.waitLog((l) => l.msg === 'endpoint down' && l.endpoint === 'redis@a2' && (l.time as number) >= t0, { timeoutMs: 5000 });
    await loop.waitCount(loop.conns().length + 50);
    await loop.stop();
    const failed = loop.conns().filter((r) => !r.ok);
    console.log(`# graceful: key deleted ${fmt((withdrawn.time as number) - t0)} after SIGTERM, endpoint out at c after ${fmt((removed.time as number) - t0)} (${removed.reason}); ${failed.length} failed of ${loop.conns().length}`);
    assert.equal(failed.length, 0, JSON.stringify(failed.slice(0, 3)));
    assert.ok(!(await registered()).some((k) => k.includes('a2')));
    await advertise('a2');
  });

  test('the etcd leader killed: no endpoint lost, no registration lost, no failed request', async () => {
    await waitFor(async () => (await endpointsUp()).length === 2, { timeoutMs: 10_000, message: 'two replicas up' });
    const loop = runLoop(c, { count: 100_000, intervalMs: 10, timeoutMs: 3000, deadlineMs: 30_000 });
    await loop.waitCount(20);
    const leader = await etcd.leader();
    const t0 = Date.now();
    await etcd.stopMember(leader, 'SIGKILL');
    // a new leader, then a lease keep-alive round and a consistency check on the survivors
    await waitFor(async () => (await etcd.leader()) !== leader, { timeoutMs: 15_000, intervalMs: 300, message: 'a new leader' });
    await new Promise((r) => setTimeout(r, TTL + 1000));
    assert.equal((await registered()).length, 2, 'both registrations kept');
    assert.equal((await endpointsUp()).length, 2);
    await loop.stop();
    const failed = loop.conns().filter((r) => !r.ok);
    assert.equal(conn.findAll((l) => l.msg === 'endpoint down' && (l.time as number) >= t0).length, 0, 'no endpoint lost');
    console.log(`# etcd leader (${leader.host.name}) killed: ${failed.length} failed of ${loop.conns().length}; no endpoint down, 2 registrations kept`);
    assert.equal(failed.length, 0);
    await etcd.startMember(leader);
  });

  test('20 quick changes: the connector converges, its registry reads stay bounded; values not ours are ignored and counted', async () => {
    const before = (await peers()).registry;
    const record = (i: number) => JSON.stringify({ v: 1, service: 'redis', instance: `burst-${i}`, host: `burst-${i}`, addresses: [`198.51.100.${i + 1}`], port: 7001, priority: 0, weight: 0, txt: {} });
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) await etcdctl(etcd, lab.host('e1'), ['put', `/mesh/redis/burst-${i}`, record(i)]);
    for (let i = 0; i < 10; i++) await etcdctl(etcd, lab.host('e1'), ['del', `/mesh/redis/burst-${i}`]);
    await etcdctl(etcd, lab.host('e1'), ['put', '/mesh/redis/junk', 'not json at all']);
    await etcdctl(etcd, lab.host('e1'), ['put', '/mesh/redis/future', JSON.stringify({ v: 9, what: 'a later schema' })]);
    await waitFor(async () => (await peers()).clusters[0].endpoints.length === 12, { timeoutMs: 10_000, message: 'converged on 12 endpoints' });
    const ms = Date.now() - t0;
    await waitFor(() => conn.findAll({ msg: /^registry value ignored/ }).length === 2, { timeoutMs: 5000, message: 'two values ignored' });
    const after = (await peers()).registry;
    const ignored = conn.findAll({ msg: /^registry value ignored/ }).map((l) => l.key).sort();
    assert.deepEqual(ignored, ['future', 'junk']);
    assert.ok(conn.proc.running);
    console.log(`# 30 changes in ${fmt(ms)}: c converged; registry reads during the burst ${after.reads - before.reads} (requests ${after.requests - before.requests}); ${conn.findAll({ msg: 'endpoint up' }).length} endpoint-up lines`);
    assert.ok(after.reads - before.reads <= 6, 'watch events carry the values: no read per change');
    for (let i = 10; i < 20; i++) await etcdctl(etcd, lab.host('e1'), ['del', `/mesh/redis/burst-${i}`]);
    await etcdctl(etcd, lab.host('e1'), ['del', '/mesh/redis/junk']);
    await etcdctl(etcd, lab.host('e1'), ['del', '/mesh/redis/future']);
    await waitFor(async () => (await peers()).clusters[0].endpoints.length === 2, { timeoutMs: 10_000, message: 'back to 2 endpoints' });
    // at rest: one keys-only check per ~10 s per watched service
    const r0 = (await peers()).registry;
    await new Promise((r) => setTimeout(r, 12_000));
    const r1 = (await peers()).registry;
    console.log(`# at rest: ${((r1.requests - r0.requests) * 60_000 / 12_000).toFixed(1)} registry requests/min at the connector (reads ${r1.reads - r0.reads} in 12 s)`);
    assert.ok(r1.requests - r0.requests <= 3);
  });

  test('an advertiser cut off from etcd longer than its TTL: its key expires, and is written again when the partition heals (no rename, no restart)', async () => {
    const a2 = lab.host('a2');
    const t0 = Date.now();
    for (const m of etcd.members) await a2.run('iptables', ['-A', 'OUTPUT', '-d', m.host.ip, '-j', 'DROP']);
    await waitFor(async () => !(await registered()).some((k) => k.includes('a2')), { timeoutMs: TTL + 5000, intervalMs: 200, message: 'a2 key expired' });
    const expired = Date.now() - t0;
    const out = await conn.waitLog((l) => l.msg === 'endpoint down' && l.endpoint === 'redis@a2' && (l.time as number) >= t0, { timeoutMs: 5000 });
    await a2.run('iptables', ['-F', 'OUTPUT']);
    const t1 = Date.now();
    await waitFor(async () => (await registered()).some((k) => k.endsWith('redis%40a2')), { timeoutMs: 15_000, intervalMs: 200, message: 'a2 registered again' });
    const back = Date.now() - t1;
    const amb = adv.get('a2')!;
    assert.ok(amb.proc.running, 'no restart');
    assert.ok(amb.find({ msg: /lease was lost/ }), 'the lost lease is said');
    await waitFor(async () => (await endpointsUp()).length === 2, { timeoutMs: 10_000, message: 'a2 back at c' });
    console.log(`# partition of a2 from etcd: key expired ${fmt(expired)} after the cut (TTL ${TTL} ms), endpoint out at c ${fmt((out.time as number) - t0)}; written again ${fmt(back)} after it healed`);
  });

  test('bad input: a malformed URL exits 2 with one line; an unreachable registry at start is a warning, not an exit', async () => {
    const bad = spawnSync(process.execPath, [CLI, '--connect', 'redis=6399', '--registry', 'etcd//nope'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr.trim(), /^ambassador: error: --registry etcd\/\/nope: not a registry URL/);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
    const lone = startAmbassador(c, ['--no-mdns', '--registry', `etcd://${lab.subnets.east!.replace(/0\/24$/, '200')}:2379/mesh`, '--connect', 'redis=6398'], { iface: false });
    await lone.waitLog({ msg: /registry unreachable/ }, { timeoutMs: 15_000 });
    assert.ok(lone.proc.running);
    await lone.stop();
  });

  test('trust: with etcd authentication, the endpoints it names get injected credentials (--no-mdns, no TLS, no --trusted-lan)', async () => {
    await etcdctl(etcd, c, ['user', 'add', 'root', '--new-user-password', 'rootpw']);
    await etcdctl(etcd, c, ['user', 'add', 'mesh', '--new-user-password', 'mesh pw']);
    await etcdctl(etcd, c, ['role', 'add', 'mesh-rw']);
    await etcdctl(etcd, c, ['role', 'grant-permission', 'mesh-rw', '--prefix=true', 'readwrite', '/secure/']);
    await etcdctl(etcd, c, ['user', 'grant-role', 'mesh', 'mesh-rw']);
    await etcdctl(etcd, c, ['auth', 'enable']);
    const a1 = lab.host('a1');
    await a1.run('redis-cli', ['-p', '7001', 'config', 'set', 'requirepass', 'redis-secret']);
    const { writeFileSync } = await import('node:fs');
    const etcdAuth = `${lab.tmpdir}/etcd-auth`;
    const redisAuth = `${lab.tmpdir}/redis-auth`;
    writeFileSync(etcdAuth, 'mesh mesh pw\n');
    writeFileSync(redisAuth, 'redis-secret\n');
    const secureUrl = `${etcd.url('/secure', `ttl=${TTL / 1000}s&auth-file=${etcdAuth}`)}`;
    const adv2 = startAmbassador(a1, ['--no-mdns', '--registry', secureUrl, '--advertise', 'redis=127.0.0.1:7001', '--probe-port', '5391'], { iface: false });
    await adv2.waitLog({ msg: 'registry registration', state: 'registered' }, { timeoutMs: 15_000 });
    const con2 = startAmbassador(c, ['--no-mdns', '--registry', secureUrl, '--connect', `redis=6390,auth-file=${redisAuth}`, '--admin', '9902'], { iface: false });
    await con2.waitLog({ msg: 'endpoint up' }, { timeoutMs: 15_000 });
    const p = JSON.parse(await adminGet(c, 9902, '/peers'));
    assert.equal(p.registry.authenticated, true);
    assert.equal(p.registry.endpointsTrusted, 'named-endpoints');
    assert.equal(p.clusters[0].credentials, 'named-endpoints');
    assert.equal(p.clusters[0].endpoints[0].namedByOperator, true);
    // the application sends no password: the ambassador logs in for it
    const r = await c.exec('redis-cli', ['-p', '6390', 'get', 'whoami'], { timeoutMs: 5000 });
    assert.equal(r.stdout.trim(), 'a1');
    // the secret is in no log line and nowhere in /peers
    assert.ok(!con2.proc.output.includes('mesh pw') && !adv2.proc.output.includes('mesh pw'));
    assert.ok(!JSON.stringify(p).includes('mesh pw'));
    // without credentials the registry refuses: said, and the ambassador keeps running
    const anon = startAmbassador(c, ['--no-mdns', '--registry', etcd.url('/secure'), '--connect', 'redis=6391'], { iface: false });
    await anon.waitLog({ msg: /^registry: refused: .*user name is empty/ }, { timeoutMs: 15_000 });
    assert.ok(anon.proc.running);
  });
});
