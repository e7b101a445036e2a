import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../base/clock.js';
import { HostNetwork, type LinkDiff, type LinkInfo } from '../../base/host-network.js';
import { InterfaceError, InterfaceSelection } from './interfaces.js';
import { SelectedLinks } from './selected-links.js';
import { linkInfo } from '../../testing/fake-net.js';

function setup(select = InterfaceSelection.all()) {
  const clock = new FakeClock();
  const links = new Map<string, LinkInfo>();
  const diffs: LinkDiff[][] = [];
  const network = new HostNetwork({ read: () => [...links.values()], clock, intervalMs: 1000 });
  const m = new SelectedLinks({ network, select, clock });
  m.on('change', (d: LinkDiff[]) => diffs.push(d));
  const start = () => {
    network.start();
    m.start();
  };
  return { clock, links, diffs, m, network, start };
}

const brief = (ds: LinkDiff[]) => ds.map((d) => `${d.kind} ${d.name} +${d.added.join(',')} -${d.removed.join(',')}`);

test('the selected links: added, changed and removed interfaces at the host network\'s looks, once a second; nothing when nothing changed', () => {
  const { clock, links, diffs, m, network, start } = setup();
  start();
  assert.deepEqual(diffs, [], 'no interface, no diff');
  assert.ok(m.unusableSince !== undefined);
  links.set('eth0', linkInfo('eth0', ['10.251.0.1']));
  clock.advance(999);
  assert.equal(diffs.length, 0);
  clock.advance(1);
  assert.deepEqual(brief(diffs.pop()!), ['added eth0 +10.251.0.1 -']);
  assert.equal(m.unusableSince, undefined);
  clock.advance(5000);
  assert.equal(diffs.length, 0, 'no change, no diff');
  // Renumbering: add the new address, delete the old one.
  links.set('eth0', linkInfo('eth0', ['10.251.0.101']));
  clock.advance(1000);
  assert.deepEqual(brief(diffs.pop()!), ['changed eth0 +10.251.0.101 -10.251.0.1']);
  links.delete('eth0');
  clock.advance(1000);
  assert.deepEqual(brief(diffs.pop()!), ['removed eth0 + -10.251.0.101']);
  assert.equal(m.unusableSince, clock.now());
  m.stop();
  network.stop();
  assert.equal(clock.pending(), 0);
});

test('an interface re-created under the same name (another index) is removed, then added', () => {
  const { clock, links, diffs, start } = setup();
  links.set('veth1', linkInfo('veth1', ['10.0.0.1'], [], { index: 7 }));
  start();
  links.set('veth1', linkInfo('veth1', ['10.0.0.1'], [], { index: 9 }));
  clock.advance(1000);
  assert.deepEqual(brief(diffs.pop()!), ['removed veth1 + -10.0.0.1', 'added veth1 +10.0.0.1 -']);
});

test('selection: default is every up multicast non-loopback interface; includes, excludes and globs as Avahi', () => {
  const eth = linkInfo('eth0', ['192.168.7.2']);
  const docker = linkInfo('docker0', ['172.17.0.1']);
  const lo = linkInfo('lo', ['127.0.0.1'], [], { loopback: true, multicast: false });
  const tun = linkInfo('tun0', ['10.8.0.2'], [], { multicast: false });
  const pick = (inc: string[], exc: string[] = []) => [eth, docker, lo, tun].filter((l) => InterfaceSelection.parse(inc, exc).selects(l)).map((l) => l.name);
  assert.deepEqual(pick([]), ['eth0', 'docker0']);
  assert.deepEqual(pick([], ['docker*']), ['eth0']);
  assert.deepEqual(pick(['*']), ['eth0', 'docker0'], 'a glob never picks loopback or a non-multicast link');
  assert.deepEqual(pick(['lo']), ['lo'], 'loopback when named');
  assert.deepEqual(pick(['127.0.0.1']), ['lo'], 'or by address');
  assert.deepEqual(pick(['tun0']), ['tun0'], 'a named link is used even without the multicast flag');
  assert.deepEqual(pick(['192.168.7.2', 'docker?']), ['eth0', 'docker0']);
  assert.deepEqual(pick(['eth0'], ['192.168.7.2']), [], 'an exclude always wins');
  assert.deepEqual(InterfaceSelection.parse(['eth9', 'eth0']).unmatched([eth]), ['eth9']);
});

test('selection: only malformed values are errors', () => {
  for (const ok of ['eth1', 'wlp2s0', 'docker*', 'veth?', 'eth0:1', '10.0.0.1', 'fe80::1', 'fe80::1%eth0']) {
    assert.doesNotThrow(() => InterfaceSelection.parse([ok]), ok);
  }
  for (const bad of ['', 'eth 0', 'a/b', '300.1.1.1', 'averyveryverylongname0', '[ab]']) {
    assert.throws(() => InterfaceSelection.parse([bad]), InterfaceError, JSON.stringify(bad));
  }
  assert.throws(() => InterfaceSelection.parse([], ['x y']), /--exclude-interface/);
});
