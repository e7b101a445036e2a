import net from 'node:net';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { closed, connectTo, readBytes, refusedPort, startServer, waitFor } from '../testing/tcp-kit.js';
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

test('relay: connections that close without a byte (TCP health checks) leave nothing behind, even if the target never reads', async (t) => {
  const target = await startServer({ onSocket: (s) => s.pause() }); // accepts, never reads, never answers
  t.after(() => target.close());
  const { relay: r, port } = await relay(t, { target: { host: '127.0.0.1', port: target.port } });
  for (let i = 0; i < 10; i++) {
    const c = await connectTo(port);
    // Close once the relay is through to the target (the race a remote check usually loses).
    await waitFor(() => target.accepted > i && [...r.connections].some((x) => x.state === 'open'), 3000, 'relay piping');
    c.end(); // what a TCP check does: connect, then close
    await closed(c);
  }
  await waitFor(() => r.connections.size === 0, 3000, 'no relay connection left');
  // A client that did send something still half-closes and waits for the answer (see the first test).
});

test('relay: a connect timeout closes the client (connect-failed ETIMEDOUT); a bug closes one client, reported once', async (t) => {
  const target = await startServer({ greeting: 'T' });
  t.after(() => target.close());
  let hang = true;
  const { relay: r, port } = await relay(t, {
    target: { host: '127.0.0.1', port: target.port },
    connectTimeoutMs: 50,
    createConnection: (to) => (hang ? new net.Socket() : net.connect(to.port, to.host)),
  });
  const failed: string[] = [];
  r.on('connect-failed', (_c, code) => failed.push(code));
  await closed(await connectTo(port));
  assert.deepEqual(failed, ['ETIMEDOUT']);
  hang = false;
  const errors: unknown[] = [];
  r.on('internal-error', (_c, err) => errors.push(err));
  r.once('upstream-connected', () => {
    throw new Error('bug in a listener');
  });
  await closed(await connectTo(port));
  assert.equal(errors.length, 1);
  const c = await connectTo(port);
  t.after(() => void c.destroy());
  assert.equal((await readBytes(c, 1)).toString(), 'T', 'the next client is relayed');
  await waitFor(() => r.connections.size === 1, 3000, 'the failed ones accounted for');
});
