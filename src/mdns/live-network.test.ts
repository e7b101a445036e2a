// The engine on a network that changes under it (DHCP, Wi-Fi, cables, VPNs): renumbering,
// interfaces coming and going, flapping links, starting before the network, IPv6 link-local
// zones. Fake network and fake clock: every time here is exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeNet, from, inject } from '../testing/fake-net.js';
import type { ServiceInstance } from './browse/browser.js';
import type { NetworkState } from './engine.js';
import { FLAP_SETTLE_MS, LINK_SETTLE_MS } from './publish/publisher.js';
import { IPV4_GRACE_MS } from './browse/browser.js';
import type { MdnsRecord } from './wire/records.js';

async function announcedOn(addr = '198.18.0.1') {
  const net = new FakeNet();
  net.set('lab0', [addr]);
  const engine = net.engine();
  await engine.start();
  const reg = engine.publish({ name: 'redis', instance: 'redis@db', port: 6379 });
  await net.advance(3000);
  assert.equal(reg.state, 'announced');
  return { net, engine, reg };
}

const answersOf = (net: FakeNet, from: number) => net.packets({ from, type: 'response' }).flatMap((s) => s.p.answers);

test('renumbering: the goodbye of the old address and the new one (cache-flush) leave in one packet, repeated once; no probe, no rename', async () => {
  const { net, engine, reg } = await announcedOn('198.18.0.1');
  const mark = net.sent.length;
  const changes: string[] = [];
  engine.on('interface', (c) => changes.push(`${c.change} ${c.interface} +${c.added} -${c.removed}`));
  net.set('lab0', ['198.18.0.101']);
  await net.advance(1050);
  const first = net.packets({ from: mark });
  assert.equal(first.length, 1, 'one packet as soon as the change is seen');
  const recs = first[0]!.p.answers.map((a) => `${a.type} ${a.data} ttl=${a.ttl}${a.flush ? ' flush' : ''}`);
  assert.deepEqual(recs.sort(), ['A 198.18.0.1 ttl=0 flush', 'A 198.18.0.101 ttl=120 flush']);
  await net.advance(3000);
  const all = net.packets({ from: mark });
  assert.equal(all.length, 2, `packets per address change: ${all.length}`);
  assert.deepEqual(all[1]!.p.answers.map((a) => `${a.type} ${a.data}`), ['A 198.18.0.101']);
  assert.equal(all[1]!.at - all[0]!.at, 1000);
  assert.ok(!all.some((s) => s.p.type === 'query'), 'no probe: the name is ours on this link already');
  assert.deepEqual(changes, ['address lab0 +198.18.0.101 -198.18.0.1']);
  assert.equal(reg.instance, 'redis@db');
  assert.equal(engine.hostName, 'db.local');
  // The new address answers queries.
  const m2 = net.sent.length;
  inject(engine, 'lab0', { type: 'query', questions: [{ name: 'db.local', type: 'A' }] }, from('198.18.0.9'));
  net.clock.advance(1);
  assert.deepEqual(answersOf(net, m2).map((a) => a.data), ['198.18.0.101']);
  // An echo of our old announcement (the old address) is not a rival.
  inject(engine, 'lab0', { type: 'response', answers: [{ name: 'db.local', type: 'A', ttl: 120, flush: true, data: '198.18.0.1' }] }, from('198.18.0.9'));
  await net.advance(2000);
  assert.equal(engine.hostName, 'db.local');
});

test('a second address on the link: announced with the first in the same RRset, so the cache-flush bit keeps both', async () => {
  const { net } = await announcedOn('198.18.0.1');
  const mark = net.sent.length;
  net.set('lab0', ['198.18.0.1', '198.18.0.2']);
  await net.advance(1050);
  const p = net.packets({ from: mark })[0]!.p;
  assert.deepEqual(p.answers.map((a) => `${a.data} ${a.ttl}`).sort(), ['198.18.0.1 120', '198.18.0.2 120']);
});

test('start with no usable interface: wait, then probe and announce when one appears (after 0.5 s settling)', async () => {
  const net = new FakeNet();
  const engine = net.engine();
  const states: NetworkState[] = [];
  engine.on('network', (s) => states.push(s));
  await engine.start();
  assert.equal(engine.network().interfaces.length, 0);
  assert.ok(engine.network().unusableSince !== undefined, 'the network view says since when there is none (for sidecars)');
  const reg = engine.publish({ name: 'redis', instance: 'redis@db', port: 6379 });
  assert.equal(reg.state, 'probing');
  assert.equal(reg.stateReason, 'waiting for a network interface');
  await net.advance(10_000);
  assert.equal(net.sent.length, 0, 'silent without an interface');
  const upAt = net.clock.now() + 1000; // seen at the next poll
  net.set('eth0', ['10.0.0.5']);
  await net.advance(1000);
  assert.equal(engine.network().interfaces[0]!.name, 'eth0');
  assert.equal(states.at(-1)!.unusableSince, undefined);
  await net.advance(LINK_SETTLE_MS - 50);
  assert.equal(net.sent.length, 0, 'the link settles before we probe');
  await net.advance(3000);
  const firstProbe = net.packets({ type: 'query' })[0]!;
  const announce = net.packets({ type: 'response' })[0]!;
  assert.ok(firstProbe.at >= upAt + LINK_SETTLE_MS);
  assert.equal(reg.state, 'announced');
  console.log(`# link up → first probe ${firstProbe.at - upAt} ms, → announced ${announce.at - upAt} ms (fake clock; plus up to 1 s until the next poll sees the link)`);
});

test('an interface added at run time gets its own probe and announcement with its own address; the first link hears none of it', async () => {
  const { net, engine } = await announcedOn('198.18.0.1');
  const mark = net.sent.length;
  net.set('lab1', ['198.19.0.1']);
  await net.advance(4000);
  assert.equal(net.packets({ from: mark, link: 'lab0' }).length, 0, 'nothing new on lab0');
  const onLab1 = net.packets({ from: mark, link: 'lab1' });
  assert.ok(onLab1.some((s) => s.p.type === 'query' && s.p.questions.some((q) => q.name === 'redis@db._redis._tcp.local')), 'probed there');
  const a = onLab1.filter((s) => s.p.type === 'response').flatMap((s) => s.p.answers).filter((r) => r.type === 'A');
  assert.deepEqual([...new Set(a.map((r) => r.data))], ['198.19.0.1'], 'each link announces its own address');
  assert.equal(engine.network().interfaces.length, 2);
});

test('an interface removed: what was learned only there leaves the cache (after a grace for flaps); the rest stays', async () => {
  const net = new FakeNet();
  net.set('lab0', ['198.18.0.1']);
  net.set('lab1', ['198.19.0.1']);
  const engine = net.engine();
  await engine.start();
  const b = engine.browse('redis');
  const up: ServiceInstance[] = [];
  b.on('up', (i) => up.push(i));
  const ann = (inst: string, addr: string): MdnsRecord[] => [
    { name: '_redis._tcp.local', type: 'PTR', ttl: 4500, data: `${inst}._redis._tcp.local` },
    { name: `${inst}._redis._tcp.local`, type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 6379, target: `${inst}.local` } },
    { name: `${inst}.local`, type: 'A', ttl: 120, flush: true, data: addr },
  ];
  inject(engine, 'lab0', { type: 'response', answers: ann('one', '198.18.0.9') }, from('198.18.0.9'));
  inject(engine, 'lab1', { type: 'response', answers: ann('two', '198.19.0.9') }, from('198.19.0.9'));
  await net.advance(100);
  assert.deepEqual(up.map((i) => i.instance).sort(), ['one', 'two']);
  const downs: string[] = [];
  b.on('down', (i) => downs.push(i.instance));
  net.remove('lab1');
  await net.advance(1000);
  assert.deepEqual(downs, [], 'kept for a few seconds: a flap must not drop what we knew');
  await net.advance(5000);
  assert.deepEqual(downs, ['two']);
  assert.deepEqual(b.instances().map((i) => i.instance), ['one'], 'the remaining link is unaffected');
  assert.ok(engine.cache.lookup('two.local', 'A').length === 0 && engine.cache.lookup('one.local', 'A').length === 1);
});

test('five quick down/up cycles: no rename, probes wait longer once the link flaps, one announcement each', async () => {
  const { net, engine, reg } = await announcedOn('198.18.0.1');
  const renames: string[] = [];
  engine.on('host-renamed', (o, n) => renames.push(`${o}→${n}`));
  reg.on('renamed', (o, n) => renames.push(`${o}→${n}`));
  for (let i = 0; i < 5; i++) {
    net.remove('lab0');
    await net.advance(1000);
    assert.equal(engine.network().interfaces.length, 0);
    net.set('lab0', ['198.18.0.1']);
    await net.advance(1000);
  }
  const mark = net.sent.length;
  // Our own earlier announcement, echoed late by the network, is no rival.
  inject(engine, 'lab0', { type: 'response', answers: [{ name: 'redis@db._redis._tcp.local', type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 6379, target: 'db.local' } }] }, from('198.18.0.9'));
  await net.advance(FLAP_SETTLE_MS - 1200);
  assert.equal(net.packets({ from: mark, type: 'query' }).length, 0, 'a flapping link pauses longer before probing');
  await net.advance(4000);
  assert.deepEqual(renames, []);
  assert.equal(reg.state, 'announced');
  const srvAnnouncements = net.packets({ from: mark, type: 'response' }).filter((s) => s.p.answers.some((a) => a.type === 'SRV' && a.ttl > 0));
  assert.equal(srvAnnouncements.length, 1, 'one announcement on a flapping link');
});

test('a real rival for our host name on a new link still makes us rename', async () => {
  const { net, engine } = await announcedOn('198.18.0.1');
  net.set('lab1', ['198.19.0.1']);
  await net.advance(1000 + LINK_SETTLE_MS + 300);
  inject(engine, 'lab1', { type: 'response', answers: [{ name: 'db.local', type: 'A', ttl: 120, flush: true, data: '198.19.0.77' }] }, from('198.19.0.77'));
  await net.advance(3000);
  assert.equal(engine.hostName, 'db-2.local');
});

test('IPv6 link-local: learned with its zone, ordered after IPv4; an IPv6-only host is reported after a short wait for an A', async () => {
  const net = new FakeNet();
  net.set('lab0', ['198.18.0.1'], ['fe80::1']);
  const engine = net.engine();
  await engine.start();
  const b = engine.browse('redis');
  const events: string[] = [];
  b.on('up', (i) => events.push(`up@${net.clock.now()} ${i.addresses.join(',')}`));
  b.on('update', (i) => events.push(`update ${i.addresses.join(',')}`));
  const srv = (inst: string): MdnsRecord[] => [
    { name: '_redis._tcp.local', type: 'PTR', ttl: 4500, data: `${inst}._redis._tcp.local` },
    { name: `${inst}._redis._tcp.local`, type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 6379, target: `${inst}.local` } },
  ];
  // Dual stack, the AAAA (IPv6 packet) a few ms before the A (IPv4 packet).
  const t0 = net.clock.now();
  inject(engine, 'lab0', { type: 'response', answers: [...srv('dual'), { name: 'dual.local', type: 'AAAA', ttl: 120, flush: true, data: 'fe80::9' }] }, from('fe80::9%lab0'));
  await net.advance(20, 5);
  inject(engine, 'lab0', { type: 'response', answers: [{ name: 'dual.local', type: 'A', ttl: 120, flush: true, data: '198.18.0.9' }] }, from('198.18.0.9'));
  await net.advance(20, 5);
  assert.equal(events.length, 1, 'one up');
  assert.match(events[0]!, /^up@\d+ 198\.18\.0\.9,fe80::9%lab0$/, 'IPv4 first, the link-local address with its zone');
  assert.ok(Number(/@(\d+)/.exec(events[0]!)![1]) - t0 < IPV4_GRACE_MS, 'as soon as the A arrived');
  assert.ok(net.packets({ type: 'query' }).some((s) => s.p.questions.some((q) => q.name === 'dual.local' && q.type === 'A')), 'asked for the A');

  // IPv6 only: reported once the grace is over.
  events.length = 0;
  const t1 = net.clock.now();
  inject(engine, 'lab0', { type: 'response', answers: [...srv('six'), { name: 'six.local', type: 'AAAA', ttl: 120, flush: true, data: 'fe80::6' }] }, from('fe80::6%lab0'));
  await net.advance(IPV4_GRACE_MS + 50, 10);
  assert.equal(events.length, 1);
  assert.match(events[0]!, /^up@(\d+) fe80::6%lab0$/);
  assert.ok(Number(/@(\d+)/.exec(events[0]!)![1]) - t1 >= IPV4_GRACE_MS);
});

test('a link that gains IPv4 later announces there too (per-family bookkeeping)', async () => {
  const net = new FakeNet();
  net.set('lab0', [], ['fe80::1']);
  const engine = net.engine();
  await engine.start();
  engine.publish({ name: 'redis', instance: 'redis@db', port: 6379 });
  await net.advance(3000);
  assert.ok(net.packets({ type: 'response' }).every((s) => s.family === 'IPv6'));
  const mark = net.sent.length;
  net.set('lab0', ['198.18.0.1'], ['fe80::1']);
  await net.advance(2000);
  const v4 = net.packets({ from: mark, type: 'response' }).filter((s) => s.family === 'IPv4').flatMap((s) => s.p.answers);
  assert.ok(v4.some((a) => a.type === 'SRV'), 'the service is announced on the new family');
  assert.ok(v4.some((a) => a.type === 'A' && a.data === '198.18.0.1'));
});
