import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig, parseDuration } from './config.js';
import { parseRegistryAddress, parseRegistryUrl } from './registry-url.js';
import { ConfigError } from './specs.js';

const parse = (u: string) => parseRegistryUrl(u, (v, what) => parseDuration(v, 0, what));

test('--registry: every member in one URL, default ports and prefix', () => {
  const e = parse('etcd://10.0.0.5:2379,10.0.0.6,[fd00::7]:2380/mesh/prod');
  assert.equal(e.kind, 'etcd');
  assert.deepEqual(e.members, [{ host: '10.0.0.5', port: 2379 }, { host: '10.0.0.6', port: 2379 }, { host: 'fd00::7', port: 2380 }]);
  assert.equal(e.prefix, '/mesh/prod');
  assert.equal(e.tls, false);
  assert.equal(e.ttlMs, 10_000);
  const z = parse('zk://zk1,zk2:2182');
  assert.equal(z.kind, 'zookeeper');
  assert.deepEqual(z.members, [{ host: 'zk1', port: 2181 }, { host: 'zk2', port: 2182 }]);
  assert.equal(z.prefix, '/mdns-ambassador');
  assert.equal(parse('etcds://e1/x?ttl=5s').tls, true);
  assert.equal(parse('etcds://e1/x?ttl=5s').ttlMs, 5000);
  assert.equal(parse('etcd://e1/x/').prefix, '/x');
});

test('--registry: a malformed value is one line naming the problem', () => {
  const dir = mkdtempSync(join(tmpdir(), 'reg-'));
  const file = join(dir, 'auth');
  writeFileSync(file, 'user pass\n');
  const bad: Array<[string, RegExp]> = [
    ['10.0.0.5:2379', /not a registry URL/],
    ['consul://c1/x', /unknown scheme/],
    ['etcd:///x', /no host|not HOST/],
    ['etcd://u:p@e1/x', /credentials do not belong in the URL/],
    ['etcd://e1:99999/x', /bad port/],
    ['etcd://e1/a b', /not a registry URL|prefix/],
    ['etcd://e1/x?ttl=1s', /ttl must be between/],
    ['etcd://e1/x?color=red', /unknown option 'color'/],
    [`etcd://e1/x?ca=${file}`, /needs TLS: use etcds/],
    [`zk://z1/x?ca=${file}`, /ZooKeeper client has no TLS/],
    [`etcds://e1/x?cert=${file}`, /both cert= and key=/],
    ['etcd://e1/x?auth-file=/nonexistent/auth', /cannot read '\/nonexistent\/auth' \(no such file\)/],
  ];
  for (const [u, why] of bad) assert.throws(() => parse(u), (e: Error) => e instanceof ConfigError && why.test(e.message), u);
  assert.equal(parse(`etcd://e1/x?auth-file=${file}`).authFile, file);
  assert.ok(!parse(`etcd://e1/x?auth-file=${file}`).display.includes('auth'));
});

test('--registry-address and --no-mdns in the configuration', () => {
  assert.equal(parseRegistryAddress('[fd00::1]'), 'fd00::1');
  assert.throws(() => parseRegistryAddress('db1'), /not an IP address/);
  const c = buildConfig({ advertise: ['redis=6379'], registry: 'etcd://e1/x', mdns: false, registryAddress: ['203.0.113.5'] });
  assert.equal(c.mdns, false);
  assert.deepEqual(c.registryAddresses, ['203.0.113.5']);
  assert.throws(() => buildConfig({ advertise: ['redis=6379'], mdns: false }), /--no-mdns: .* give --registry/);
  assert.throws(() => buildConfig({ connect: ['redis=6379'], mdns: false }), /--no-mdns: .*would find no endpoint/);
  assert.doesNotThrow(() => buildConfig({ connect: ['redis=6379'], static: ['redis=10.0.0.5:6379'], mdns: false }));
  assert.throws(() => buildConfig({ connect: ['redis=6379'], registryAddress: ['10.0.0.1'] }), /--registry-address has nothing to say without --registry/);
});
