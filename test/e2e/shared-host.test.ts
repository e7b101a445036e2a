// Several ambassadors on one host, and what a peer sees of them (lab with IPv6 link-local on):
// - a relay answers at every address its host announces, the IPv6 one too (it listened on IPv4
//   only, and a connect to the announced AAAA address was refused);
// - one target advertised by both is one endpoint at the peer, not two (twice its share);
// - a clean stop of one does not take the other's services down at the peer: the host's address
//   records it shares with the other get no goodbye while the other still answers for them.
//
// a: redis :7000 (every IPv4 address), redis 127.0.0.1:7100 (relayed), redis :7200;
//    amb1 `--advertise one=7000 --advertise dup=7000`,
//    amb2 `--advertise sib=7200 --advertise dup=7000 --advertise loop=7100`
// c: `--connect sib=6381 --connect dup=6382 --connect loop=6383 --admin 9924`
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { canUseNetns, haveCommand, Lab, redisCli, startRedis, type Host } from '../lib/netns.js';
import { adminGet, type Amb, fmt, startAdvertiser, startConnector, tagRedis, waitServedBy } from './ambassador-kit.js';

const skip = canUseNetns() ??
  (haveCommand('redis-server') && haveCommand('redis-cli') && haveCommand('curl') ? undefined : 'needs redis-server, redis-cli and curl');

interface PeersCluster {
  name: string;
  endpoints: Array<{ label: string; address: string; addresses: string[]; port: number; state: string }>;
  duplicates: Array<{ label: string; why: string }>;
}

describe('several ambassadors on one host', { skip }, () => {
  let lab: Lab;
  let a: Host;
  let c: Host;
  let amb1: Amb;
  let conn: Amb;

  const peers = async (name: string): Promise<PeersCluster> => {
    const all = JSON.parse(await adminGet(c, 9924, '/peers')) as { clusters: PeersCluster[] };
    return all.clusters.find((x) => x.name === name)!;
  };

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'c'], prefix: 'mates', ipv6: true });
    [a, c] = [lab.host('a'), lab.host('c')];
    const [r7000, r7100, r7200] = await Promise.all([
      startRedis(a, { port: 7000 }), startRedis(a, { port: 7100, bind: '127.0.0.1' }), startRedis(a, { port: 7200 }),
    ]);
    await Promise.all([tagRedis(r7000, '7000'), tagRedis(r7100, '7100'), tagRedis(r7200, '7200')]);
    conn = await startConnector(c, ['--connect', 'sib=6381', '--connect', 'dup=6382', '--connect', 'loop=6383', '--admin', '9924']);
    amb1 = (await startAdvertiser(a, ['--advertise', 'one=7000', '--advertise', 'dup=7000'])).amb;
    const amb2 = (await startAdvertiser(a, ['--advertise', 'sib=7200', '--advertise', 'dup=7000', '--advertise', 'loop=7100'])).amb;
    await amb2.waitLog((l) => amb2.findAll({ msg: 'advertisement', state: 'announced' }).length === 3 && l.msg === 'advertisement');
    await Promise.all([
      waitServedBy(c, '7200', { port: 6381 }), waitServedBy(c, '7000', { port: 6382 }), waitServedBy(c, '7100', { port: 6383 }),
    ]);
  });
  after(async () => {
    await lab?.destroy();
  });

  test('a relay answers at every address its host announces, IPv6 link-local included', async () => {
    const loop = await peers('loop');
    assert.equal(loop.endpoints.length, 1);
    const ep = loop.endpoints[0]!;
    const v6 = ep.addresses.filter((x) => x.includes(':'));
    assert.ok(v6.length > 0 && ep.addresses.length > v6.length, `announced with IPv4 and IPv6: ${ep.addresses.join(' ')}`);
    for (const address of ep.addresses) {
      const r = await redisCli(c, ['-h', address, '-p', String(ep.port), 'get', 'whoami']);
      assert.equal(r.reply, '7100', `through the relay at ${address} port ${ep.port}: ${r.stdout}${r.stderr}`);
    }
  });

  test('one target advertised by two ambassadors is one endpoint, said once', async () => {
    const dup = await peers('dup');
    assert.equal(dup.endpoints.length, 1, JSON.stringify(dup.endpoints.map((e) => e.label)));
    assert.equal(dup.duplicates.length, 1);
    assert.match(dup.duplicates[0]!.why, new RegExp(`the same backend \\(${a.ip}:7000\\) as ${dup.endpoints[0]!.label.replace(/[()]/g, '\\$&')}`));
    assert.equal(conn.findAll({ msg: 'instance ignored: another instance announces the same backend', service: 'dup' }).length, 1);
  });

  test('a clean stop of one ambassador leaves the services of the other up at the peer', async () => {
    const t0 = Date.now();
    const st = await amb1.stop();
    assert.equal(st.code, 0);
    const exited = Date.now();
    // amb1's own service leaves (its goodbye)…
    await conn.waitLog({ msg: 'endpoint down', service: 'dup' }, { since: t0 }).catch(() => undefined);
    // …and a request through sib after amb1 is gone (its last packets long handled) still works.
    assert.equal((await redisCli(c, ['-p', '6381', 'get', 'whoami'])).reply, '7200');
    const sibDown = conn.findAll({ msg: 'endpoint down', service: 'sib' }, t0);
    const dupDown = conn.findAll({ msg: 'endpoint down', service: 'dup' }, t0);
    console.log(`# amb1 stopped in ${fmt(exited - t0)}; at c since: sib down ${sibDown.length} time(s)` +
      `${sibDown.map((l) => ` (${l.reason} after ${fmt(l.time - t0)})`).join('')}, dup down ${dupDown.length}` +
      `${dupDown.map((l) => ` (${l.reason} after ${fmt(l.time - t0)})`).join('')}`);
    assert.deepEqual(sibDown.map((l) => l.reason), [], 'the other ambassador\'s service stays up');
    assert.equal((await redisCli(c, ['-p', '6382', 'get', 'whoami'])).reply, '7000', 'dup is served by the other instance');
  });
});
