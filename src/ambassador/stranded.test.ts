import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../base/clock.js';
import { HostNetwork, type LinkInfo } from '../base/host-network.js';
import { hostsAddressOf, StrandedWatch, type StrandedState } from './stranded.js';

/** A namespace whose interfaces (loopback and eth0 with `addresses` addresses) and /etc/hosts the test sets. */
function lab() {
  const ns = { addresses: 0, hosts: undefined as string | undefined };
  const clock = new FakeClock();
  const link = (name: string, n: number, loopback = false): LinkInfo => ({
    name, index: 0, loopback, multicast: !loopback, mtu: 1500, ipv6: [],
    ipv4: Array.from({ length: n }, (_, i) => ({ address: loopback ? '127.0.0.1' : `10.0.0.${i + 1}`, netmask: '255.255.255.0' })),
  });
  const network = new HostNetwork({ clock, read: () => [link('lo', 1, true), ...(ns.addresses ? [link('eth0', ns.addresses)] : [])] });
  const watch = new StrandedWatch(network, { clock, hostsAddress: () => ns.hosts });
  const states: StrandedState[] = [];
  const back: string[] = [];
  watch.on('state', (s) => states.push(s));
  watch.on('owner-back', (a) => back.push(a));
  const start = () => {
    network.start();
    watch.start();
  };
  const stop = () => {
    watch.stop();
    network.stop();
  };
  return { ns, clock, watch, network, states, back, start, stop };
}

test('hostsAddressOf: the non-loopback address Docker writes for the container\'s host name', () => {
  const docker = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff02::1\tip6-allnodes\n172.19.0.2\tae37b8294837\n';
  assert.equal(hostsAddressOf(docker, 'ae37b8294837'), '172.19.0.2');
  assert.equal(hostsAddressOf(docker, 'AE37B8294837'), '172.19.0.2');
  // while the owner is stopped Docker drops that line; loopback names and other hosts do not count
  assert.equal(hostsAddressOf('127.0.0.1\tlocalhost ae37b8294837\n10.0.0.9 registry # ae37b8294837\n', 'ae37b8294837'), undefined);
  assert.equal(hostsAddressOf('', 'x'), undefined);
});

test('never networked: waits, never stranded (the network is not up yet)', () => {
  const { clock, watch, states, back, ns, start, stop } = lab();
  ns.hosts = '172.19.0.2';
  start();
  clock.advance(60_000);
  assert.equal(watch.state, 'waiting');
  assert.deepEqual(states, []);
  assert.deepEqual(back, []);
  stop();
});

test('a link that flaps: stranded then networked again, the owner never "comes back"', () => {
  const { clock, watch, states, back, ns, start, stop } = lab();
  ns.addresses = 2;
  start();
  for (let i = 0; i < 5; i++) {
    ns.addresses = 0;
    clock.advance(3000);
    ns.addresses = 1;
    clock.advance(3000);
  }
  assert.deepEqual(states, Array(5).fill(['stranded', 'networked']).flat(), 'the first interface is no event');
  assert.deepEqual(back, []);
  stop();
});

test('the owner stops (its line leaves /etc/hosts) and starts again elsewhere: owner-back once, after the settle time', () => {
  const { clock, watch, states, back, ns, start, stop } = lab();
  ns.addresses = 1;
  ns.hosts = '172.19.0.2';
  start();
  // stop: the interface goes first, /etc/hosts is rewritten a moment later
  ns.addresses = 0;
  clock.advance(1000);
  assert.equal(watch.state, 'stranded');
  ns.hosts = undefined;
  clock.advance(60_000);
  assert.deepEqual(back, [], 'not while the owner is stopped, however long');
  ns.hosts = '172.19.0.3';
  clock.advance(1000);
  assert.deepEqual(back, [], 'not before the settle time');
  clock.advance(2000);
  assert.deepEqual(back, ['172.19.0.3']);
  clock.advance(10_000);
  assert.equal(back.length, 1);
  assert.deepEqual(states, ['stranded']);
  stop();
});

test('a stale /etc/hosts line that goes within the settle time is no owner-back', () => {
  const { clock, back, ns, start, stop } = lab();
  ns.addresses = 1;
  ns.hosts = '172.19.0.2';
  start();
  ns.addresses = 0;
  clock.advance(1000);
  clock.advance(1000); // the old line is still there for a tick
  ns.hosts = undefined;
  clock.advance(30_000);
  assert.deepEqual(back, []);
  stop();
});

test('the watch has no timer of its own: it follows the host network\'s looks', () => {
  const { clock, network, start, stop } = lab();
  start();
  assert.equal(clock.pending(), 1, 'the host network\'s next look');
  clock.advance(10_000);
  assert.equal(network.stats.looks, 11, 'one look a second');
  stop();
  assert.equal(clock.pending(), 0);
});
