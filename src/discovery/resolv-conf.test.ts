import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseResolvConf, searchCandidates } from './resolv-conf.js';

const K8S = `# written by the kubelet
search ns1.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10
options ndots:5
`;

test('resolv.conf: a Kubernetes pod file', () => {
  const c = parseResolvConf(K8S);
  assert.deepEqual(c.nameservers, ['10.96.0.10']);
  assert.deepEqual(c.search, ['ns1.svc.cluster.local', 'svc.cluster.local', 'cluster.local']);
  assert.equal(c.ndots, 5);
  assert.equal(c.timeoutMs, undefined);
  assert.equal(c.attempts, undefined);
  assert.equal(c.useVc, false);
});

test('resolv.conf: a relative Kubernetes-style name goes through the search list first (ndots:5)', () => {
  assert.deepEqual(searchCandidates('_redis._tcp.redis', parseResolvConf(K8S)), [
    '_redis._tcp.redis.ns1.svc.cluster.local',
    '_redis._tcp.redis.svc.cluster.local',
    '_redis._tcp.redis.cluster.local',
    '_redis._tcp.redis',
  ]);
});

test('resolv.conf: with ndots reached the name is tried as given first; a trailing dot means only as given', () => {
  const c = parseResolvConf('search example.internal\n');
  assert.equal(c.ndots, 1);
  assert.deepEqual(searchCandidates('_redis._tcp.service.consul', c), ['_redis._tcp.service.consul', '_redis._tcp.service.consul.example.internal']);
  assert.deepEqual(searchCandidates('_redis._tcp.service.consul.', c), ['_redis._tcp.service.consul']);
  assert.deepEqual(searchCandidates('_redis._tcp.X.', { search: [], ndots: 1 }), ['_redis._tcp.x']);
  // exactly ndots dots counts as enough
  assert.deepEqual(searchCandidates('a.b', { search: ['s'], ndots: 1 }), ['a.b', 'a.b.s']);
  assert.deepEqual(searchCandidates('a.b', { search: ['s'], ndots: 2 }), ['a.b.s', 'a.b']);
});

test('resolv.conf: the last of search/domain wins; domain gives a one-entry search list', () => {
  assert.deepEqual(parseResolvConf('search a.test b.test\ndomain c.test\n').search, ['c.test']);
  assert.deepEqual(parseResolvConf('domain c.test\nsearch a.test b.test.\n').search, ['a.test', 'b.test']);
});

test('resolv.conf: comments, blank and unknown lines, bad values are ignored; at most 3 nameservers', () => {
  const c = parseResolvConf([
    '; comment', '# comment', '', 'sortlist 10.0.0.0/8', 'nameserver not-an-ip',
    'nameserver 10.0.0.1 # the first', 'nameserver fd00::53', 'nameserver fe80::1%eth0', 'nameserver 10.0.0.4',
    'options ndots:x timeout:abc attempts:', 'options rotate edns0',
  ].join('\n'));
  assert.deepEqual(c.nameservers, ['10.0.0.1', 'fd00::53', 'fe80::1%eth0']);
  assert.equal(c.ndots, 1);
  assert.equal(c.timeoutMs, undefined);
  assert.equal(c.attempts, undefined);
});

test('resolv.conf: options are bounded as glibc bounds them; use-vc', () => {
  const c = parseResolvConf('options ndots:99 timeout:0 attempts:9 use-vc\n');
  assert.equal(c.ndots, 15);
  assert.equal(c.timeoutMs, 1000);
  assert.equal(c.attempts, 5);
  assert.equal(c.useVc, true);
  assert.equal(parseResolvConf('options timeout:3 attempts:1').timeoutMs, 3000);
});

test('resolv.conf: LOCALDOMAIN replaces the search list, RES_OPTIONS comes after the file', () => {
  const c = parseResolvConf(K8S, { LOCALDOMAIN: 'one.test  two.test', RES_OPTIONS: 'ndots:2 timeout:1' });
  assert.deepEqual(c.search, ['one.test', 'two.test']);
  assert.equal(c.ndots, 2);
  assert.equal(c.timeoutMs, 1000);
});

test('resolv.conf: without search or domain the search list is the host name\'s domain', () => {
  assert.deepEqual(parseResolvConf('nameserver 10.0.0.1\n', {}, 'web1.dc1.example.com').search, ['dc1.example.com']);
  assert.deepEqual(parseResolvConf('nameserver 10.0.0.1\n', {}, 'web1').search, []);
  assert.deepEqual(parseResolvConf('search x.test\n', {}, 'web1.dc1.example.com').search, ['x.test']);
});

test('resolv.conf: an empty or missing file gives the defaults', () => {
  const c = parseResolvConf('');
  assert.deepEqual(c, { nameservers: [], search: [], ndots: 1, useVc: false });
});
