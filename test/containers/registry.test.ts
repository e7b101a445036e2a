// compose/registry-etcd and compose/registry-zookeeper under a real engine: two sites on an
// ipvlan L3 network (routed subnets, no multicast), the ambassadors with --no-mdns meeting in the
// registry. Then the Swarm attempt: the etcd example's mesh as a stack on a one-node Swarm of
// the lab engine, if that engine allows it (said either way in the output).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE } from '../lib/compose.js';
import { buildImage, counts, docker, engineSummary, Example, log, sh, skip, waitFor } from './kit.js';

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

/**
 * Swarm overlays carry no multicast: the registry is how a stack's ambassadors meet there. The
 * lab engine runs in a network namespace with no route out; whether it can be a Swarm manager
 * and create an overlay network is what this finds out, and says.
 */
describe('the etcd mesh as a stack on a one-node Swarm (if the engine allows it)', { skip }, () => {
  test('docker swarm init, stack deploy, the app counts; or the reason it cannot', async () => {
    const init = await sh('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1'], 60_000);
    if (init.code !== 0) {
      log(`Swarm: not possible on this engine: ${init.out.trim().split('\n').pop()}`);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'swarm-'));
    try {
      const net = await sh('docker', ['network', 'create', '-d', 'overlay', '--attachable', 'mesh-probe'], 60_000);
      if (net.code !== 0) {
        log(`Swarm: initialised, but no overlay network: ${net.out.trim().split('\n').pop()}`);
        return;
      }
      await sh('docker', ['network', 'rm', 'mesh-probe']);
      const file = join(dir, 'stack.yaml');
      writeFileSync(file, `version: "3.8"
services:
  etcd:
    image: quay.io/coreos/etcd:v3.5.17
    command: ["etcd", "--listen-client-urls", "http://0.0.0.0:2379", "--advertise-client-urls", "http://etcd:2379"]
    networks: [mesh]
  redis:
    image: redis:7-alpine
    command: ["redis-server", "--port", "6380", "--protected-mode", "no", "--save", ""]
    networks: [mesh]
  redis-ambassador:
    image: ${IMAGE}
    command: ["--no-mdns", "--registry", "etcd://etcd:2379/stack", "--advertise", "redis=redis:6380"]
    networks: [mesh]
  app-ambassador:
    image: ${IMAGE}
    command: ["--no-mdns", "--registry", "etcd://etcd:2379/stack", "--connect", "redis=0.0.0.0:6379"]
    networks: [mesh]
  app:
    image: redis:7-alpine
    command: ["sh", "-c", "while true; do redis-cli -h app-ambassador -p 6379 incr visits; sleep 1; done"]
    networks: [mesh]
networks:
  mesh:
    driver: overlay
`);
      const deploy = await sh('docker', ['stack', 'deploy', '-c', file, 'mesh'], 120_000);
      if (deploy.code !== 0) {
        log(`Swarm: stack deploy refused: ${deploy.out.trim().split('\n').pop()}`);
        return;
      }
      let counted = false;
      try {
        await waitFor('the stack app counts', async () => {
          const ids = (await docker('ps', '-q', '--filter', 'label=com.docker.swarm.service.name=mesh_app')).out.trim().split('\n').filter(Boolean);
          if (ids.length === 0) return false;
          return counts((await docker('logs', ids[0]!)).out.split('\n')).length >= 3;
        }, 120_000, 2000);
        counted = true;
      } catch (err) {
        log(`Swarm: deployed, but the app did not count: ${(err as Error).message}; ${(await docker('service', 'ls')).out.replace(/\n/g, ' | ')}`);
      }
      if (counted) log('Swarm: the etcd mesh ran as a stack on a one-node Swarm: the app counted through the registry over an overlay network');
      await sh('docker', ['stack', 'rm', 'mesh'], 120_000);
    } finally {
      await sh('docker', ['swarm', 'leave', '--force'], 60_000);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
