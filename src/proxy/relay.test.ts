import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { closed, connectTo, readBytes, refusedPort, startServer, waitFor } from '../cluster/test-helpers.test.js';
import { RelayListener, type RelayListenerOptions } from './relay.js';

async function relay(t: TestContext, opts: RelayListenerOptions): Promise<{ relay: RelayListener; port: number }> {
  const r = new RelayListener({ host: '127.0.0.1', ...opts });
  const addr = await r.listen();
  t.after(() => r.close());
  return { relay: r, port: addr.port };
}

test('relay: ephemeral port, forwards both ways to the fixed target, half-close', async (t) => {
  const target = await startServer({
    onSocket: (s) => {
      s.write('hello:');
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end(':bye'));
    },
  });
  t.after(() => target.close());
  const { port, relay: r } = await relay(t, { target: { host: '127.0.0.1', port: target.port } });
  assert.notEqual(port, 0);
  assert.equal(r.address()?.port, port);
  const c = await connectTo(port);
  t.after(() => void c.destroy());
  c.write('abc');
  assert.equal((await readBytes(c, 9)).toString(), 'hello:abc');
  c.end();
  assert.equal((await readBytes(c, 4)).toString(), ':bye');
  await closed(c);
  await waitFor(() => r.connections.size === 0);
});

test('relay: target refusing closes the client and reports connect-failed', async (t) => {
  const dead = await refusedPort();
  const { relay: r, port } = await relay(t, { target: { host: '127.0.0.1', port: dead } });
  const codes: string[] = [];
  r.on('connect-failed', (_c, code) => codes.push(code));
  const c = await connectTo(port);
  t.after(() => void c.destroy());
  c.write('x');
  await closed(c);
  assert.deepEqual(codes, ['ECONNREFUSED']);
});

test('relay: close({drainMs}) lets an open connection finish', async (t) => {
  const target = await startServer();
  t.after(() => target.close());
  const r = new RelayListener({ host: '127.0.0.1', port: 0, target: { host: '127.0.0.1', port: target.port } });
  const { port } = await r.listen();
  const c = await connectTo(port);
  t.after(() => void c.destroy());
  c.write('1');
  await readBytes(c, 1);
  const closing = r.close({ drainMs: 5000 });
  c.write('2');
  assert.equal((await readBytes(c, 1)).toString(), '2');
  c.end();
  await closed(c);
  await closing;
  assert.equal(r.connections.size, 0);
});
