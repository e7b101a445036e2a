// The project's image, built by a real engine from its own Dockerfile with no registry access
// beyond the base image: the classic builder (a `# syntax=` line would make BuildKit fetch a
// frontend image first), non-root, runs on a read-only root filesystem, and is about as big as
// its base image plus the production dependencies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IMAGE } from '../lib/compose.js';
import { buildImage, docker, log, ok, skip } from './kit.js';

const NODE_IMAGE = 'node:24-slim';
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

test('the image builds offline from the Dockerfile, on Node 24', { skip }, async () => {
  const { seconds } = await buildImage();
  log(`docker build ${IMAGE}: ${seconds.toFixed(0)} s`);
  const node = await ok('docker', ['run', '--rm', '--entrypoint', 'node', IMAGE, '--version']);
  assert.match(node.trim(), /^v24\./);
});

test('non-root, read-only root filesystem, HEALTHCHECK and the stranded-sidecar exit set', { skip }, async () => {
  assert.equal((await ok('docker', ['run', '--rm', '--read-only', '--entrypoint', 'id', IMAGE, '-u'])).trim(), '1000');
  assert.equal((await ok('docker', ['run', '--rm', '--read-only', IMAGE, '--version'])).trim(), '0.1.0');
  const cfg = JSON.parse(await ok('docker', ['image', 'inspect', '-f', '{{json .Config}}', IMAGE])) as { Healthcheck?: { Test: string[] }; Env: string[] };
  assert.ok(cfg.Healthcheck?.Test.join(' ').includes('/healthz'));
  assert.ok(cfg.Env.includes('AMBASSADOR_EXIT_WHEN_STRANDED=true'));
});

test('size: within 10 % of the base image plus the production dependencies', { skip }, async () => {
  const size = async (img: string) => Number((await ok('docker', ['image', 'inspect', '-f', '{{.Size}}', img])).trim());
  const [image, base] = [await size(IMAGE), await size(NODE_IMAGE)];
  const du = await docker('run', '--rm', '--entrypoint', 'du', IMAGE, '-sb', '/app/node_modules', '/app/dist');
  const [deps, dist] = du.out.trim().split('\n').map((l) => Number(l.split(/\s+/)[0]));
  const target = (base + deps!) * 1.1;
  log(`image ${mb(image)} = base ${NODE_IMAGE} ${mb(base)} + production dependencies ${mb(deps!)} + dist ${mb(dist!)} + ${mb(image - base - deps! - dist!)} other; target ≤ ${mb(target)}`);
  assert.ok(image <= target, `${mb(image)} > ${mb(target)}`);
});
