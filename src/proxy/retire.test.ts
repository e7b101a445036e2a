// retireAtPause alone: a connection to an endpoint that left is closed at its first quiet pause,
// at the latest after the bound, once, and not at all when it closed by itself. Time is the test's
// (node:test mock timers for setTimeout and Date); the sockets are bare emitters, since only
// their 'data' events matter here (listener-retire.test.ts drives the same through real sockets).
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { mock, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ProxyConnection } from './connection.js';
import { retireAtPause } from './retire.js';

class OpenConnection extends ProxyConnection {
  readonly closedWith: string[] = [];
  constructor() {
    super(new EventEmitter() as unknown as net.Socket, 0);
    this.upstream = new EventEmitter() as unknown as net.Socket;
    this.state = 'open';
  }
  override close(code = 'ECANCELED'): void {
    if (this.state === 'closed') return;
    this.closedWith.push(code);
    this.markClosed();
  }
  protected abandon(): void {}
}

function clock(t: TestContext): (ms: number) => void {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  t.after(() => mock.timers.reset());
  return (ms) => mock.timers.tick(ms);
}

const listeners = (conn: OpenConnection) => (conn.client as unknown as EventEmitter).listenerCount('data') + (conn.upstream as unknown as EventEmitter).listenerCount('data');

test('a quiet connection is closed after quietMs, with the code given', (t) => {
  const tick = clock(t);
  const conn = new OpenConnection();
  retireAtPause(conn, 'EREMOVED', 250, 5000);
  tick(249);
  assert.deepEqual(conn.closedWith, []);
  tick(1);
  assert.deepEqual(conn.closedWith, ['EREMOVED']);
  assert.equal(listeners(conn), 0, 'its observers are gone');
});

test('bytes in either direction push the close back to the first pause', (t) => {
  const tick = clock(t);
  const conn = new OpenConnection();
  retireAtPause(conn, 'EMOVED', 250, 5000);
  for (let i = 0; i < 10; i++) {
    tick(200);
    (i % 2 ? conn.client : conn.upstream!).emit('data', Buffer.from('x'));
  }
  assert.deepEqual(conn.closedWith, [], 'still talking after 2 s');
  tick(249);
  assert.deepEqual(conn.closedWith, []);
  tick(1);
  assert.deepEqual(conn.closedWith, ['EMOVED'], 'closed 250 ms after the last byte');
});

test('a connection that never pauses is closed at maxMs', (t) => {
  const tick = clock(t);
  const conn = new OpenConnection();
  retireAtPause(conn, 'EREMOVED', 250, 1000);
  for (let elapsed = 0; elapsed < 999; elapsed += 100) {
    conn.client.emit('data', Buffer.from('x'));
    tick(100);
  }
  assert.deepEqual(conn.closedWith, ['EREMOVED']);
});

test('maxMs Infinity: only a real pause closes it', (t) => {
  const tick = clock(t);
  const conn = new OpenConnection();
  retireAtPause(conn, 'EWITHDRAWN', 250, Infinity);
  for (let i = 0; i < 100; i++) {
    conn.upstream!.emit('data', Buffer.from('x'));
    tick(200);
  }
  assert.deepEqual(conn.closedWith, []);
  tick(50);
  assert.deepEqual(conn.closedWith, ['EWITHDRAWN']);
});

test('retired once: a second call (a removal, then a move) neither closes twice nor changes the code', (t) => {
  const tick = clock(t);
  const conn = new OpenConnection();
  retireAtPause(conn, 'EREMOVED', 250, 5000);
  retireAtPause(conn, 'EMOVED', 10, 10);
  tick(100);
  assert.deepEqual(conn.closedWith, []);
  tick(150);
  assert.deepEqual(conn.closedWith, ['EREMOVED']);
});

test('a connection that closes by itself is left alone, its observers removed', async (t) => {
  const tick = clock(t);
  const conn = new OpenConnection();
  retireAtPause(conn, 'EREMOVED', 250, 5000);
  assert.equal(listeners(conn), 2);
  conn.markClosed();
  await conn.done;
  await Promise.resolve();
  assert.equal(listeners(conn), 0);
  tick(10_000);
  assert.deepEqual(conn.closedWith, []);
});

test('only open connections with an upstream are retired', (t) => {
  const tick = clock(t);
  const pending = new OpenConnection();
  pending.state = 'pending';
  const noUpstream = new OpenConnection();
  noUpstream.upstream = undefined;
  retireAtPause(pending, 'EREMOVED', 250, 5000);
  retireAtPause(noUpstream, 'EREMOVED', 250, 5000);
  tick(10_000);
  assert.deepEqual([...pending.closedWith, ...noUpstream.closedWith], []);
});
