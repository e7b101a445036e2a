// The etcd mesh of compose/registry-etcd as a stack on a one-node Swarm of the lab engine, if
// that engine allows it: Swarm overlays carry no multicast, the registry is how a stack's
// ambassadors meet there. Said either way in the output; not a failure when the engine cannot.
import { describe, test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE } from '../lib/compose.js';
import { buildImage, counts, docker, log, sh, skip, waitFor } from './kit.js';

/**
 * Swarm overlays carry no multicast: the registry is how a stack's ambassadors meet there. The
 * lab engine runs in a network namespace with no route out; whether it can be a Swarm manager
 * and create an overlay network is what this finds out, and says.
 */
describe('the etcd mesh as a stack on a one-node Swarm (if the engine allows it)', { skip }, () => {
  test('docker swarm init, stack deploy, the app counts; or the reason it cannot', async () => {
    await buildImage();
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
