// The registry over TLS: `etcds://` to a real etcd 3.4 that serves clients over https and asks
// every client for a certificate of its CA (--client-cert-auth). The advertiser and the connector
// present theirs; a connector that trusts another CA, and one with no certificate of its own,
// are each refused: said in one warning, the process keeps running and retrying, and it gets no
// endpoint from a registry it could not verify. --no-mdns everywhere: nothing but the registry.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { adminGet, startAmbassador } from './ambassador-kit.js';
import { type Host, Lab, canUseNetns, haveCommand, startRedis } from '../lib/netns.js';
import { type RegistryCluster, registryMissing, startEtcd } from '../lib/registries.js';
import { type TestCa, haveOpenssl, makeCa } from '../../src/testing/test-ca.js';

const skip = canUseNetns() ?? registryMissing('etcd') ?? (haveCommand('redis-server') ? undefined : 'redis-server not installed')
  ?? (haveOpenssl ? undefined : 'openssl not installed');

describe('registry: etcds:// with client certificates', { skip }, () => {
  let lab: Lab;
  let etcd: RegistryCluster;
  let ca: TestCa;
  let c: Host;
  /** The etcds:// URL with these trust files. */
  const url = (q: Record<string, string>) => etcd.url('/mesh', ['ttl=4s', ...Object.entries(q).map(([k, v]) => `${k}=${encodeURIComponent(v)}`)].join('&'));

  before(async () => {
    lab = await Lab.create({ hosts: ['e1', 'a1', 'c'] });
    c = lab.host('c');
    ca = makeCa(`${lab.tmpdir}/ca`, 'registry CA');
    etcd = await startEtcd([lab.host('e1')], { tls: { ca, clientCertAuth: true } });
    await startRedis(lab.host('a1'), { port: 7001, bind: '127.0.0.1' });
    await lab.host('a1').run('redis-cli', ['-p', '7001', 'set', 'whoami', 'a1']);
  });
  after(async () => {
    await lab?.destroy();
  });

  test('advertiser and connector with certificates of the registry\'s CA: registered, watched, a request served', async () => {
    const a1cert = ca.issue('a1');
    const adv = startAmbassador(lab.host('a1'), ['--no-mdns', '--registry', url({ ca: ca.cert, cert: a1cert.cert, key: a1cert.key }),
      '--advertise', 'redis=127.0.0.1:7001'], { iface: false });
    await adv.waitLog({ msg: 'registry registration', state: 'registered' }, { timeoutMs: 20_000 });
    const ccert = ca.issue('c');
    const conn = startAmbassador(c, ['--no-mdns', '--registry', url({ ca: ca.cert, cert: ccert.cert, key: ccert.key }),
      '--connect', 'redis=6379', '--admin', '9901'], { iface: false });
    await conn.waitLog({ msg: 'endpoint up' }, { timeoutMs: 20_000 });
    const r = await c.exec('redis-cli', ['-p', '6379', 'get', 'whoami'], { timeoutMs: 5000 });
    assert.equal(r.stdout.trim(), 'a1');
    const p = JSON.parse(await adminGet(c, 9901, '/peers'));
    assert.equal(p.registry.state, 'connected');
    assert.match(p.registry.url, /^etcds:\/\//);
    // A certificate proves the registry, not who may write into it: endpoints stay like mDNS ones
    // for credential injection unless the registry authenticated us (auth-file=).
    assert.equal(p.registry.endpointsTrusted, 'like-mdns');
  });

  test('a connector that trusts another CA: refused in one warning, keeps running, no endpoint', async () => {
    const other = makeCa(`${lab.tmpdir}/other-ca`, 'some other CA');
    const mine = other.issue('c-other');
    const conn = startAmbassador(c, ['--no-mdns', '--registry', url({ ca: other.cert, cert: mine.cert, key: mine.key }),
      '--connect', 'redis=6380', '--admin', '9902'], { iface: false });
    const warned = await conn.waitLog({ msg: /^registry unreachable/ }, { timeoutMs: 20_000 });
    console.log(`# another CA: ${String(warned.err)}`);
    assert.match(String(warned.err), /certificate/i, `the reason names the certificate: ${String(warned.err)}`);
    const p = JSON.parse(await adminGet(c, 9902, '/peers'));
    assert.notEqual(p.registry.state, 'connected');
    assert.equal(p.clusters[0].endpoints.length, 0, 'nothing from a registry we could not verify');
    assert.ok(conn.proc.running);
    assert.equal(conn.findAll({ msg: /^registry unreachable/ }).length, 1, 'said once, not at every retry');
    await conn.stop();
  });

  test('a connector with no certificate of its own: the registry refuses it, said, keeps running', async () => {
    const conn = startAmbassador(c, ['--no-mdns', '--registry', url({ ca: ca.cert }), '--connect', 'redis=6381', '--admin', '9903'], { iface: false });
    const warned = await conn.waitLog({ msg: /^registry unreachable/ }, { timeoutMs: 20_000 });
    console.log(`# no client certificate: ${String(warned.err)}`);
    assert.match(String(warned.err), /TLS alert .*certificate/, 'the server\'s refusal in words, not OpenSSL internals');
    const p = JSON.parse(await adminGet(c, 9903, '/peers'));
    assert.notEqual(p.registry.state, 'connected');
    assert.equal(p.clusters[0].endpoints.length, 0);
    assert.ok(conn.proc.running);
    await conn.stop();
  });
});

