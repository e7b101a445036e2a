import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../base/clock.js';
import { packProbe, packQuery, packResponse, TC_FLAG } from '../wire/packets.js';
import type { MdnsRecord } from '../wire/records.js';
import { OutgoingScheduler } from './scheduler.js';
import { encodePacket, type OutgoingPacket } from '../wire/codec.js';

function setup(mtu = 1500) {
  const clock = new FakeClock();
  const sent: Array<{ at: number; p: OutgoingPacket; bytes: number }> = [];
  const stats = { rateLimited: 0, duplicateAnswersSuppressed: 0 };
  const s = new OutgoingScheduler(clock, (p) => sent.push({ at: clock.now(), p, bytes: encodePacket(p).length }), () => mtu - 28, stats);
  return { clock, sent, s, stats };
}

const A: MdnsRecord = { name: 'db.local', type: 'A', ttl: 120, flush: true, data: '198.18.0.1' };
const svc = (i: number): MdnsRecord[] => {
  const type = `_s${String(i).padStart(2, '0')}._tcp.local`;
  const full = `s${i}@db.${type}`;
  return [
    { name: type, type: 'PTR', ttl: 4500, data: full },
    { name: '_services._dns-sd._udp.local', type: 'PTR', ttl: 4500, data: type },
    { name: full, type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 1000 + i, target: 'db.local' } },
    { name: full, type: 'TXT', ttl: 4500, flush: true, data: [Buffer.alloc(0)] },
  ];
};

test('announcements queued in the same moment leave together, packed up to the MTU', () => {
  const { clock, sent, s } = setup();
  s.multicast([A], { kind: 'announce' });
  for (let i = 1; i <= 30; i++) s.multicast(svc(i), { kind: 'announce' });
  clock.advance(0);
  const records = sent.flatMap((x) => x.p.answers ?? []);
  assert.equal(records.length, 121, 'every record once');
  assert.equal(records.filter((r) => r.type === 'A').length, 1, 'the host address once, not once per service');
  assert.ok(sent.length <= 4, `few packets (${sent.length})`);
  assert.ok(sent.every((x) => x.bytes <= 1472), `each fits a 1500-byte MTU (${sent.map((x) => x.bytes).join(', ')})`);
});

test('one-second rule: an answer for a record multicast less than a second ago is dropped; an announcement waits', () => {
  const { clock, sent, s, stats } = setup();
  s.multicast([A], { kind: 'announce' });
  clock.advance(0);
  assert.equal(sent.length, 1);
  clock.advance(400);
  assert.equal(s.multicast([A], { kind: 'answer' }), 0, 'answer dropped');
  assert.equal(stats.rateLimited, 1);
  s.multicast([A], { kind: 'announce' });
  clock.advance(0);
  assert.equal(sent.length, 1, 'announcement held');
  clock.advance(599);
  assert.equal(sent.length, 1);
  clock.advance(1);
  assert.equal(sent.length, 2, 'announcement sent when the second is over');
  assert.equal(sent[1]!.at - sent[0]!.at, 1000);
});

test('defence of a name (probe, spoofed goodbye) may repeat after 250 ms', () => {
  const { clock, sent, s } = setup();
  s.multicast([A], { kind: 'announce' });
  clock.advance(0);
  clock.advance(249);
  assert.equal(s.multicast([A], { kind: 'defend' }), 0);
  clock.advance(1);
  assert.equal(s.multicast([A], { kind: 'defend' }), 1);
  clock.advance(0);
  assert.equal(sent.length, 2);
});

test('shared answers wait 20–120 ms and answers to several queries share a packet', () => {
  const { clock, sent, s } = setup();
  const [ptr1] = svc(1);
  const [ptr2] = svc(2);
  s.multicast([ptr1!], { kind: 'answer', delayMs: 100 });
  clock.advance(30);
  s.multicast([ptr2!], { kind: 'answer', delayMs: 80 });
  clock.advance(69);
  assert.equal(sent.length, 0);
  clock.advance(1);
  assert.equal(sent.length, 1, 'the second rides with the first once its 20 ms have passed');
  assert.equal(sent[0]!.p.answers!.length, 2);
});

test('additionals travel where they fit, never repeat an answer, and respect the one-second rule', () => {
  const { clock, sent, s } = setup();
  const recs = svc(1);
  s.multicast([A], { kind: 'announce' });
  clock.advance(0);
  clock.advance(1500);
  s.multicast([recs[0]!], { kind: 'answer', additionals: [recs[2]!, recs[3]!, A] });
  clock.advance(120);
  assert.deepEqual(sent[1]!.p.additionals!.map((r) => r.type).sort(), ['A', 'SRV', 'TXT']);
  s.multicast([recs[2]!], { kind: 'answer', additionals: [A] });
  clock.advance(1);
  assert.equal(sent.length, 2, 'the SRV was multicast (as an additional) 1 ms ago: not again');
  clock.advance(1000);
  s.multicast([recs[2]!], { kind: 'answer', additionals: [A, recs[2]!] });
  clock.advance(1);
  assert.deepEqual(sent[2]!.p.additionals!.map((r) => r.type), ['A'], 'not the answer itself');
});

test('a goodbye voids a pending announcement of the same record, and its return is announced at once', () => {
  const { clock, sent, s } = setup();
  s.multicast([A], { kind: 'announce' });
  s.multicast([A], { kind: 'announce', at: clock.now() + 1000 });
  clock.advance(0);
  s.multicast([A], { kind: 'goodbye' });
  clock.advance(0);
  assert.deepEqual(sent.map((x) => x.p.answers![0]!.ttl), [120, 0]);
  clock.advance(2000);
  assert.equal(sent.length, 2, 'the second announcement was dropped by the goodbye');
  s.multicast([A], { kind: 'announce' });
  clock.advance(0);
  assert.equal(sent.length, 3, 'announced again at once after its goodbye');
});

test('duplicate answer suppression: another host multicast it first (§7.4)', () => {
  const { clock, sent, s, stats } = setup();
  const [ptr] = svc(1);
  s.multicast([ptr!], { kind: 'answer', delayMs: 80 });
  clock.advance(40);
  s.heardAnswer({ ...ptr!, ttl: 100 });
  clock.advance(100);
  assert.equal(sent.length, 1, 'their TTL is less than half ours: we still answer');
  s.multicast([ptr!], { kind: 'answer', delayMs: 80 });
  clock.advance(1100);
  s.multicast([ptr!], { kind: 'answer', delayMs: 80 });
  clock.advance(40);
  s.heardAnswer(ptr!);
  clock.advance(100);
  assert.equal(stats.duplicateAnswersSuppressed, 1);
  assert.equal(sent.length, 1);
});

test('packing: a response never exceeds the limit; probes keep each name with its records; known answers continue with TC', () => {
  const answers = Array.from({ length: 30 }, (_, i) => svc(i + 1)).flat();
  const packets = packResponse(answers, [A], 1000);
  assert.ok(packets.length >= 2);
  for (const p of packets) assert.ok(encodePacket(p).length <= 1000);
  assert.equal(packets.flatMap((p) => p.answers ?? []).length, answers.length);
  assert.ok(packets.some((p) => p.additionals?.length), 'the additional fits somewhere');

  const units = Array.from({ length: 30 }, (_, i) => {
    const [, , srv, txt] = svc(i + 1);
    return { question: { name: srv!.name, type: 'ANY', qu: true }, authorities: [srv!, txt!] };
  });
  const probes = packProbe(units, 600);
  for (const p of probes) {
    assert.ok(encodePacket(p).length <= 600);
    for (const q of p.questions ?? []) assert.equal(p.authorities!.filter((a) => a.name === q.name).length, 2);
  }

  const query = packQuery([{ name: '_x._tcp.local', type: 'PTR' }], answers, 700);
  assert.ok(query.length >= 2);
  assert.deepEqual(query.map((p) => (p.flags ?? 0) & TC_FLAG), [...Array(query.length - 1).fill(TC_FLAG), 0]);
  assert.equal(query.flatMap((p) => p.answers ?? []).length, answers.length);
});
