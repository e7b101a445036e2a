// Which instances must never be endpoints (loops): announcements at addresses that cannot mean
// their announcer, this process's own listeners, other ambassadors' --connect listeners, and
// relays that forward to one of those. And what must stay allowed: the normal paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../base/clock.js';
import { HostNetwork, type LinkInfo } from '../base/host-network.js';
import { OwnListeners } from './own-listeners.js';
import { Cluster } from '../cluster/cluster.js';
import { backendOf, type LoopFacts, loopRefusal, RELAY_TO_TXT, screenEndpoint } from './endpoint-policy.js';
import { spec } from '../testing/tcp-kit.js';

/** This host: 10.0.0.1 (eth0) and fd00::1, plus loopback. */
/** A host network whose interfaces are loopback and eth0 with `addresses` (read at each look). */
function hostWith(addresses: () => string[], clock = new FakeClock()): HostNetwork {
  const link = (name: string, list: string[], loopback = false): LinkInfo => ({
    name, index: 0, loopback, multicast: !loopback, mtu: 1500,
    ipv4: list.filter((a) => !a.includes(':')).map((address) => ({ address, netmask: '255.255.255.0' })),
    ipv6: list.filter((a) => a.includes(':')).map((address) => ({ address, netmask: 'ffff:ffff:ffff:ffff::' })),
  });
  return new HostNetwork({ clock, read: () => [link('lo', ['127.0.0.1', '::1'], true), link('eth0', addresses())] });
}

const local = hostWith(() => ['10.0.0.1', 'fd00::1', 'fe80::1']);

function facts(opts: { mdnsOnLoopback?: boolean; peers?: Array<{ address: string; port: number }> } = {}): { facts: LoopFacts; own: OwnListeners } {
  const own = new OwnListeners((a) => local.isLocal(a));
  own.add({ kind: 'connect', host: '127.0.0.1', port: 6379, what: '--connect redis=6379 listener', forwardsToMdns: true });
  own.add({ kind: 'connect', host: '0.0.0.0', port: 7000, what: '--connect api=0.0.0.0:7000 listener', forwardsToMdns: true });
  own.add({ kind: 'relay', host: '0.0.0.0', port: 40000, what: 'relay of --advertise db=5432 (port 40000)', toThisHost: true });
  own.add({ kind: 'relay', host: '0.0.0.0', port: 40001, what: 'relay of --advertise redis=10.0.0.2:6379 (port 40001)', toThisHost: false });
  own.add({ kind: 'admin', host: '127.0.0.1', port: 9901, what: 'admin endpoint (--admin 127.0.0.1:9901)' });
  return {
    own,
    facts: {
      ownListener: (a, p) => own.reachedAt(a, p),
      peerListener: (a, p) => (opts.peers ?? []).some((x) => x.address === a && x.port === p) ? `the --connect redis listener of the ambassador on b.local (0.0.0.0:${p})` : undefined,
      isLocal: (a) => local.isLocal(a),
      mdnsOnLoopback: () => opts.mdnsOnLoopback ?? false,
    },
  };
}

const mdns = (host: string, port: number, txt: Record<string, string> = {}) => spec('i', port, { source: 'mdns', host, txt, label: 'redis@x' });

test('our own listeners are never endpoints, on any address that reaches them', () => {
  const { facts: f } = facts({ mdnsOnLoopback: true });
  assert.match(loopRefusal(mdns('127.0.0.1', 6379), f)!, /127\.0\.0\.1:6379 is this ambassador's own --connect redis=6379 listener: .*\(a loop\)/);
  assert.match(loopRefusal(spec('s', 6379, { host: 'localhost' }), f)!, /own --connect redis=6379 listener/);
  assert.match(loopRefusal(spec('s', 6379, { host: '0.0.0.0' }), f)!, /own --connect redis=6379/, '0.0.0.0 dials loopback');
  assert.equal(loopRefusal(spec('s', 6379, { host: '10.0.0.1' }), f), undefined, 'a listener on 127.0.0.1 is not reached at 10.0.0.1');
  for (const host of ['10.0.0.1', '127.0.0.1', '127.1.2.3', '::ffff:10.0.0.1']) {
    assert.match(loopRefusal(spec('s', 7000, { host }), f)!, /own --connect api=0\.0\.0\.0:7000 listener/, host);
  }
  assert.equal(loopRefusal(spec('s', 7000, { host: '10.0.0.2' }), f), undefined, 'another host');
  assert.match(loopRefusal(spec('s', 9901, { host: '127.0.0.1' }), f)!, /admin endpoint/);
});

test('our own relay to a service of this host may be an endpoint (this host both offers and uses it); to another host, not', () => {
  const { facts: f } = facts();
  assert.equal(loopRefusal(spec('s', 40000, { host: '10.0.0.1' }), f), undefined);
  assert.equal(loopRefusal(mdns('10.0.0.1', 40000, { [RELAY_TO_TXT]: '127.0.0.1:5432' }), f), undefined);
  // Hosts a and b relaying to each other's sidecar listeners: each would go out through its own relay.
  assert.match(loopRefusal(mdns('10.0.0.1', 40001, { [RELAY_TO_TXT]: '10.0.0.2:6379' }), f)!,
    /10\.0\.0\.1:40001 is this ambassador's own relay of --advertise redis=10\.0\.0\.2:6379 \(port 40001\), which forwards to another host: a connector never goes out through its own relay/);
});

test('another ambassador’s --connect listener is never an endpoint', () => {
  const { facts: f } = facts({ peers: [{ address: '10.0.0.2', port: 6379 }] });
  assert.match(loopRefusal(mdns('10.0.0.2', 6379), f)!, /10\.0\.0\.2:6379 is the --connect redis listener of the ambassador on b\.local .*circle between ambassadors \(a loop\)/);
  assert.equal(loopRefusal(mdns('10.0.0.2', 6380), f), undefined);
  assert.equal(loopRefusal(mdns('10.0.0.3', 6379), f), undefined);
});

test('an endpoint whose relay forwards to one of our --connect listeners, or another ambassador’s, is refused', () => {
  const { facts: f } = facts({ peers: [{ address: '10.0.0.3', port: 6379 }] });
  // Host b relays to our sidecar listener (0.0.0.0:7000): the two-host loop, known from b's first announcement.
  assert.match(loopRefusal(mdns('10.0.0.2', 41000, { [RELAY_TO_TXT]: '10.0.0.1:7000' }), f)!,
    /10\.0\.0\.2:41000 relays to 10\.0\.0\.1:7000, this ambassador's own --connect api=0\.0\.0\.0:7000 listener: .*\(a loop\)/);
  assert.match(loopRefusal(mdns('10.0.0.2', 41000, { [RELAY_TO_TXT]: '10.0.0.3:6379' }), f)!, /relays to 10\.0\.0\.3:6379, the --connect redis listener of the ambassador on b\.local/);
  // A loopback target is the announcer's: ours only when the announcer is this host.
  assert.equal(loopRefusal(mdns('10.0.0.2', 41000, { [RELAY_TO_TXT]: '127.0.0.1:6379' }), f), undefined);
  assert.match(loopRefusal(mdns('10.0.0.1', 41000, { [RELAY_TO_TXT]: '127.0.0.1:6379' }), f)!, /relays to 127\.0\.0\.1:6379, this ambassador's own --connect redis=6379 listener/);
  // A relay to a relay of ours, or to something else, is a chain, not a loop.
  assert.equal(loopRefusal(mdns('10.0.0.2', 41000, { [RELAY_TO_TXT]: '10.0.0.1:40000' }), f), undefined);
  assert.equal(loopRefusal(mdns('10.0.0.2', 41000, { [RELAY_TO_TXT]: '10.0.0.9:6379' }), f), undefined);
  assert.equal(loopRefusal(mdns('10.0.0.2', 41000, { [RELAY_TO_TXT]: 'db.internal:6379' }), f), undefined, 'a name is not compared');
});

test('an announcement at 0.0.0.0, or at a loopback address heard on a real network, is ignored; --static may name loopback', () => {
  const { facts: f } = facts();
  assert.match(loopRefusal(mdns('0.0.0.0', 6380), f)!, /announced at 0\.0\.0\.0:6380, an address that names no host/);
  assert.match(loopRefusal(mdns('::', 6380), f)!, /names no host/);
  assert.match(loopRefusal(mdns('127.0.0.1', 6380), f)!, /loopback address, which cannot mean the announcing host/);
  assert.match(loopRefusal(mdns('::1', 6380), f)!, /loopback/);
  assert.equal(loopRefusal(spec('s', 6380, { host: '127.0.0.1' }), f), undefined, '--static is the operator’s word');
  assert.equal(loopRefusal(spec('s', 6380, { host: '127.0.0.1', source: 'srv' }), f), undefined);
  // mDNS on loopback (a mesh on one host): 127.0.0.1 is the announcer, this host.
  assert.equal(loopRefusal(mdns('127.0.0.1', 6380), facts({ mdnsOnLoopback: true }).facts), undefined);
});

test('the normal paths stay allowed: connector → relay → service, connector → service', () => {
  const { facts: f } = facts({ peers: [{ address: '10.0.0.3', port: 6379 }] });
  assert.equal(loopRefusal(mdns('10.0.0.2', 41000, { [RELAY_TO_TXT]: '127.0.0.1:6379' }), f), undefined, 'a relay to the loopback redis of another host');
  assert.equal(loopRefusal(mdns('10.0.0.2', 6379), f), undefined, 'a service on another host on the same port as our listener');
  assert.equal(loopRefusal(mdns('10.0.0.3', 6380), f), undefined, 'a service next to another ambassador');
});

test('cluster: refused instances stay out (listed with why), and come in or leave on recheck()', () => {
  let banned = new Set(['b']);
  const c = new Cluster('svc', { screen: (s) => (banned.has(s.id) ? `${s.id} would loop` : s) });
  const events: string[] = [];
  c.on('endpoint-refused', (s, why) => events.push(`refused ${s.id}: ${why}`));
  c.on('endpoint-added', (ep) => events.push(`added ${ep.id}`));
  c.on('endpoint-removed', (ep) => events.push(`removed ${ep.id}`));
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  assert.deepEqual(c.endpoints().map((e) => e.id), ['a']);
  assert.deepEqual(c.refused().map((r) => [r.spec.id, r.why]), [['b', 'b would loop']]);
  assert.deepEqual(c.filteredOut(), [], 'not a where. filter');
  banned = new Set(['a']);
  c.recheck();
  assert.deepEqual(c.endpoints().map((e) => e.id), ['b']);
  assert.deepEqual(events, ['added a', 'refused b: b would loop', 'refused a: a would loop', 'added b', 'removed a']);
  c.setEndpoints('static', []);
  assert.deepEqual(c.refused(), []);
  c.close();
});

test('own listeners: registered by bound address; which addresses are ours is the host network\'s last look', () => {
  let addrs = ['10.0.0.1'];
  const clock = new FakeClock();
  const network = hostWith(() => addrs, clock);
  const own = new OwnListeners((a) => network.isLocal(a));
  own.add({ kind: 'connect', host: '0.0.0.0', port: 6379, what: 'x' });
  network.start();
  assert.ok(own.reachedAt('10.0.0.1', 6379));
  assert.equal(own.reachedAt('10.0.0.5', 6379), undefined);
  let changes = 0;
  network.on('change', () => changes++);
  addrs = ['10.0.0.1', '10.0.0.5'];
  assert.equal(own.reachedAt('10.0.0.5', 6379), undefined, 'not before the next look');
  clock.advance(1000);
  assert.ok(own.reachedAt('10.0.0.5', 6379), 'an address added later is ours from the next look on');
  assert.equal(changes, 1, 'one change event: the loops are checked again once');
  clock.advance(5000);
  assert.equal(changes, 1);
  network.stop();
});

test('a peer with several addresses keeps those that may be dialled; with none left it is refused', () => {
  const { facts: f } = facts({ peers: [{ address: '10.0.0.3', port: 6379 }] });
  const peer = spec('p', 6379, { source: 'mdns', host: '10.0.0.5', addresses: ['10.0.0.5', '127.0.0.1', 'fd00::5'], label: 'redis@p' });
  assert.deepEqual(screenEndpoint(peer, f), { ...peer, addresses: ['10.0.0.5', 'fd00::5'] }, 'the loopback address heard from another host is dropped');
  const first = spec('p', 6379, { source: 'mdns', host: '0.0.0.0', addresses: ['0.0.0.0', '10.0.0.5'], label: 'redis@p' });
  assert.deepEqual(screenEndpoint(first, f), { ...first, host: '10.0.0.5', addresses: ['10.0.0.5'] }, 'the address dialled first moves on');
  const none = spec('p', 6379, { source: 'mdns', host: '10.0.0.3', addresses: ['10.0.0.3', '127.0.0.1'], label: 'redis@p' });
  assert.match(screenEndpoint(none, f) as string, /10\.0\.0\.3:6379 is the --connect redis listener/);
  const clean = spec('p', 6380, { source: 'mdns', host: '10.0.0.5', addresses: ['10.0.0.5', 'fd00::5'] });
  assert.equal(screenEndpoint(clean, f), clean, 'untouched: the same object, so the cluster sees no change');
});

test('backendOf: the address dialled, or a relay\'s relay-to target (a loopback one with the announcing host)', () => {
  assert.equal(backendOf(spec('redis@a', 7000, { host: '198.18.1.1' })), '198.18.1.1:7000');
  assert.equal(backendOf(spec('redis@a', 7000, { host: 'fe80::1%lab0' })), '[fe80::1%lab0]:7000');
  const relay = (id: string, host: string, port: number, to: string) => backendOf(spec(id, port, { host, txt: { [RELAY_TO_TXT]: to } }));
  assert.equal(relay('db@a', '198.18.1.1', 40001, '127.0.0.1:5432'), relay('db@a (2)', '198.18.1.1', 40002, '127.0.0.1:5432'));
  assert.notEqual(relay('db@a', '198.18.1.1', 40001, '127.0.0.1:5432'), relay('db@b', '198.18.1.2', 40001, '127.0.0.1:5432'));
  assert.equal(relay('db@a', '198.18.1.1', 40001, '10.0.0.5:5432'), relay('db@b', '198.18.1.2', 40007, '10.0.0.5:5432'));
});
