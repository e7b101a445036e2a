// The image variant with HAProxy (`docker build --build-arg HAPROXY=true`), built offline by the
// lab engine from the Dockerfile (the stand-in base image carries the Debian packages as a local
// apt source), run as the image runs: non-root, read-only root filesystem. One redis behind it,
// reached by a client container through --data-plane haproxy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IMAGE, root } from '../lib/compose.js';
import { docker, log, ok, skip, waitFor } from './kit.js';

const VARIANT = 'mdns-ambassador:haproxy';

test('the HAProxy variant builds offline and carries a listener with HAProxy, non-root, read-only', { skip }, async () => {
  const t = Date.now();
  await ok('docker', ['build', '-q', '--build-arg', 'HAPROXY=true', '-t', VARIANT, root], 600_000);
  const size = async (img: string) => Number((await ok('docker', ['image', 'inspect', '-f', '{{.Size}}', img])).trim());
  const plain = (await docker('image', 'inspect', IMAGE)).code === 0 ? await size(IMAGE) : undefined;
  const variant = await size(VARIANT);
  log(`docker build --build-arg HAPROXY=true: ${((Date.now() - t) / 1000).toFixed(0)} s, ${(variant / 1e6).toFixed(1)} MB` +
    (plain ? ` (the image without HAProxy: ${(plain / 1e6).toFixed(1)} MB, +${((variant - plain) / 1e6).toFixed(1)} MB)` : ''));
  assert.match(await ok('docker', ['run', '--rm', '--read-only', '--entrypoint', 'haproxy', VARIANT, '-v']), /HAProxy version 2\.(6|[7-9])|HAProxy version [3-9]\./);

  const net = `amb-haproxy-${process.pid}`;
  const names = { redis: `${net}-redis`, amb: `${net}-amb` };
  await ok('docker', ['network', 'create', net]);
  try {
    await ok('docker', ['run', '-d', '--name', names.redis, '--network', net, '--network-alias', 'redis', '--read-only', 'redis:7-alpine',
      'redis-server', '--protected-mode', 'no', '--save', '', '--appendonly', 'no']);
    await waitFor('redis answers', async () => (await docker('exec', names.redis, 'redis-cli', 'set', 'whoami', 'behind-haproxy')).out.includes('OK'), 30_000);
    await ok('docker', ['run', '-d', '--name', names.amb, '--network', net, '--network-alias', 'amb', '--read-only', VARIANT,
      '--data-plane', 'haproxy', '--connect', 'redis=0.0.0.0:6379', '--static', 'redis=redis:6379', '--log-format', 'json']);
    const started = await waitFor('HAProxy started in the ambassador container', async () => {
      const out = (await docker('logs', names.amb)).out;
      return out.split('\n').find((l) => l.includes('"HAProxy started"'));
    }, 60_000);
    const rec = JSON.parse(started) as { dir: string; workerPid: number };
    log(`HAProxy started: private directory ${rec.dir}`);
    assert.match(rec.dir, /^\/dev\/shm\//, 'a read-only root: the private directory is on /dev/shm');
    const reply = await waitFor('a GET through HAProxy', async () => {
      const r = await docker('run', '--rm', '--network', net, 'redis:7-alpine', 'redis-cli', '-h', 'amb', '-p', '6379', 'get', 'whoami');
      return r.out.trim() === 'behind-haproxy' ? r.out.trim() : undefined;
    }, 30_000, 1000);
    assert.equal(reply, 'behind-haproxy');
    const listening = (await docker('logs', names.amb)).out.split('\n').find((l) => l.includes('"listening"'))!;
    assert.equal((JSON.parse(listening) as { dataPlane: string }).dataPlane, 'haproxy');
    // every process of the container (node, HAProxy's master and worker) runs as node (1000)
    // (docker top needs the PID column in what it asks ps for)
    const top = await ok('docker', ['top', names.amb, '-eo', 'pid,uid,comm']);
    const procs = top.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
    log(`processes: ${procs.map((p) => p.join(' ')).join(', ')}`);
    assert.ok(procs.filter((p) => p[2] === 'haproxy').length >= 2, 'master and worker');
    assert.ok(procs.every((p) => p[1] === '1000'), 'all as uid 1000');
    // SIGTERM: goodbyes, HAProxy's soft stop, exit 0
    await ok('docker', ['stop', '-t', '20', names.amb]);
    assert.equal((await ok('docker', ['inspect', '-f', '{{.State.ExitCode}}', names.amb])).trim(), '0');
  } finally {
    await docker('rm', '-f', names.amb, names.redis);
    await docker('network', 'rm', net);
  }
});
