// Refusing clients alone, on real loopback sockets: the error reply arrives whole even when the
// client keeps sending, the close is graceful and bounded, and a flood of refusals cannot hold
// more than `maxLingering` descriptors in replies (the rest are closed at once, their reply not
// even made).
import net from 'node:net';
import { once } from 'node:events';
import { mock, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Refusals, sendAndClose } from './refusal.js';

/** A server that hands each accepted socket to `onSocket`; its port. */
async function server(t: TestContext, onSocket: (s: net.Socket) => void): Promise<number> {
  const srv = net.createServer(onSocket);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.after(() => srv.close());
  return (srv.address() as net.AddressInfo).port;
}

interface Client {
  socket: net.Socket;
  /** Everything received, once the server's side has ended (or the socket closed). */
  received: Promise<{ text: string; reset: boolean }>;
}

async function client(t: TestContext, port: number, { endOnEnd = true } = {}): Promise<Client> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: !endOnEnd });
  t.after(() => void socket.destroy());
  await once(socket, 'connect');
  let text = '';
  let reset = false;
  socket.setEncoding('utf8').on('data', (d: string) => (text += d));
  socket.on('error', () => (reset = true));
  const received = new Promise<{ text: string; reset: boolean }>((resolve) => {
    socket.once('end', () => resolve({ text, reset }));
    socket.once('close', () => resolve({ text, reset }));
  });
  return { socket, received };
}

test('the reply arrives whole, then a graceful close; the client may keep writing meanwhile', { timeout: 10_000 }, async (t) => {
  // The 2-s bound never fires here (the test's clock): the server's side must close because
  // the client closed its own, having read its input to the end.
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const serverSide = new Promise<net.Socket>((resolve) => void server(t, (s) => {
    new Refusals().close(s, () => '-ERR max connections\r\n');
    resolve(s);
  }).then(async (port) => {
    const c = await client(t, port);
    // unread input on the refused side: must not turn the close into a reset that eats the reply
    for (let i = 0; i < 64; i++) c.socket.write(Buffer.alloc(16 * 1024, 1));
    const got = await c.received;
    assert.equal(got.text, '-ERR max connections\r\n');
    assert.equal(got.reset, false, 'no reset');
  }));
  const s = await serverSide;
  if (!s.destroyed) await once(s, 'close');
});

test('no reply: closed at once', async (t) => {
  const port = await server(t, (s) => new Refusals().close(s, undefined));
  const c = await client(t, port);
  const got = await c.received;
  assert.equal(got.text, '');
});

test('at most maxLingering clients linger in replies; the rest are closed at once, their reply not made', async (t) => {
  const refusals = new Refusals(2);
  let made = 0;
  const accepted: net.Socket[] = [];
  const port = await server(t, (s) => {
    accepted.push(s);
    refusals.close(s, () => `-ERR refused ${++made}\r\n`);
  });
  // Clients that never close their side: the first two hold their lingering slot.
  const a = await client(t, port, { endOnEnd: false });
  const b = await client(t, port, { endOnEnd: false });
  assert.equal((await a.received).text, '-ERR refused 1\r\n');
  assert.equal((await b.received).text, '-ERR refused 2\r\n');
  const c = await client(t, port);
  assert.equal((await c.received).text, '', 'third: closed without a reply');
  assert.equal(made, 2, 'its reply was never made');
  // One lingering client closes: its slot is free again.
  const [firstServerSide] = accepted;
  a.socket.end();
  if (!firstServerSide!.destroyed) await once(firstServerSide!, 'close');
  const d = await client(t, port);
  assert.equal((await d.received).text, '-ERR refused 3\r\n');
});

test('sendAndClose: a client that never closes its side is dropped after the bound', async (t) => {
  let serverSide: net.Socket | undefined;
  const accepted = new Promise<void>((resolve) => void server(t, (s) => {
    serverSide = s;
    resolve();
  }).then(async (port) => {
    await client(t, port, { endOnEnd: false });
  }));
  await accepted;
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  sendAndClose(serverSide!, 'bye\r\n');
  const closed = once(serverSide!, 'close');
  mock.timers.tick(1999);
  assert.equal(serverSide!.destroyed, false, 'still waiting for the client to close');
  mock.timers.tick(1);
  await closed;
  assert.equal(serverSide!.destroyed, true);
});
