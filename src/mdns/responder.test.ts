import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RemoteInfo } from 'node:dgram';
import { FakeClock } from './clock.js';
import { Responder } from './responder.js';
import type { MdnsTransport } from './transport.js';
import type { NetInterface } from './interfaces.js';
import type { MdnsPacket, OutgoingPacket } from './wire.js';

const iface: NetInterface = { name: 'lab0', address: '198.18.0.1', netmask: '255.255.255.0' };

function setup() {
  const clock = new FakeClock();
  const sent: Array<{ at: number; p: OutgoingPacket; dest?: { address: string; port: number } }> = [];
  const transport = {
    interfaces: [iface],
    port: 5353,
    families: () => ['IPv4'],
    send: (p: OutgoingPacket, _i: NetInterface, dest?: { address: string; port: number }) => sent.push({ at: clock.now(), p, dest }),
  } as unknown as MdnsTransport;
  const r = new Responder(transport, clock, 'db');
  return { clock, sent, r };
}

const from = (port = 5353, address = '198.18.0.9'): RemoteInfo => ({ address, port, family: 'IPv4', size: 0 });
const query = (name: string, type: string, extra: Partial<MdnsPacket> = {}): MdnsPacket => ({
  id: 0, type: 'query', flags: 0, truncated: false, questions: [{ name, type }], answers: [], authorities: [], additionals: [], ...extra,
});

function announced() {
  const s = setup();
  s.r.startHost();
  const reg = s.r.register({ instance: 'redis@db', type: '_redis._tcp.local', port: 6379, txt: { env: 'prod' } });
  s.clock.advance(2000);
  return { ...s, reg };
}

test('probing: 3 probes 250 ms apart with the proposed records, then two announcements 1 s apart', () => {
  const { clock, sent, r } = setup();
  r.startHost();
  const reg = r.register({ instance: 'redis@db', type: '_redis._tcp.local', port: 6379 });
  clock.advance(5000);
  const probes = sent.filter((s) => s.p.type === 'query' && s.p.questions?.[0]?.name === 'redis@db._redis._tcp.local');
  assert.equal(probes.length, 3);
  assert.equal(probes[0]!.p.questions![0]!.qu, true, 'first probe asks for unicast replies');
  assert.equal(probes[1]!.at - probes[0]!.at, 250);
  assert.equal(probes[2]!.at - probes[1]!.at, 250);
  assert.deepEqual(probes[0]!.p.authorities!.map((a) => a.type).sort(), ['SRV', 'TXT']);
  const announcements = sent.filter((s) => s.p.type === 'response' && s.p.answers!.some((a) => a.type === 'SRV'));
  assert.equal(announcements.length, 2);
  assert.equal(announcements[1]!.at - announcements[0]!.at, 1000);
  assert.ok(announcements[0]!.at - probes[2]!.at >= 250);
  const srv = announcements[0]!.p.answers!.find((a) => a.type === 'SRV')!;
  assert.equal(srv.flush, true, 'unique records carry the cache-flush bit');
  const ptr = announcements[0]!.p.answers!.find((a) => a.type === 'PTR' && a.name === '_redis._tcp.local')!;
  assert.equal(!!ptr.flush, false, 'shared PTR has no cache-flush bit');
  assert.ok(announcements[0]!.p.answers!.some((a) => a.type === 'A' && a.data === iface.address), 'address rides along');
  assert.equal(reg.state, 'announced');
});

test('a conflicting response while probing renames the instance and probes again', () => {
  const { clock, r } = setup();
  r.startHost();
  const reg = r.register({ instance: 'redis@db', type: '_redis._tcp.local', port: 6379 });
  clock.advance(300);
  r.handleResponse({
    id: 0, type: 'response', flags: 0, truncated: false, questions: [], authorities: [], additionals: [],
    answers: [{ name: 'redis@db._redis._tcp.local', type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 1, target: 'other.local' } }],
  }, from(), iface);
  assert.equal(reg.instance, 'redis@db (2)');
  clock.advance(3000);
  assert.equal(reg.state, 'announced');
});

test('answers a PTR query after 20–120 ms with SRV, TXT and A as additionals', () => {
  const { clock, sent, r } = announced();
  sent.length = 0;
  clock.advance(1500); // outside the one-second rate limit of the announcements
  sent.length = 0;
  r.handleQuery(query('_redis._tcp.local', 'PTR'), from(), iface);
  assert.equal(sent.length, 0, 'shared answers are delayed');
  clock.advance(121);
  assert.equal(sent.length, 1);
  const p = sent[0]!.p;
  assert.deepEqual(p.answers!.map((a) => a.data), ['redis@db._redis._tcp.local']);
  assert.deepEqual(p.additionals!.map((a) => a.type).sort(), ['A', 'SRV', 'TXT']);
  assert.equal(sent[0]!.dest, undefined, 'multicast');
});

test('known-answer suppression: no reply when the querier holds the record at ≥ half TTL', () => {
  const { clock, sent, r } = announced();
  clock.advance(1500);
  sent.length = 0;
  const known = { name: '_redis._tcp.local', type: 'PTR', ttl: 4000, data: 'redis@db._redis._tcp.local' };
  r.handleQuery(query('_redis._tcp.local', 'PTR', { answers: [known] }), from(), iface);
  clock.advance(200);
  assert.equal(sent.length, 0);
  r.handleQuery(query('_redis._tcp.local', 'PTR', { answers: [{ ...known, ttl: 100 }] }), from(), iface);
  clock.advance(200);
  assert.equal(sent.length, 1, 'a known answer with less than half its TTL left does not suppress');
  assert.equal(r.stats.answersSuppressed, 1);
});

test('rate limit: a record is multicast at most once per second', () => {
  const { clock, sent, r } = announced();
  clock.advance(1500);
  sent.length = 0;
  r.handleQuery(query('redis@db._redis._tcp.local', 'SRV'), from(), iface);
  clock.advance(1);
  r.handleQuery(query('redis@db._redis._tcp.local', 'SRV'), from(), iface);
  clock.advance(1);
  assert.equal(sent.length, 1, 'unique answer goes out at once, the repeat is held back');
  assert.equal(r.stats.rateLimited, 1);
  clock.advance(1000);
  r.handleQuery(query('redis@db._redis._tcp.local', 'SRV'), from(), iface);
  clock.advance(1);
  assert.equal(sent.length, 2);
});

test('legacy unicast: reply to the source port with the ID echoed and TTL capped at 10 s', () => {
  const { clock, sent, r } = announced();
  clock.advance(1500);
  sent.length = 0;
  r.handleQuery({ ...query('redis@db._redis._tcp.local', 'SRV'), id: 777 }, from(40000), iface);
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]!.dest, { address: '198.18.0.9', port: 40000 });
  assert.equal(sent[0]!.p.id, 777);
  assert.ok(sent[0]!.p.answers!.every((a) => a.ttl <= 10 && !a.flush));
});

test('a goodbye for our live record from elsewhere is answered by re-announcing it (RFC 6762 §10.1)', () => {
  const { clock, sent, r } = announced();
  clock.advance(1500);
  sent.length = 0;
  r.handleResponse({
    id: 0, type: 'response', flags: 0, truncated: false, questions: [], authorities: [], additionals: [],
    answers: [{ name: 'redis@db._redis._tcp.local', type: 'SRV', ttl: 0, flush: true, data: { priority: 0, weight: 0, port: 6379, target: 'db.local' } }],
  }, from(), iface);
  assert.equal(sent.length, 1);
  assert.ok(sent[0]!.p.answers!.some((a) => a.type === 'SRV' && a.ttl > 0));
  assert.equal(r.stats.reannouncedAfterSpoofedGoodbye, 1);
});

test('withdrawal and stop send goodbyes (TTL 0) for everything that was announced', () => {
  const { sent, r, reg } = announced();
  sent.length = 0;
  r.unregister(reg);
  const byes = sent.flatMap((s) => s.p.answers ?? []);
  assert.ok(byes.length >= 4);
  assert.ok(byes.every((a) => a.ttl === 0));
  sent.length = 0;
  r.stop();
  assert.ok(sent.flatMap((s) => s.p.answers ?? []).some((a) => a.type === 'A' && a.ttl === 0));
});
