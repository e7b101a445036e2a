import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from './clock.js';
import { HostNetwork, type LinkDiff, type LinkInfo, readLinks } from './host-network.js';

const link = (name: string, ipv4: string[], extra: Partial<LinkInfo> = {}): LinkInfo => ({
  name, index: 0, loopback: false, multicast: true, mtu: 1500, ipv6: [],
  ipv4: ipv4.map((address) => ({ address, netmask: '255.255.255.0' })),
  ...extra,
});

function setup() {
  const clock = new FakeClock();
  const links = new Map<string, LinkInfo>([['lo', link('lo', ['127.0.0.1'], { loopback: true, multicast: false })]]);
  let reads = 0;
  const network = new HostNetwork({ clock, read: () => (reads++, [...links.values()]) });
  const changes: string[][] = [];
  network.on('change', (diffs: LinkDiff[]) => changes.push(diffs.map((d) => `${d.kind} ${d.name} +${d.added} -${d.removed}`)));
  return { clock, links, network, changes, reads: () => reads };
}

test('one look a second for everyone: listeners share it, and a change is told once', () => {
  const { clock, links, network, changes, reads } = setup();
  let looks = 0;
  for (let i = 0; i < 3; i++) network.on('look', () => looks++);
  network.start();
  clock.advance(10_000);
  assert.equal(reads(), 11, 'the first look at start, then one a second');
  assert.equal(network.stats.looks, 11);
  assert.equal(looks, 33, 'each listener hears every look');
  assert.deepEqual(changes, [['added lo +127.0.0.1 -']]);
  links.set('eth0', link('eth0', ['10.0.0.5']));
  clock.advance(1000);
  links.set('eth0', link('eth0', ['10.0.0.6']));
  clock.advance(1000);
  assert.deepEqual(changes.slice(1), [['added eth0 +10.0.0.5 -'], ['changed eth0 +10.0.0.6 -10.0.0.5']]);
  network.stop();
  assert.equal(clock.pending(), 0, 'stopped: no timer left');
});

test('isLocal: loopback, unspecified and every address of every interface at the last look', () => {
  const { clock, links, network } = setup();
  links.set('eth0', link('eth0', ['10.0.0.5'], { ipv6: [{ address: 'fe80::5', netmask: 'ffff:ffff:ffff:ffff::' }] }));
  links.set('tun0', link('tun0', ['10.8.0.2'], { multicast: false }));
  assert.ok(network.isLocal('10.0.0.5') && network.isLocal('10.8.0.2'), 'a first look without start()');
  assert.ok(network.isLocal('127.0.0.9') && network.isLocal('0.0.0.0') && network.isLocal('::'));
  assert.ok(network.isLocal('FE80::5%eth0') && network.isLocal('::ffff:10.0.0.5'), 'compared in one spelling');
  assert.ok(!network.isLocal('10.0.0.6'));
  network.start();
  links.set('eth0', link('eth0', ['10.0.0.6']));
  assert.ok(!network.isLocal('10.0.0.6'), 'not before the next look');
  clock.advance(1000);
  assert.ok(network.isLocal('10.0.0.6') && !network.isLocal('10.0.0.5'));
  network.stop();
});

test('the one "no network" verdict: waiting until the first address, stranded when all are gone, networked again', () => {
  const { clock, links, network } = setup();
  network.start();
  assert.equal(network.verdict, 'waiting', 'loopback only from the start: not up yet');
  assert.equal(network.noNetworkSince, clock.now());
  clock.advance(5000);
  links.set('eth0', link('eth0', ['10.0.0.5']));
  clock.advance(1000);
  assert.equal(network.verdict, 'networked');
  assert.equal(network.noNetworkSince, undefined);
  links.delete('eth0');
  clock.advance(1000);
  const lost = clock.now();
  assert.equal(network.verdict, 'stranded');
  assert.equal(network.noNetworkSince, lost);
  clock.advance(3000);
  assert.equal(network.noNetworkSince, lost, 'since the look that found none');
  links.set('eth1', link('eth1', [], { ipv6: [{ address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::' }] }));
  clock.advance(1000);
  assert.equal(network.verdict, 'networked', 'an IPv6 link-local address is a network too');
  network.stop();
});

test('an interface re-created under the same name (another index) is removed, then added; an MTU change is a change', () => {
  const { clock, links, network, changes } = setup();
  links.set('veth1', link('veth1', ['10.0.0.1'], { index: 7 }));
  network.start();
  links.set('veth1', link('veth1', ['10.0.0.1'], { index: 9 }));
  clock.advance(1000);
  assert.deepEqual(changes.at(-1), ['removed veth1 + -10.0.0.1', 'added veth1 +10.0.0.1 -']);
  links.set('veth1', link('veth1', ['10.0.0.1'], { index: 9, mtu: 9000 }));
  clock.advance(1000);
  assert.deepEqual(changes.at(-1), ['changed veth1 + -']);
  network.stop();
});

test('a failed look is a warning and changes nothing', () => {
  const clock = new FakeClock();
  let fail = false;
  const network = new HostNetwork({ clock, read: () => {
    if (fail) throw new Error('EMFILE');
    return [link('eth0', ['10.0.0.5'])];
  } });
  const warnings: string[] = [];
  network.on('warning', (err) => warnings.push(err.message));
  network.start();
  fail = true;
  clock.advance(1000);
  assert.deepEqual(warnings, ['cannot list network interfaces: EMFILE']);
  assert.deepEqual(network.links().map((l) => l.name), ['eth0']);
  assert.equal(network.verdict, 'networked');
  network.stop();
});

test('readLinks: this host\'s interfaces, loopback flagged', () => {
  const links = readLinks();
  assert.ok(links.some((l) => l.loopback && l.ipv4.some((a) => a.address.startsWith('127.'))), 'lo is up in every namespace the tests run in');
});
