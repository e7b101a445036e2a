// The etcd mesh of compose/registry-etcd as a stack on a one-node Swarm of the lab engine: Swarm
// overlays carry no multicast, the registry is how a stack's ambassadors meet there.
import { describe, test } from 'node:test';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE } from '../lib/compose.js';
import { buildImage, counts, docker, log, ok, sh, skip, waitFor } from './kit.js';

const lastLine = (s: string) => s.trim().split('\n').pop() ?? '';
const SERVICES = ['etcd', 'redis', 'redis-ambassador', 'app-ambassador', 'app'];

/**
 * Every service has `endpoint_mode: dnsrr`: its name resolves to its tasks' own addresses. With
 * Swarm's default (a virtual IP per service), connections to the VIP go through the kernel's
 * IPVS; a kernel without IPVS (the lab engine's: no /proc/sys/net/ipv4/vs) routes them nowhere
 * (EHOSTUNREACH, ETIMEDOUT: etcd and Redis unreachable, the app never counts). The ambassadors
 * balance themselves, so a VIP in front of them adds nothing.
 *
 * The engine refusing to be a Swarm manager or to create an overlay is a skip that says so
 * (loud: CI fails on any skip); once deployed, the app not counting is a failure.
 */
describe('the etcd mesh as a stack on a one-node Swarm', { skip }, () => {
  test('docker swarm init, stack deploy: the app counts through the registry', async (t) => {
    await buildImage();
    const init = await sh('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1'], 60_000);
    if (init.code !== 0) {
      t.skip(`this engine cannot be a Swarm manager: docker swarm init: ${lastLine(init.out)}`);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'swarm-'));
    try {
      const net = await sh('docker', ['network', 'create', '-d', 'overlay', '--attachable', 'mesh-probe'], 60_000);
      if (net.code !== 0) {
        t.skip(`this engine's Swarm has no overlay network: ${lastLine(net.out)}`);
        return;
      }
      await sh('docker', ['network', 'rm', 'mesh-probe']);
      log(`Swarm: kernel IPVS ${existsSync('/proc/sys/net/ipv4/vs') ? 'present' : 'absent (service VIPs would not route)'}; services use endpoint_mode dnsrr`);
      const file = join(dir, 'stack.yaml');
      writeFileSync(file, `version: "3.8"
services:
  etcd:
    image: quay.io/coreos/etcd:v3.5.17
    command: ["etcd", "--listen-client-urls", "http://0.0.0.0:2379", "--advertise-client-urls", "http://etcd:2379"]
    networks: [mesh]
    deploy: { endpoint_mode: dnsrr }
  redis:
    image: redis:7-alpine
    command: ["redis-server", "--port", "6380", "--protected-mode", "no", "--save", ""]
    networks: [mesh]
    deploy: { endpoint_mode: dnsrr }
  redis-ambassador:
    image: ${IMAGE}
    command: ["--no-mdns", "--registry", "etcd://etcd:2379/stack", "--advertise", "redis=redis:6380"]
    networks: [mesh]
    deploy: { endpoint_mode: dnsrr }
  app-ambassador:
    image: ${IMAGE}
    command: ["--no-mdns", "--registry", "etcd://etcd:2379/stack", "--connect", "redis=0.0.0.0:6379"]
    networks: [mesh]
    deploy: { endpoint_mode: dnsrr }
  app:
    image: redis:7-alpine
    command: ["sh", "-c", "while true; do redis-cli -h app-ambassador -p 6379 incr visits; sleep 1; done"]
    networks: [mesh]
    deploy: { endpoint_mode: dnsrr }
networks:
  mesh:
    driver: overlay
`);
      const t0 = Date.now();
      await ok('docker', ['stack', 'deploy', '-c', file, 'mesh'], 120_000);
      const taskOf = async (service: string) =>
        lastLine((await docker('ps', '-q', '--filter', `label=com.docker.swarm.service.name=mesh_${service}`)).out);
      try {
        // 23 s from deploy under a shared load of 11-15 (the tasks start one by one, the app's
        // first lookups fail until app-ambassador's task is up); the bound only turns a hang into
        // a failure.
        await waitFor('the stack app counts 3 times', async () => {
          const id = await taskOf('app');
          return id !== '' && counts((await docker('logs', id)).out.split('\n')).length >= 3;
        }, 120_000, 1000);
      } catch (err) {
        const tails = await Promise.all(SERVICES.map(async (s) => {
          const id = await taskOf(s);
          return `--- ${s}\n${id ? (await docker('logs', '--tail', '5', id)).out.trim() : '(no task)'}`;
        }));
        throw new Error(`${(err as Error).message}\n${(await docker('service', 'ls')).out}${tails.join('\n')}`);
      }
      log(`Swarm: the app counted through etcd over an overlay network ${((Date.now() - t0) / 1000).toFixed(1)} s after deploy`);
    } finally {
      await sh('docker', ['stack', 'rm', 'mesh'], 120_000);
      // The stack's containers stop in the background: gone before the next file uses the engine.
      await waitFor('the stack containers gone', async () =>
        (await docker('ps', '-aq', '--filter', 'label=com.docker.stack.namespace=mesh')).out.trim() === '', 60_000, 1000).catch(() => {});
      await sh('docker', ['swarm', 'leave', '--force'], 60_000);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
