import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { startServer } from '../testing/tcp-kit.js';
import { awaitConnect, ConnectAttempt, ConnectError } from './connect.js';
import { DeadlineQueue } from './deadlines.js';

type Outcome = { socket: net.Socket | undefined; code: string };

/** A ConnectAttempt whose outcome is awaited (the test's promise, not the attempt's). */
function attempt(create: () => net.Socket, queue: DeadlineQueue<ConnectAttempt<string>>): { a: ConnectAttempt<string>; outcome: Promise<Outcome> } {
  let report!: (o: Outcome) => void;
  const outcome = new Promise<Outcome>((resolve) => (report = resolve));
  const a = new ConnectAttempt('target', create, queue, (socket, code) => report({ socket, code }));
  return { a, outcome };
}

function unusedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

test('ConnectAttempt: reports the connected socket, with its listeners and its deadline gone', async (t) => {
  const up = await startServer();
  t.after(() => up.close());
  const queue = new DeadlineQueue<ConnectAttempt<string>>(60_000, (x) => x.cancel('ETIMEDOUT'));
  const { a, outcome } = attempt(() => net.connect(up.port, '127.0.0.1'), queue);
  assert.equal(a.pending, true);
  assert.equal(queue.size, 1);
  const { socket, code } = await outcome;
  assert.ok(socket && !socket.destroyed, 'connected');
  assert.equal(code, '');
  assert.equal(a.pending, false);
  assert.equal(queue.size, 0, 'deadline cleared');
  assert.equal(socket.listenerCount('connect'), 0);
  assert.equal(socket.listenerCount('close'), 0);
  socket.destroy();
});

test('ConnectAttempt: a refused connect reports its code; cancel() destroys the socket and reports the code given', async () => {
  const queue = new DeadlineQueue<ConnectAttempt<string>>(60_000, (x) => x.cancel('ETIMEDOUT'));
  const port = await unusedPort();
  const refused = attempt(() => net.connect(port, '127.0.0.1'), queue);
  const r = await refused.outcome;
  assert.equal(r.socket, undefined);
  assert.equal(r.code, 'ECONNREFUSED');

  const hung = new net.Socket(); // never connects
  const cancelled = attempt(() => hung, queue);
  cancelled.a.cancel('EENDPOINTDOWN');
  const c = await cancelled.outcome;
  assert.equal(c.code, 'EENDPOINTDOWN');
  assert.ok(hung.destroyed);
  assert.equal(queue.size, 0);
  cancelled.a.cancel('ECANCELED'); // settled: no second report
});

test('ConnectAttempt: a socket that cannot be made reports at once, synchronously', () => {
  const queue = new DeadlineQueue<ConnectAttempt<string>>(60_000, (x) => x.cancel('ETIMEDOUT'));
  const seen: string[] = [];
  const a = new ConnectAttempt('t', () => {
    throw Object.assign(new Error('no'), { code: 'EMFILE' });
  }, queue, (_s, code) => seen.push(code));
  assert.deepEqual(seen, ['EMFILE']);
  assert.equal(a.pending, false);
  assert.equal(queue.size, 0);
});

test('ConnectAttempt: release() hands a connecting socket over untouched; awaitConnect carries it on', async (t) => {
  const up = await startServer({ greeting: 'hi' });
  t.after(() => up.close());
  const queue = new DeadlineQueue<ConnectAttempt<string>>(60_000, (x) => x.cancel('ETIMEDOUT'));
  let reported = false;
  const a = new ConnectAttempt('t', () => net.connect(up.port, '127.0.0.1'), queue, () => (reported = true));
  const socket = a.release()!;
  assert.ok(socket && !socket.destroyed);
  assert.equal(a.release(), undefined, 'released once');
  assert.equal(queue.size, 0);
  const connected = await awaitConnect(socket, 5000);
  assert.equal(connected, socket);
  assert.equal(reported, false, 'the attempt no longer reports');
  socket.destroy();
  // An aborted signal: the adopted socket is closed, the promise rejects.
  const hung = new net.Socket();
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(awaitConnect(hung, 5000, ac.signal), (e: unknown) => e instanceof ConnectError && e.code === 'ECANCELED');
  assert.ok(hung.destroyed);
});
