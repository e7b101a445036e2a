import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../base/clock.js';
import { RecordCache } from './cache.js';
import { ServiceBrowser, type ServiceInstance } from './browser.js';
import type { MdnsQuestion, MdnsRecord } from '../wire/records.js';

const flush = () => new Promise((r) => setImmediate(r));

function setup() {
  const clock = new FakeClock();
  const cache = new RecordCache(clock);
  const queries: Array<{ at: number; q: MdnsQuestion[] }> = [];
  const b = new ServiceBrowser('_redis._tcp.local', cache, clock, { query: (q) => queries.push({ at: clock.now(), q }) });
  const events: string[] = [];
  b.on('up', (i: ServiceInstance) => events.push(`up ${i.instance} ${i.addresses}:${i.port}`));
  b.on('update', (i: ServiceInstance) => events.push(`update ${i.instance} ${i.addresses}:${i.port}${i.leaving ? ' leaving' : ''}`));
  b.on('down', (i: ServiceInstance) => events.push(`down ${i.instance}`));
  b.start();
  return { clock, cache, b, queries, events };
}

const ptr = (ttl = 4500): MdnsRecord => ({ name: '_redis._tcp.local', type: 'PTR', ttl, data: 'one._redis._tcp.local' });
const srv = (port = 6379, ttl = 120, target = 'h.local'): MdnsRecord => ({ name: 'one._redis._tcp.local', type: 'SRV', ttl, flush: true, data: { priority: 0, weight: 0, port, target } });
const txt = (): MdnsRecord => ({ name: 'one._redis._tcp.local', type: 'TXT', ttl: 120, flush: true, data: [Buffer.from('env=prod')] });
const a = (ip = '198.18.0.1', ttl = 120): MdnsRecord => ({ name: 'h.local', type: 'A', ttl, flush: true, data: ip });

test('continuous querying backs off 1 s, 2 s, 4 s … after a first query within 120 ms', () => {
  const { clock, queries, b } = setup();
  clock.advance(120);
  assert.equal(queries.length, 1);
  clock.advance(1000 + 2000 + 4000 + 8000);
  const gaps = queries.slice(1).map((q, i) => q.at - queries[i]!.at);
  assert.deepEqual(gaps, [1000, 2000, 4000, 8000]);
  b.stop();
});

test('one announcement (PTR, SRV, TXT, A in one packet) gives one up event', async () => {
  const { cache, events, b } = setup();
  for (const r of [ptr(), srv(), txt(), a()]) cache.add(r);
  await flush();
  assert.deepEqual(events, ['up one 198.18.0.1:6379']);
  assert.deepEqual(b.instances()[0]!.txt, { env: 'prod' });
  b.stop();
});

test('missing SRV/A are asked for; the instance comes up when they arrive', async () => {
  const { clock, cache, queries, events, b } = setup();
  clock.advance(200);
  queries.length = 0;
  cache.add(ptr());
  await flush();
  clock.advance(60);
  assert.deepEqual(queries.flatMap((q) => q.q.map((x) => x.type)).sort(), ['SRV', 'TXT']);
  cache.add(srv());
  await flush();
  clock.advance(60);
  assert.ok(queries.some((q) => q.q.some((x) => x.type === 'A' && x.name === 'h.local')));
  cache.add(a());
  await flush();
  assert.deepEqual(events, ['up one 198.18.0.1:6379']);
  b.stop();
});

test('goodbye: leaving at once, down when the record expires a second later; a moved SRV (cache-flush) is an update', async () => {
  const { clock, cache, events, b } = setup();
  for (const r of [ptr(), srv(), a()]) cache.add(r);
  await flush();
  clock.advance(1500);
  cache.add(srv(7777));
  await flush();
  assert.equal(events.at(-1), 'update one 198.18.0.1:7777');
  cache.add({ ...ptr(), ttl: 0 });
  await flush();
  assert.equal(events.at(-1), 'update one 198.18.0.1:7777 leaving');
  clock.advance(1001);
  await flush();
  assert.equal(events.at(-1), 'down one');
  b.stop();
});

test('a goodbye answered by a re-announcement within the second keeps the instance', async () => {
  const { clock, cache, events, b } = setup();
  for (const r of [ptr(), srv(), a()]) cache.add(r);
  await flush();
  cache.add({ ...srv(), ttl: 0 });
  await flush();
  assert.equal(events.at(-1), 'update one 198.18.0.1:6379 leaving');
  clock.advance(300);
  cache.add(srv());
  await flush();
  assert.equal(events.at(-1), 'update one 198.18.0.1:6379');
  clock.advance(2000);
  await flush();
  assert.ok(!events.includes('down one'));
  b.stop();
});

test('an announcer that dies silently is dropped when its SRV TTL runs out, after refresh queries', async () => {
  const { clock, cache, queries, events, b } = setup();
  for (const r of [ptr(), srv(6379, 10), a('198.18.0.1', 10)]) cache.add(r);
  await flush();
  queries.length = 0;
  clock.advance(9_990);
  await flush();
  const srvRefreshes = queries.filter((q) => q.q.some((x) => x.type === 'SRV'));
  assert.equal(srvRefreshes.length, 4, 'refresh queries at 80/85/90/95 %');
  assert.deepEqual(events, ['up one 198.18.0.1:6379']);
  clock.advance(20);
  await flush();
  assert.equal(events.at(-1), 'down one');
  b.stop();
});

test('duplicate question suppression (RFC 6762 §7.3): another host asking our question for us postpones ours', () => {
  const { clock, cache, queries, b } = setup();
  clock.advance(120 + 1000 + 2000); // first query, then 1 s and 2 s later: next one due in 4 s
  const sent = queries.length;
  clock.advance(3500); // ours is due in 0.5 s
  // Their known answers list a record we do not have: our query still has work to do.
  const foreign = { name: '_redis._tcp.local', type: 'PTR', ttl: 4500, data: 'other._redis._tcp.local' };
  assert.equal(b.heardQuestion({ name: '_redis._tcp.local', type: 'PTR' }, [foreign]), false);
  // Same question, nothing we would not list ourselves: treat ours as sent.
  cache.add(ptr());
  assert.equal(b.heardQuestion({ name: '_redis._tcp.local', type: 'PTR' }, [ptr()]), true);
  clock.advance(600);
  assert.equal(queries.length, sent, 'our query was not sent');
  assert.equal(b.heardQuestion({ name: '_redis._tcp.local', type: 'PTR', qu: true }, []), false, 'QU questions do not count');
  b.stop();
});
