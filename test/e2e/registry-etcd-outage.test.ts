// The whole etcd cluster stopped for 60 s under a mesh between two subnets without multicast
// (see registry-kit.ts): connectors keep serving the last endpoints, a replica killed meanwhile
// is still failed over by host liveness, and when the registry is back everything is registered
// again within seconds. A file of its own: the runner bounds each file's time.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Amb, adminGet, fmt, runLoop } from './ambassador-kit.js';
import { ADMIN, EtcdMesh } from './registry-kit.js';
import { canUseNetns, haveCommand, waitFor } from '../lib/netns.js';
import { registryMissing } from '../lib/registries.js';

const skip = canUseNetns() ?? registryMissing('etcd') ?? (haveCommand('redis-server') ? undefined : 'redis-server not installed');
const TTL = 4000;

describe('registry: etcd stopped for 60 s', { skip }, () => {
  let mesh: EtcdMesh;
  let conn: Amb;
  before(async () => {
    mesh = await EtcdMesh.create(TTL);
    conn = await mesh.connect();
    await mesh.advertise('a1');
    await mesh.advertise('a2');
  });
  after(async () => {
    await mesh?.destroy();
  });

  test('the whole registry stopped for 60 s: the last endpoints keep serving, a replica killed meanwhile is failed over, everything registered again within seconds', async () => {
    await waitFor(async () => (await mesh.endpointsUp()).length === 2, { timeoutMs: 10_000, message: 'two replicas up' });
    const loop = runLoop(mesh.c, { count: 1_000_000, intervalMs: 20, timeoutMs: 3000, deadlineMs: 75_000 });
    await loop.waitCount(20);
    const t0 = Date.now();
    await mesh.etcd.stop('SIGTERM');
    await conn.waitLog({ msg: /^registry unreachable/ }, { since: t0, timeoutMs: 15_000 });
    const h = JSON.parse(await adminGet(mesh.c, ADMIN, '/healthz'));
    assert.equal(h.status, 'ok');
    assert.notEqual(h.registry.state, 'connected');
    assert.equal((await mesh.peers()).registry.keepingLastEndpoints, true);
    // a replica dies while the registry is away: host probes take it out
    await new Promise((r) => setTimeout(r, 20_000));
    const tk = Date.now();
    mesh.adv.get('a2')!.proc.kill('SIGKILL');
    const down = await conn.waitLog((l) => l.msg === 'endpoint down' && l.endpoint === 'redis@a2' && (l.time as number) >= tk, { timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + 60_000 - Date.now())));
    const tr = Date.now();
    await mesh.etcd.start();
    await conn.waitLog({ msg: /^registry reachable again/ }, { since: tr, timeoutMs: 20_000 });
    let keys: string[] = [];
    await waitFor(async () => (keys = await mesh.registered()).join() === '/mesh/redis/redis%40a1', { timeoutMs: TTL + 15_000, intervalMs: 300, message: 'a1 registered, a2 expired' })
      .catch((e: Error) => assert.fail(`${e.message}: registered now ${keys.join(' ') || 'nothing'}; a1 log: ${mesh.adv.get('a1')!.proc.output.slice(-1500)}`));
    const settled = Date.now() - tr;
    await loop.stop();
    const failed = loop.conns().filter((r) => !r.ok);
    console.log(`# registry down 60 s: ${failed.length} failed of ${loop.conns().length}; a2 killed meanwhile, out at c after ${fmt((down.time as number) - tk)}; registry back -> registrations settled in ${fmt(settled)}`);
    assert.ok(failed.every((r) => r.at < tk + 100 && r.end > tk), `only requests in flight at the kill may fail: ${JSON.stringify(failed.slice(0, 3))}`);
    assert.ok(failed.length <= 1);
  });

});
