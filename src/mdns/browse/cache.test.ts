import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../base/clock.js';
import { RecordCache, type CacheEntry } from './cache.js';
import type { MdnsRecord } from '../wire/records.js';

const srv = (port: number, ttl = 120, flush = true): MdnsRecord => ({
  name: 'x._redis._tcp.local', type: 'SRV', ttl, flush, data: { priority: 0, weight: 0, port, target: 'h.local' },
});

function setup() {
  const clock = new FakeClock();
  const cache = new RecordCache(clock);
  const events: string[] = [];
  for (const ev of ['added', 'doomed', 'expired', 'refresh']) {
    cache.on(ev, (e: CacheEntry) => events.push(`${ev}:${(e.record.data as { port: number }).port}@${clock.now() - 1_000_000}`));
  }
  return { clock, cache, events };
}

test('a record expires at its TTL and is refreshed at 80/85/90/95 % (+0–2 %) before that', () => {
  const { clock, cache, events } = setup();
  cache.add(srv(1, 100));
  clock.advance(100_000);
  const refreshes = events.filter((e) => e.startsWith('refresh')).map((e) => Number(e.split('@')[1]));
  assert.equal(refreshes.length, 4);
  const points = [80_000, 85_000, 90_000, 95_000];
  refreshes.forEach((t, i) => assert.ok(t >= points[i]! && t <= points[i]! + 2_000, `refresh ${i} at ${t}`));
  assert.equal(events.at(-1), 'expired:1@100000');
  assert.equal(cache.size, 0);
});

test('receiving the record again restarts its life and refresh schedule', () => {
  const { clock, cache, events } = setup();
  cache.add(srv(1, 10));
  clock.advance(7_000);
  cache.add(srv(1, 10));
  clock.advance(7_000);
  assert.equal(cache.size, 1);
  assert.ok(!events.some((e) => e.startsWith('expired')));
  clock.advance(3_001);
  assert.equal(cache.size, 0);
});

test('a goodbye (TTL 0) dooms the record and removes it one second later (RFC 6762 §10.1)', () => {
  const { clock, cache, events } = setup();
  cache.add(srv(1));
  clock.advance(5_000);
  cache.add(srv(1, 0));
  assert.deepEqual(events.slice(-1), ['doomed:1@5000']);
  clock.advance(999);
  assert.equal(cache.size, 1);
  clock.advance(2);
  assert.equal(cache.size, 0);
  assert.equal(events.at(-1), 'expired:1@6000');
});

test('a goodbye for an unknown record is ignored', () => {
  const { cache } = setup();
  cache.add(srv(9, 0));
  assert.equal(cache.size, 0);
});

test('cache-flush marks older records of the rrset for deletion in one second, sparing fresh ones (§10.2)', () => {
  const { clock, cache } = setup();
  cache.add(srv(1, 120, false));
  clock.advance(2_000);
  cache.add(srv(2, 120, false)); // arrives within the same second as the flush below
  clock.advance(500);
  cache.add(srv(3, 120, true));
  clock.advance(1_001);
  const ports = cache.lookup('X._redis._tcp.local', 'SRV').map((e) => (e.record.data as { port: number }).port).sort();
  assert.deepEqual(ports, [2, 3]);
});

test('known answers carry only records with more than half their TTL left, with the remaining TTL', () => {
  const { clock, cache } = setup();
  cache.add({ name: '_redis._tcp.local', type: 'PTR', ttl: 100, data: 'a._redis._tcp.local' });
  clock.advance(30_000);
  cache.add({ name: '_redis._tcp.local', type: 'PTR', ttl: 100, data: 'b._redis._tcp.local' });
  clock.advance(25_000);
  const ka = cache.knownAnswers('_redis._tcp.local', 'PTR');
  assert.deepEqual(ka.map((r) => [r.data, r.ttl]), [['b._redis._tcp.local', 75]]);
});

test('the cache is bounded: the stalest entry is evicted and counted', () => {
  const clock = new FakeClock();
  const cache = new RecordCache(clock, { maxEntries: 100 });
  for (let i = 0; i < 250; i++) cache.add({ name: '_x._tcp.local', type: 'PTR', ttl: 120, data: `i${i}._x._tcp.local` });
  assert.equal(cache.size, 100);
  assert.equal(cache.evicted, 150);
  assert.equal(cache.lookup('_x._tcp.local', 'PTR').some((e) => e.record.data === 'i249._x._tcp.local'), true);
});

test('names compare case-insensitively', () => {
  const { cache } = setup();
  cache.add(srv(1));
  assert.equal(cache.lookup('X._REDIS._tcp.LOCAL', 'SRV').length, 1);
  assert.equal(cache.lookup('x._redis._tcp.local', 'ANY').length, 1);
});

test('refreshes ride along with another query only once past their refresh point (never before 80 %)', () => {
  const clock = new FakeClock();
  const cache = new RecordCache(clock);
  cache.add({ name: 'x.local', type: 'A', ttl: 20, data: '10.0.0.1' });
  clock.advance(14_000); // 70 %: within a 2.5 s horizon of the 80 % point, but before it
  assert.deepEqual(cache.takeDueRefreshes(2500, () => true), []);
  clock.advance(2_000); // 80 %
  assert.equal(cache.takeDueRefreshes(2500, () => true).length, 1);
});
