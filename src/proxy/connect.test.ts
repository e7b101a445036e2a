import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { Endpoint } from '../cluster/endpoint.js';
import { spec, startServer } from '../testing/tcp-kit.js';
import { ConnectAttempt, type AttemptOwner } from './connect.js';

type Outcome = { socket: net.Socket | undefined; code: string };

/** An owner whose reports the test awaits. */
function owner(): AttemptOwner & { outcomes: Outcome[]; next: () => Promise<Outcome> } {
  const outcomes: Outcome[] = [];
  let wake: (() => void) | undefined;
  return {
    outcomes,
    attemptDone(_a, socket, code) {
      outcomes.push({ socket, code });
      wake?.();
    },
    next() {
      return outcomes.length > 0 ? Promise.resolve(outcomes[0]!) : new Promise((resolve) => (wake = () => resolve(outcomes[0]!)));
    },
  };
}

function unusedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const ep = (port: number): Endpoint => new Endpoint(spec('t', port));

test('ConnectAttempt: reports the connected socket once, with its listeners gone', async (t) => {
  const up = await startServer();
  t.after(() => up.close());
  const o = owner();
  const a = new ConnectAttempt(o, ep(up.port), 0);
  a.open((e) => net.connect(e.port, e.host));
  assert.equal(a.pending, true);
  const { socket, code } = await o.next();
  assert.ok(socket && !socket.destroyed, 'connected');
  assert.equal(code, '');
  assert.equal(a.pending, false);
  assert.equal(socket.listenerCount('connect'), 0);
  assert.equal(socket.listenerCount('close'), 0);
  a.cancel('ETIMEDOUT'); // settled: nothing more
  assert.equal(o.outcomes.length, 1);
  socket.destroy();
});

test('ConnectAttempt: a refused connect reports its code; cancel() destroys the socket and reports the code given; drop() reports nothing', async () => {
  const port = await unusedPort();
  const refused = owner();
  new ConnectAttempt(refused, ep(port), 0).open((e) => net.connect(e.port, e.host));
  assert.deepEqual(await refused.next(), { socket: undefined, code: 'ECONNREFUSED' });

  const hung = new net.Socket(); // never connects
  const cancelled = owner();
  const a = new ConnectAttempt(cancelled, ep(1), 0);
  a.open(() => hung);
  a.cancel('EENDPOINTDOWN');
  assert.deepEqual(cancelled.outcomes, [{ socket: undefined, code: 'EENDPOINTDOWN' }]);
  assert.ok(hung.destroyed);
  a.cancel('ECANCELED');
  assert.equal(cancelled.outcomes.length, 1, 'settled: no second report');

  const other = new net.Socket();
  const dropped = owner();
  const b = new ConnectAttempt(dropped, ep(1), 0);
  b.open(() => other);
  b.drop();
  assert.ok(other.destroyed);
  assert.equal(b.pending, false);
  assert.deepEqual(dropped.outcomes, []);
});

test('ConnectAttempt: a socket that cannot be made reports at once, synchronously', () => {
  const o = owner();
  const a = new ConnectAttempt(o, ep(1), 0);
  a.open(() => {
    throw Object.assign(new Error('no'), { code: 'EMFILE' });
  });
  assert.deepEqual(o.outcomes, [{ socket: undefined, code: 'EMFILE' }]);
  assert.equal(a.pending, false);
});

test('ConnectAttempt: the endpoint\'s address and generation are those of the start', () => {
  const e = ep(1);
  const a = new ConnectAttempt(owner(), e, 42);
  e.generation = 3;
  e.host = 'elsewhere';
  assert.equal(a.generation, 0);
  assert.equal(a.dialled, '127.0.0.1');
  assert.equal(a.startedAt, 42);
});
