import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../base/clock.js';
import { DeadlineQueue, type Deadline } from './deadlines.js';

function item(name: string, expired: string[], clock: FakeClock): Deadline & { name: string } {
  return { name, due: 0, slot: -1, expire: () => expired.push(`${name}@${clock.now()}`) };
}

test('deadlines expire in order of due time, on one timer; cleared and moved ones as they are now', () => {
  const clock = new FakeClock(0);
  const q = new DeadlineQueue(clock);
  const expired: string[] = [];
  const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((n) => item(n, expired, clock)) as [ReturnType<typeof item>, ReturnType<typeof item>, ReturnType<typeof item>, ReturnType<typeof item>, ReturnType<typeof item>];
  q.set(a, 100);
  q.set(b, 30);
  q.set(c, 250);
  q.set(d, 60);
  q.set(e, 60);
  assert.equal(q.size, 5);
  assert.equal(clock.pending(), 1, 'one timer');
  q.clear(d);
  q.clear(d); // twice: nothing
  assert.equal(d.slot, -1);
  q.set(c, 10); // moved earlier
  q.set(b, 200); // moved later
  assert.deepEqual(q.items().map((x) => (x as typeof a).name).sort(), ['a', 'b', 'c', 'e']);
  clock.advance(60);
  assert.deepEqual(expired, ['c@10', 'e@60']);
  clock.advance(1000);
  assert.deepEqual(expired, ['c@10', 'e@60', 'a@100', 'b@200']);
  assert.equal(q.size, 0);
  assert.equal(clock.pending(), 0, 'nothing due: no timer left');
});

test('an expiry may set deadlines, its own included; the heap stays ordered under churn', () => {
  const clock = new FakeClock(0);
  const q = new DeadlineQueue(clock);
  const fired: number[] = [];
  let n = 0;
  const chained: Deadline = {
    due: 0,
    slot: -1,
    expire: () => {
      fired.push(clock.now());
      if (++n < 3) q.set(chained, clock.now() + 50);
    },
  };
  q.set(chained, 50);
  clock.advance(500);
  assert.deepEqual(fired, [50, 100, 150]);
  // Many items set, moved and cleared in a seeded order: each expires once, at its due time, in order.
  let seed = 7;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % 1000;
  const out: number[] = [];
  const items = Array.from({ length: 200 }, (_, i) => ({ due: 0, slot: -1, i, expire() { out.push(this.due); } }));
  const start = clock.now();
  for (const it of items) q.set(it, start + 1 + rnd());
  for (const it of items.slice(0, 50)) q.set(it, start + 1 + rnd());
  for (const it of items.slice(50, 80)) q.clear(it);
  clock.advance(2000);
  assert.equal(out.length, 170);
  assert.deepEqual(out, [...out].sort((x, y) => x - y));
  assert.equal(q.size, 0);
});
