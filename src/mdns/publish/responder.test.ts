// Probing, announcing and answering (RFC 6762 §6, §8, §9, §10), through the whole engine on a
// fake network and the fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeNet, from, inject, settle } from '../../testing/fake-net.js';
import type { MdnsRecord } from '../wire/records.js';
import type { OutgoingPacket } from '../wire/codec.js';

const PEER = '198.18.0.9';

async function setup() {
  const net = new FakeNet();
  net.set('lab0', ['198.18.0.1']);
  const engine = net.engine();
  await engine.start();
  return { net, engine, clock: net.clock };
}

async function announced() {
  const s = await setup();
  const reg = s.engine.publish({ name: 'redis', instance: 'redis@db', port: 6379, txt: { env: 'prod' } });
  await s.net.advance(2500);
  return { ...s, reg };
}

const query = (name: string, type: string, extra: Partial<OutgoingPacket> = {}): OutgoingPacket => ({ type: 'query', questions: [{ name, type }], ...extra });

test('probing: 3 probes 250 ms apart with the proposed records, then two announcements 1 s apart', async () => {
  const { net, engine } = await setup();
  const reg = engine.publish({ name: 'redis', instance: 'redis@db', port: 6379 });
  await net.advance(5000);
  const probes = net.packets({ type: 'query' }).filter((s) => s.p.questions.some((q) => q.name === 'redis@db._redis._tcp.local'));
  assert.equal(probes.length, 3);
  const q0 = probes[0]!.p.questions.find((q) => q.name === 'redis@db._redis._tcp.local')!;
  assert.equal(q0.qu, true, 'first probe asks for unicast replies');
  assert.equal(probes[1]!.at - probes[0]!.at, 250);
  assert.equal(probes[2]!.at - probes[1]!.at, 250);
  assert.deepEqual(probes[0]!.p.authorities.filter((a) => a.name === 'redis@db._redis._tcp.local').map((a) => a.type).sort(), ['SRV', 'TXT']);
  assert.ok(probes[0]!.p.questions.some((q) => q.name === 'db.local'), 'the host name is probed in the same packet (§8.1)');
  const announcements = net.packets({ type: 'response' }).filter((s) => s.p.answers.some((a) => a.type === 'SRV'));
  assert.equal(announcements.length, 2);
  assert.equal(announcements[1]!.at - announcements[0]!.at, 1000);
  assert.ok(announcements[0]!.at - probes[2]!.at >= 250);
  const srv = announcements[0]!.p.answers.find((a) => a.type === 'SRV')!;
  assert.equal(srv.flush, true, 'unique records carry the cache-flush bit');
  const ptr = announcements[0]!.p.answers.find((a) => a.type === 'PTR' && a.name === '_redis._tcp.local')!;
  assert.equal(!!ptr.flush, false, 'shared PTR has no cache-flush bit');
  assert.ok(announcements[0]!.p.answers.some((a) => a.type === 'A' && a.data === '198.18.0.1'), 'the host address is in the same packet');
  assert.equal(reg.state, 'announced');
});

test('a conflicting response while probing renames the instance and probes again', async () => {
  const { net, engine } = await setup();
  const reg = engine.publish({ name: 'redis', instance: 'redis@db', port: 6379 });
  await net.advance(300);
  inject(engine, 'lab0', {
    type: 'response',
    answers: [{ name: 'redis@db._redis._tcp.local', type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 1, target: 'other.local' } }],
  }, from(PEER));
  assert.equal(reg.instance, 'redis@db (2)');
  await net.advance(3000);
  assert.equal(reg.state, 'announced');
});

test('our own probe and announcement, echoed back, are no conflict', async () => {
  const { net, engine } = await setup();
  const reg = engine.publish({ name: 'redis', instance: 'redis@db', port: 6379 });
  // Loop every packet we send back to us, as multicast loopback does.
  let seen = 0;
  for (let i = 0; i < 60; i++) {
    await net.advance(50);
    for (const s of net.sent.slice(seen)) inject(engine, 'lab0', { ...s.p, type: s.p.type }, from('198.18.0.1'));
    seen = net.sent.length;
  }
  assert.equal(reg.instance, 'redis@db');
  assert.equal(engine.hostName, 'db.local');
  assert.equal(reg.state, 'announced');
});

test('answers a PTR query after 20–120 ms with SRV, TXT, A and an NSEC for the missing AAAA as additionals', async () => {
  const { net, engine } = await announced();
  await net.advance(1500); // outside the one-second rate limit of the announcements
  const mark = net.sent.length;
  inject(engine, 'lab0', query('_redis._tcp.local', 'PTR'), from(PEER));
  assert.equal(net.sent.length, mark, 'shared answers are delayed');
  net.clock.advance(121);
  const sent = net.packets({ from: mark });
  assert.equal(sent.length, 1);
  const p = sent[0]!.p;
  assert.deepEqual(p.answers.map((a) => a.data), ['redis@db._redis._tcp.local']);
  assert.deepEqual(p.additionals.map((a) => a.type).sort(), ['A', 'NSEC', 'SRV', 'TXT']);
  const nsec = p.additionals.find((a) => a.type === 'NSEC')!;
  assert.equal(nsec.name, 'db.local');
  assert.deepEqual((nsec.data as { rrtypes: string[] }).rrtypes, ['A'], 'the host has an A and no AAAA');
  assert.equal(sent[0]!.dest, undefined, 'multicast');
});

test('A ↔ AAAA: an A answer brings the AAAA along; a question for a type we lack gets an NSEC at once', async () => {
  const net = new FakeNet();
  net.set('lab0', ['198.18.0.1'], ['fe80::1']);
  const engine = net.engine();
  await engine.start();
  engine.publish({ name: 'redis', instance: 'redis@db', port: 6379 });
  await net.advance(4000);
  let mark = net.sent.length;
  inject(engine, 'lab0', query('db.local', 'A'), from(PEER));
  net.clock.advance(1);
  const r = net.packets({ from: mark, link: 'lab0' }).find((s) => s.family === 'IPv4')!.p;
  assert.deepEqual(r.answers.map((a) => `${a.type} ${a.data}`), ['A 198.18.0.1']);
  assert.deepEqual(r.additionals.map((a) => `${a.type} ${a.data}`), ['AAAA fe80::1']);

  mark = net.sent.length;
  inject(engine, 'lab0', query('redis@db._redis._tcp.local', 'A'), from(PEER));
  net.clock.advance(1);
  const n = net.packets({ from: mark })[0]!.p;
  assert.equal(n.answers[0]!.type, 'NSEC', 'unique name, no such type: NSEC (§6.1), sent at once');
  assert.deepEqual([...(n.answers[0]!.data as { rrtypes: string[] }).rrtypes].sort(), ['SRV', 'TXT']);
  assert.equal(n.answers[0]!.flush, true);
});

test('known-answer suppression: no reply when the querier holds the record at ≥ half TTL', async () => {
  const { net, engine } = await announced();
  await net.advance(1500);
  const mark = net.sent.length;
  const known: MdnsRecord = { name: '_redis._tcp.local', type: 'PTR', ttl: 4000, data: 'redis@db._redis._tcp.local' };
  inject(engine, 'lab0', query('_redis._tcp.local', 'PTR', { answers: [known] }), from(PEER));
  net.clock.advance(200);
  assert.equal(net.sent.length, mark);
  inject(engine, 'lab0', query('_redis._tcp.local', 'PTR', { answers: [{ ...known, ttl: 100 }] }), from(PEER));
  net.clock.advance(200);
  assert.equal(net.sent.length, mark + 1, 'a known answer with less than half its TTL left does not suppress');
  assert.equal(engine.stats().answersSuppressed, 1);
});

test('TC: the answer waits 400–500 ms for the continuation, whose known answers suppress it (§7.2)', async () => {
  const { net, engine } = await announced();
  await net.advance(1500);
  const mark = net.sent.length;
  inject(engine, 'lab0', query('_redis._tcp.local', 'PTR', { flags: 1 << 9 }), from(PEER));
  net.clock.advance(300);
  assert.equal(net.sent.length, mark, 'held for the rest of the known answers');
  inject(engine, 'lab0', { type: 'query', answers: [{ name: '_redis._tcp.local', type: 'PTR', ttl: 4500, data: 'redis@db._redis._tcp.local' }] }, from(PEER));
  net.clock.advance(300);
  assert.equal(net.sent.length, mark, 'the continuation listed our record: nothing to say');

  inject(engine, 'lab0', query('_redis._tcp.local', 'PTR', { flags: 1 << 9 }), from(PEER));
  net.clock.advance(399);
  assert.equal(net.sent.length, mark);
  net.clock.advance(102);
  assert.equal(net.sent.length, mark + 1, 'no continuation: answered after 400–500 ms');
});

test('rate limit: a record is multicast at most once per second', async () => {
  const { net, engine } = await announced();
  await net.advance(1500);
  const mark = net.sent.length;
  const rl = engine.stats().rateLimited;
  inject(engine, 'lab0', query('redis@db._redis._tcp.local', 'SRV'), from(PEER));
  net.clock.advance(1);
  inject(engine, 'lab0', query('redis@db._redis._tcp.local', 'SRV'), from(PEER));
  net.clock.advance(1);
  assert.equal(net.sent.length, mark + 1, 'unique answer goes out at once, the repeat is held back');
  assert.equal(engine.stats().rateLimited, rl + 1);
  net.clock.advance(1000);
  inject(engine, 'lab0', query('redis@db._redis._tcp.local', 'SRV'), from(PEER));
  net.clock.advance(1);
  assert.equal(net.sent.length, mark + 2);
});

test('legacy unicast: reply to the source port with the ID echoed and TTL capped at 10 s', async () => {
  const { net, engine } = await announced();
  await net.advance(1500);
  const mark = net.sent.length;
  inject(engine, 'lab0', { ...query('redis@db._redis._tcp.local', 'SRV'), id: 777 }, from(PEER, 40000));
  const sent = net.packets({ from: mark });
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]!.dest, { address: PEER, port: 40000 });
  assert.equal(sent[0]!.p.id, 777);
  assert.deepEqual(sent[0]!.p.questions.map((q) => q.name), ['redis@db._redis._tcp.local'], 'question echoed');
  assert.ok([...sent[0]!.p.answers, ...sent[0]!.p.additionals].every((a) => a.ttl <= 10 && !a.flush));
});

test('a QU question gets a unicast answer when the record was multicast recently', async () => {
  const { net, engine } = await announced();
  const mark = net.sent.length;
  inject(engine, 'lab0', { type: 'query', questions: [{ name: 'redis@db._redis._tcp.local', type: 'SRV', qu: true }] }, from(PEER));
  const sent = net.packets({ from: mark });
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]!.dest, { address: PEER, port: 5353 });
});

test('a goodbye for our live record from elsewhere is answered by re-announcing it (RFC 6762 §10.1)', async () => {
  const { net, engine } = await announced();
  await net.advance(1500);
  const mark = net.sent.length;
  inject(engine, 'lab0', {
    type: 'response',
    answers: [{ name: 'redis@db._redis._tcp.local', type: 'SRV', ttl: 0, flush: true, data: { priority: 0, weight: 0, port: 6379, target: 'db.local' } }],
  }, from(PEER));
  net.clock.advance(1);
  const sent = net.packets({ from: mark });
  assert.equal(sent.length, 1);
  assert.ok(sent[0]!.p.answers.some((a) => a.type === 'SRV' && a.ttl > 0));
  assert.equal(engine.stats().reannouncedAfterSpoofedGoodbye, 1);
});

test('withdrawal and stop send goodbyes (TTL 0) for everything that was announced', async () => {
  const { net, engine, reg } = await announced();
  let mark = net.sent.length;
  engine.unpublish(reg);
  net.clock.advance(1);
  const byes = net.packets({ from: mark }).flatMap((s) => s.p.answers);
  assert.ok(byes.length >= 4);
  assert.ok(byes.every((a) => a.ttl === 0));
  assert.ok(!byes.some((a) => a.type === 'A'), 'the host stays');
  mark = net.sent.length;
  await engine.stop();
  await settle();
  assert.ok(net.packets({ from: mark }).flatMap((s) => s.p.answers).some((a) => a.type === 'A' && a.ttl === 0));
});

test('simultaneous probe tiebreak: losing waits a second and probes again; winning goes on (§8.2)', async () => {
  const { net, engine } = await setup();
  const reg = engine.publish({ name: 'redis', instance: 'redis@db', port: 6379 });
  await net.advance(260); // first probe out
  // A rival probing the same instance with a later SRV (higher port wins): we lose. Its empty
  // TXT is identical to ours: that does not make its probe look like our own.
  inject(engine, 'lab0', {
    type: 'query', questions: [{ name: 'redis@db._redis._tcp.local', type: 'ANY' }],
    authorities: [
      { name: 'redis@db._redis._tcp.local', type: 'SRV', ttl: 120, data: { priority: 0, weight: 0, port: 65000, target: 'zz.local' } },
      { name: 'redis@db._redis._tcp.local', type: 'TXT', ttl: 4500, data: [Buffer.alloc(0)] },
    ],
  }, from(PEER));
  const mark = net.sent.length;
  await net.advance(900);
  assert.ok(!net.packets({ from: mark, type: 'query' }).some((s) => s.p.questions.some((q) => q.name === 'redis@db._redis._tcp.local')), 'quiet for a second');
  await net.advance(3000);
  assert.equal(reg.state, 'announced');
  assert.equal(reg.instance, 'redis@db', 'a tiebreak loss is no rename');
});

test('15 conflicts within 10 s: the next attempt waits 5 s (§8.1)', async () => {
  const { net, engine } = await setup();
  const reg = engine.publish({ name: 'redis', instance: 'redis@db', port: 6379 });
  const rival = (name: string): OutgoingPacket => ({
    type: 'response', answers: [{ name, type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 1, target: 'other.local' } }],
  });
  for (let i = 0; i < 15; i++) {
    await net.advance(260);
    inject(engine, 'lab0', rival(reg.fullName), from(PEER));
  }
  assert.equal(engine.stats().conflicts, 15);
  const mark = net.sent.length;
  await net.advance(4500);
  assert.ok(!net.packets({ from: mark, type: 'query' }).some((s) => s.p.questions.some((q) => q.name === reg.fullName)), 'held off');
  await net.advance(1000);
  assert.ok(net.packets({ from: mark, type: 'query' }).some((s) => s.p.questions.some((q) => q.name === reg.fullName)), 'probing again after 5 s');
});
