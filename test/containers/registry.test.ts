// compose/registry-etcd and compose/registry-zookeeper under a real engine: two sites on an
// ipvlan L3 network (routed subnets, no multicast), the ambassadors with --no-mdns meeting in the
// registry. (The Swarm attempt is registry-swarm.test.ts: the runner bounds each file's time.)
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, counts, docker, engineSummary, Example, log, skip, waitFor } from './kit.js';

/**
 * Brings a registry example up. Its `wan` network is an ipvlan in L3 mode (routed subnets, no
 * multicast); a kernel without ipvlan (the lab's may have none) refuses it with "operation not
 * supported": then the example runs on a bridge with the same addresses, and says so — the
 * ambassadors still use no multicast (--no-mdns), and the routed case is proven by the network
 * namespace tests (test/e2e/registry-*.test.ts).
 */
async function upWithoutMulticast(ex: Example): Promise<number> {
  const t = Date.now();
  const first = await ex.compose('up', '-d');
  if (first.code === 0) return Date.now() - t;
  if (!/operation not supported|ipvlan/i.test(first.out)) assert.fail(`compose up -d\n${first.out}`);
  log(`${ex.example}: this engine's kernel has no ipvlan (${first.out.trim().split('\n').pop()}): running the example on a bridge with the same addresses`);
  await ex.compose('down', '-v');
  for (const f of ['compose.yaml', 'compose.v1.yaml']) {
    const path = join(ex.dir, f);
    if (!existsSync(path)) continue;
    writeFileSync(path, readFileSync(path, 'utf8').replace(
      /    driver: ipvlan\n    driver_opts: \{ ipvlan_mode: l3 \}\n    ipam:\n      config:\n(        - subnet: .*\n)+/,
      '    driver: bridge\n    ipam:\n      config:\n        - subnet: 10.77.0.0/16\n'));
  }
  await ex.ok('up', '-d');
  return Date.now() - t;
}

const visits = async (ex: Example) => Number((await docker('exec', await ex.container('redis'), 'redis-cli', '-p', '6380', 'get', 'visits')).out.trim()) || 0;

describe('compose/registry-etcd under a real engine', { skip }, () => {
  const ex = new Example('registry-etcd');
  before(async () => {
    await buildImage();
    log(`up in ${await upWithoutMulticast(ex)} ms`);
  });
  after(async () => {
    if (process.exitCode) console.log(engineSummary());
    log(`down in ${await ex.down()} ms`);
  });

  test('the app in site west counts on Redis in site east, found through etcd; no mDNS anywhere', async () => {
    await waitFor('the app counts', async () => counts(await ex.logs('app')).length >= 3, 60_000);
    const rec = await ex.records('app-ambassador');
    assert.ok(rec.some((r) => r.msg === 'registry connected'));
    assert.ok(!rec.some((r) => String(r.msg).includes('mDNS started')), 'no multicast engine with --no-mdns');
    const keys = await docker('exec', await ex.container('etcd'), 'etcdctl', 'get', '--prefix', '--keys-only', '/demo');
    assert.match(keys.out, /\/demo\/redis\/redis%40/);
  });

  test('etcd stopped: the app keeps counting on the last endpoint; started again: registered again', async () => {
    await ex.ok('stop', 'etcd');
    const n = await visits(ex);
    await waitFor('the app counts without etcd', async () => (await visits(ex)) >= n + 3, 30_000);
    const peers = JSON.parse((await ex.admin('app-ambassador', '/peers')).body);
    assert.notEqual(peers.registry.state, 'connected');
    await ex.ok('start', 'etcd');
    await waitFor('registered again', async () => /\/demo\/redis\//.test((await docker('exec', await ex.container('etcd'), 'etcdctl', 'get', '--prefix', '--keys-only', '/demo')).out), 60_000);
  });
});

describe('compose/registry-zookeeper under a real engine', { skip }, () => {
  const ex = new Example('registry-zookeeper');
  before(async () => {
    await buildImage();
    log(`up in ${await upWithoutMulticast(ex)} ms`);
  });
  after(async () => {
    if (process.exitCode) console.log(engineSummary());
    log(`down in ${await ex.down()} ms`);
  });

  test('the app in site west counts on Redis in site east, found through ZooKeeper', async () => {
    await waitFor('the app counts', async () => counts(await ex.logs('app')).length >= 3, 90_000);
    const rec = await ex.records('redis-ambassador');
    assert.ok(rec.some((r) => r.msg === 'registry registration' && r.state === 'registered'));
  });
});
