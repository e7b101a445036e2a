import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { DeadlineQueue } from './deadlines.js';

test('deadlines expire delayMs after they were set, in order, on one timer; deleted ones never', () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  try {
    const expired: string[] = [];
    const q = new DeadlineQueue<string>(100, (x) => expired.push(`${x}@${Date.now()}`));
    q.add('a'); // due at 100
    mock.timers.tick(30);
    q.add('b'); // due at 130
    q.add('c'); // due at 130
    mock.timers.tick(40);
    q.delete('c');
    q.add('d'); // due at 170
    assert.deepEqual([...q.items()], ['a', 'b', 'd']);
    mock.timers.tick(30); // t=100
    assert.deepEqual(expired, ['a@100']);
    mock.timers.tick(30); // t=130
    assert.deepEqual(expired, ['a@100', 'b@130']);
    q.delete('d');
    mock.timers.tick(100);
    assert.deepEqual(expired, ['a@100', 'b@130']);
    assert.equal(q.size, 0);
    // Adding during an expiry callback: the new item gets its own full delay.
    const chained = new DeadlineQueue<number>(50, (n) => {
      expired.push(`n${n}@${Date.now()}`);
      if (n < 2) chained.add(n + 1);
    });
    chained.add(0);
    for (let i = 0; i < 4; i++) mock.timers.tick(50);
    assert.deepEqual(expired.slice(2), ['n0@280', 'n1@330', 'n2@380']);
  } finally {
    mock.timers.reset();
  }
});
