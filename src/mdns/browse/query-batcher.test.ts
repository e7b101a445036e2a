import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../base/clock.js';
import type { MdnsQuestion, MdnsRecord } from '../wire/records.js';
import type { ServiceBrowser, TypeBrowser } from './browser.js';
import { RecordCache } from './cache.js';
import { QueryBatcher } from './query-batcher.js';

function setup() {
  const clock = new FakeClock();
  const cache = new RecordCache(clock);
  const sent: Array<{ at: number; questions: string[]; known: string[] }> = [];
  let active = true;
  const batcher = new QueryBatcher({
    clock, cache, browsers: new Set<ServiceBrowser | TypeBrowser>(), active: () => active,
    send: (questions: MdnsQuestion[], known: MdnsRecord[]) => sent.push({
      at: clock.now(), questions: questions.map((q) => `${q.name} ${q.type}${q.qu ? ' QU' : ''}`), known: known.map((r) => `${r.name} ${r.data}`),
    }),
  });
  return { clock, cache, batcher, sent, stop: () => (active = false) };
}

test('queries due together share one packet; an urgent one takes the batch with it at once', () => {
  const { clock, batcher, sent } = setup();
  const t0 = clock.now();
  batcher.query([{ name: '_redis._tcp.local', type: 'PTR' }]);
  clock.advance(50);
  batcher.query([{ name: '_pg._tcp.local', type: 'PTR' }, { name: '_redis._tcp.local', type: 'PTR' }]);
  assert.equal(sent.length, 0);
  clock.advance(50);
  assert.deepEqual(sent, [{ at: t0 + 100, questions: ['_redis._tcp.local PTR', '_pg._tcp.local PTR'], known: [] }], 'one packet after 100 ms, no question twice');
  batcher.query([{ name: '_a._tcp.local', type: 'PTR' }]);
  batcher.query([{ name: 'x._a._tcp.local', type: 'SRV', qu: true }], [], true);
  clock.advance(0);
  assert.deepEqual(sent[1]!.questions, ['_a._tcp.local PTR', 'x._a._tcp.local SRV QU']);
  assert.equal(sent[1]!.at, t0 + 100, 'urgent: at once');
});

test('known answers come from the cache (RFC 6762 §7.1); a batch due after the engine stopped is dropped', () => {
  const { clock, cache, batcher, sent, stop } = setup();
  cache.add({ name: '_redis._tcp.local', type: 'PTR', ttl: 4500, data: 'a._redis._tcp.local' }, 'eth0');
  batcher.query([{ name: '_redis._tcp.local', type: 'PTR' }], [{ name: '_redis._tcp.local', type: 'PTR' }]);
  clock.advance(100);
  assert.deepEqual(sent[0]!.known, ['_redis._tcp.local a._redis._tcp.local']);
  batcher.query([{ name: '_pg._tcp.local', type: 'PTR' }]);
  stop();
  clock.advance(100);
  assert.equal(sent.length, 1);
  cache.clear();
  batcher.query([{ name: '_pg._tcp.local', type: 'PTR' }]);
  batcher.cancel();
  assert.equal(clock.pending(), 0, 'cancel() leaves no timer');
});
