// The mesh over ZooKeeper between two subnets that no multicast crosses: a real ZooKeeper 3.8
// ensemble of three (two members in the east site, one in the west), advertisers in the east
// with Redis on loopback (reached through their relays), a connector in the west, all with
// --no-mdns. The JVMs take seconds to start: one ensemble for the whole file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { type Amb, adminGet, fmt, runLoop, startAmbassador } from './ambassador-kit.js';
import { type Host, Lab, canUseNetns, haveCommand, startRedis, waitFor } from '../lib/netns.js';
import { type RegistryCluster, registryMissing, startZooKeeper } from '../lib/registries.js';

const skip = canUseNetns() ?? registryMissing('zookeeper') ?? (haveCommand('redis-server') ? undefined : 'redis-server not installed');
const TTL = 4000;
const ADMIN = 9901;
const ZK_MODULE = createRequire(import.meta.url).resolve('node-zookeeper-client');

// A tiny ZooKeeper tool run inside a lab host, one session for a list of operations in order:
// ["ls", DIR] (prints the children), ["put", PATH, VALUE] (persistent, parents made), ["del", PATH].
const ZK_TOOL = String.raw`
const zk = require(process.argv[1]).createClient(process.argv[2], { sessionTimeout: 4000, retries: 2 });
const ops = JSON.parse(process.argv[3]);
setTimeout(() => { console.error('timeout'); process.exit(3); }, 20000);
const fail = (e) => { console.error(String(e)); process.exit(2); };
const run = (i) => {
  if (i >= ops.length) { zk.close(); setTimeout(() => process.exit(0), 50); return; }
  const [op, path, value] = ops[i];
  const next = (e) => (e ? fail(e) : run(i + 1));
  if (op === 'ls') zk.getChildren(path, (e, c) => { if (e && e.getCode() !== -101) return fail(e); console.log((c || []).sort().join('\n')); run(i + 1); });
  else if (op === 'put') zk.mkdirp(path.replace(/\/[^/]*$/, ''), (e) => (e ? fail(e) : zk.create(path, Buffer.from(value), next)));
  else if (op === 'del') zk.remove(path, next);
};
zk.once('connected', () => run(0));
zk.connect();
`;

describe('registry: ZooKeeper between two subnets without multicast', { skip }, () => {
  let lab: Lab;
  let zk: RegistryCluster;
  let url: string;
  const adv = new Map<string, Amb>();
  let conn: Amb;
  let c: Host;

  const zkTool = async (...ops: string[][]): Promise<string> => {
    const live = zk.members.filter((m) => m.proc?.running).map((m) => `${m.host.ip}:2181`).join(',');
    return lab.host('z1').run(process.execPath, ['-e', ZK_TOOL, ZK_MODULE, live, JSON.stringify(ops)], { timeoutMs: 30_000 });
  };
  const advertise = async (name: string): Promise<Amb> => {
    const a = startAmbassador(lab.host(name), ['--no-mdns', '--registry', url, '--advertise', 'redis=127.0.0.1:7001', '--admin', String(ADMIN)], { iface: false });
    await a.waitLog({ msg: 'registry registration', state: 'registered' }, { timeoutMs: 20_000 });
    adv.set(name, a);
    return a;
  };
  const peers = async () => JSON.parse(await adminGet(c, ADMIN, '/peers'));
  const registered = async () => (await zkTool(['ls', '/mesh/redis'])).split('\n').filter((l) => l.trim() !== '');
  const endpointsUp = async () => (await peers()).clusters[0].endpoints.filter((e: { state: string }) => e.state === 'up').map((e: { label: string }) => e.label).sort();

  before(async () => {
    lab = await Lab.create({ hosts: ['z1', 'z2', 'a1', 'a2', 'z3', 'c'], sites: { east: ['z1', 'z2', 'a1', 'a2'], west: ['z3', 'c'] } });
    c = lab.host('c');
    zk = await startZooKeeper([lab.host('z1'), lab.host('z2'), lab.host('z3')]);
    url = zk.url('/mesh', `ttl=${TTL / 1000}s`);
    for (const name of ['a1', 'a2']) {
      const r = await startRedis(lab.host(name), { port: 7001, bind: '127.0.0.1' });
      await r.host.run('redis-cli', ['-p', '7001', 'set', 'whoami', name]);
    }
  });
  after(async () => {
    await lab?.destroy();
  });

  test('a service in the east is reached from the west through ZooKeeper (--no-mdns on both sides)', async () => {
    // (right after three JVMs started, a loaded machine may take a while to start node too)
    conn = startAmbassador(c, ['--no-mdns', '--registry', url, '--connect', 'redis=6379', '--admin', String(ADMIN)], { iface: false });
    await conn.waitLog({ msg: 'listening' }, { timeoutMs: 30_000 });
    const a1 = await advertise('a1');
    const registeredAt = a1.find({ msg: 'registry registration', state: 'registered' })!.time;
    const loop = runLoop(c, { count: 300, intervalMs: 20, untilOk: true, timeoutMs: 3000, deadlineMs: 15_000 });
    await loop.finished;
    const first = loop.conns().find((r) => r.ok)!;
    assert.equal(first.who, 'a1');
    console.log(`# ZooKeeper: registration -> first request served across the router: ${fmt(first.end - registeredAt)}`);
    await advertise('a2');
    await waitFor(async () => (await endpointsUp()).join() === 'redis@a1,redis@a2', { timeoutMs: 10_000, message: 'both replicas up at c' });
    assert.deepEqual(await registered(), ['redis%40a1', 'redis%40a2']);
    assert.equal((await peers()).registry.kind, 'zookeeper');
  });

  test('kill -9 of an advertiser: out at the connector within ~1.5 s, its ephemeral node gone within the session timeout', async () => {
    const loop = runLoop(c, { count: 100_000, intervalMs: 10, timeoutMs: 3000, deadlineMs: 30_000 });
    await loop.waitCount(20);
    const t0 = Date.now();
    adv.get('a2')!.proc.kill('SIGKILL');
    const down = await conn.waitLog((l) => l.msg === 'endpoint down' && l.endpoint === 'redis@a2' && l.time >= t0, { timeoutMs: 5000 });
    await waitFor(async () => !(await registered()).includes('redis%40a2'), { timeoutMs: TTL + 5000, intervalMs: 250, message: 'a2 node gone' });
    const gone = Date.now() - t0;
    await loop.stop();
    const failed = loop.conns().filter((r) => !r.ok);
    console.log(`# ZooKeeper kill -9: endpoint down at c after ${fmt(down.time - t0)} (${down.reason}); node gone after ${fmt(gone)} (session ${TTL} ms); ${failed.length} failed of ${loop.conns().length}`);
    assert.ok(down.time - t0 < 2500);
    assert.ok(failed.every((r) => r.at < t0 + 100 && r.end >= t0), `only requests in flight at the kill: ${JSON.stringify(failed.slice(0, 3))}`);
    const again = await advertise('a2');
    assert.equal(again.find({ msg: 'registry registration', state: 'registered' })!.instance, 'redis@a2');
  });

  test('graceful stop: the node is deleted before the listeners close; 0 failed requests', async () => {
    await waitFor(async () => (await endpointsUp()).length === 2, { timeoutMs: 10_000, message: 'two replicas up' });
    const loop = runLoop(c, { count: 100_000, intervalMs: 5, timeoutMs: 3000, deadlineMs: 30_000 });
    await loop.waitCount(20);
    const a2 = adv.get('a2')!;
    const t0 = Date.now();
    a2.proc.kill('SIGTERM');
    await a2.proc.exited;
    const withdrawn = a2.find({ msg: 'registry registration', state: 'withdrawn' })!;
    assert.ok(withdrawn.time <= a2.find({ msg: 'advertisement', state: 'stopped' })!.time);
    const removed = await conn.waitLog((l) => l.msg === 'endpoint down' && l.endpoint === 'redis@a2' && l.time >= t0, { timeoutMs: 5000 });
    await loop.waitCount(loop.conns().length + 50);
    await loop.stop();
    const failed = loop.conns().filter((r) => !r.ok);
    console.log(`# ZooKeeper graceful: endpoint out at c after ${fmt(removed.time - t0)} (${removed.reason}); ${failed.length} failed of ${loop.conns().length}`);
    assert.equal(failed.length, 0, JSON.stringify(failed.slice(0, 3)));
    await advertise('a2');
  });

  test('the ZooKeeper leader killed: no endpoint lost, no registration lost, no failed request', async () => {
    await waitFor(async () => (await endpointsUp()).length === 2, { timeoutMs: 10_000, message: 'two replicas up' });
    const loop = runLoop(c, { count: 100_000, intervalMs: 10, timeoutMs: 3000, deadlineMs: 40_000 });
    await loop.waitCount(20);
    const leader = await zk.leader();
    const t0 = Date.now();
    await zk.stopMember(leader, 'SIGKILL');
    await waitFor(async () => (await zk.leader()) !== leader, { timeoutMs: 20_000, intervalMs: 300, message: 'a new leader' });
    await new Promise((r) => setTimeout(r, TTL + 1000));
    assert.deepEqual(await registered(), ['redis%40a1', 'redis%40a2'], 'both registrations kept');
    assert.equal((await endpointsUp()).length, 2);
    await loop.stop();
    const failed = loop.conns().filter((r) => !r.ok);
    assert.equal(conn.findAll((l) => l.msg === 'endpoint down' && l.time >= t0).length, 0, 'no endpoint lost');
    console.log(`# ZooKeeper leader (${leader.host.name}) killed: ${failed.length} failed of ${loop.conns().length}; no endpoint down, 2 registrations kept`);
    assert.equal(failed.length, 0);
    await zk.startMember(leader);
  });

  test('20 quick changes: the connector converges with a bounded number of reads; values not ours are ignored', async () => {
    const before = (await peers()).registry;
    const record = (i: number) => JSON.stringify({ v: 1, service: 'redis', instance: `burst-${i}`, host: `burst-${i}`, addresses: [`198.51.100.${i + 1}`], port: 7001, priority: 0, weight: 0, txt: {} });
    const t0 = Date.now();
    await zkTool(...Array.from({ length: 20 }, (_, i) => ['put', `/mesh/redis/burst-${i}`, record(i)]),
      ...Array.from({ length: 10 }, (_, i) => ['del', `/mesh/redis/burst-${i}`]), ['put', '/mesh/redis/junk', 'not json']);
    await waitFor(async () => (await peers()).clusters[0].endpoints.length === 12, { timeoutMs: 15_000, message: 'converged on 12 endpoints' });
    await waitFor(() => conn.findAll({ msg: /^registry value ignored/ }).length === 1, { timeoutMs: 5000, message: 'junk ignored' });
    const after = (await peers()).registry;
    console.log(`# ZooKeeper: 31 changes in ${fmt(Date.now() - t0)}: c converged; registry reads during the burst ${after.reads - before.reads} (a listing is 1 + one read per child)`);
    assert.ok(after.reads - before.reads < 31 * 13, 'fewer reads than one listing per change');
    await zkTool(...Array.from({ length: 10 }, (_, i) => ['del', `/mesh/redis/burst-${i + 10}`]), ['del', '/mesh/redis/junk']);
    await waitFor(async () => (await peers()).clusters[0].endpoints.length === 2, { timeoutMs: 10_000, message: 'back to 2 endpoints' });
    const r0 = (await peers()).registry;
    await new Promise((r) => setTimeout(r, 10_000));
    const r1 = (await peers()).registry;
    console.log(`# ZooKeeper at rest: ${((r1.requests - r0.requests) * 6).toFixed(0)} registry requests/min at the connector (one cversion check per TTL/3)`);
  });

  test('an advertiser cut off longer than its session timeout: its node expires, and is written again when the partition heals', async () => {
    const a2 = lab.host('a2');
    const t0 = Date.now();
    for (const m of zk.members) await a2.run('iptables', ['-A', 'OUTPUT', '-d', m.host.ip, '-j', 'DROP']);
    await waitFor(async () => !(await registered()).includes('redis%40a2'), { timeoutMs: TTL + 8000, intervalMs: 250, message: 'a2 node expired' });
    const expired = Date.now() - t0;
    const out = await conn.waitLog((l) => l.msg === 'endpoint down' && l.endpoint === 'redis@a2' && l.time >= t0, { timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 1000));
    await a2.run('iptables', ['-F', 'OUTPUT']);
    const t1 = Date.now();
    await waitFor(async () => (await registered()).includes('redis%40a2'), { timeoutMs: 20_000, intervalMs: 250, message: 'a2 registered again' });
    const back = Date.now() - t1;
    const amb = adv.get('a2')!;
    assert.ok(amb.proc.running, 'no restart');
    assert.ok(amb.find({ msg: /session was lost|session is expired/ }), 'the lost session is said');
    await waitFor(async () => (await endpointsUp()).length === 2, { timeoutMs: 10_000, message: 'a2 back at c' });
    console.log(`# ZooKeeper partition of a2: node expired ${fmt(expired)} after the cut (session ${TTL} ms), out at c ${fmt(out.time - t0)}; written again ${fmt(back)} after it healed`);
  });
});

describe('registry: ZooKeeper with digest authentication', { skip }, () => {
  let lab: Lab;
  let zk: RegistryCluster;
  before(async () => {
    lab = await Lab.create({ hosts: ['z1', 'a1', 'c'] });
    zk = await startZooKeeper([lab.host('z1')]);
    await startRedis(lab.host('a1'), { port: 7002, bind: '127.0.0.1' });
    await lab.host('a1').run('redis-cli', ['-p', '7002', 'set', 'whoami', 'a1-secure']);
    await lab.host('a1').run('redis-cli', ['-p', '7002', 'config', 'set', 'requirepass', 'redis-secret']);
  });
  after(async () => {
    await lab?.destroy();
  });

  test('nodes only its user can read; the endpoints it names get injected credentials; anonymous readers get nothing', async () => {
    const { writeFileSync } = await import('node:fs');
    const zkAuth = `${lab.tmpdir}/zk-auth`;
    const redisAuth = `${lab.tmpdir}/redis-auth`;
    writeFileSync(zkAuth, 'mesh mesh pw\n');
    writeFileSync(redisAuth, 'redis-secret\n');
    const secure = zk.url('/secure', `ttl=4s&auth-file=${zkAuth}`);
    const c = lab.host('c');
    const adv = startAmbassador(lab.host('a1'), ['--no-mdns', '--registry', secure, '--advertise', 'redis=127.0.0.1:7002'], { iface: false });
    await adv.waitLog({ msg: 'registry registration', state: 'registered' }, { timeoutMs: 20_000 });
    const conn = startAmbassador(c, ['--no-mdns', '--registry', secure, '--connect', `redis=6390,auth-file=${redisAuth}`, '--admin', '9902'], { iface: false });
    await conn.waitLog({ msg: 'endpoint up' }, { timeoutMs: 20_000 });
    const p = JSON.parse(await adminGet(c, 9902, '/peers'));
    assert.equal(p.registry.authenticated, true);
    assert.equal(p.registry.endpointsTrusted, 'named-endpoints');
    assert.equal(p.clusters[0].endpoints[0].namedByOperator, true);
    // the application sends no password: the ambassador logs in for it
    const r = await c.exec('redis-cli', ['-p', '6390', 'get', 'whoami'], { timeoutMs: 5000 });
    assert.equal(r.stdout.trim(), 'a1-secure');
    assert.ok(!conn.proc.output.includes('mesh pw') && !adv.proc.output.includes('mesh pw'), 'the secret in no log line');
    // Anyone else: ZooKeeper refuses to list the nodes (ACL: only the authenticated user).
    const anonymous = await lab.host('z1').exec(process.execPath, ['-e', ZK_TOOL, ZK_MODULE, `${zk.members[0]!.host.ip}:2181`, JSON.stringify([['ls', '/secure/redis']])], { timeoutMs: 30_000 });
    assert.notEqual(anonymous.code, 0, `anonymous listing refused: ${anonymous.stdout}`);
    assert.match(anonymous.stderr, /NO_AUTH/);
    const anon = startAmbassador(c, ['--no-mdns', '--registry', zk.url('/secure'), '--connect', 'redis=6391', '--admin', '9903'], { iface: false });
    const refused = await anon.waitLog({ msg: /^registry: not allowed to read \/secure\/redis \(ZooKeeper NO_AUTH\)/ }, { timeoutMs: 20_000 });
    console.log(`# anonymous connector: ${refused.msg}`);
    const q = JSON.parse(await adminGet(c, 9903, '/peers'));
    assert.equal(q.clusters[0].endpoints.length, 0);
    assert.ok(anon.proc.running);
  });
});
