// Connections to an endpoint that left discovery or moved: closed at their first pause, so a
// request in flight when the goodbye arrives still gets its reply.
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../cluster/cluster.js';
import { closed, connectTo, readBytes, sleep, spec, startServer, type TestServer } from '../testing/tcp-kit.js';
import { ConnectListener, type ConnectListenerOptions } from './listener.js';

async function setup(t: TestContext, opts: Partial<ConnectListenerOptions> = {}) {
  const cluster = new Cluster('svc');
  const listener = new ConnectListener({ port: 0, noEndpointWaitMs: 1000, ...opts, cluster });
  const { port } = await listener.listen();
  t.after(async () => {
    await listener.close();
    cluster.close();
  });
  return { cluster, listener, port };
}

async function server(t: TestContext, onSocket?: (s: net.Socket) => void): Promise<TestServer> {
  const s = await startServer(onSocket ? { onSocket } : {});
  t.after(() => s.close());
  return s;
}

async function client(t: TestContext, port: number): Promise<net.Socket> {
  const s = await connectTo(port);
  t.after(() => void s.destroy());
  return s;
}

test('removal: a request in flight gets its reply; the connection closes at its first pause', async (t) => {
  // answers each request after 100 ms (a request in flight while the goodbye arrives)
  const up = await server(t, (s) => s.on('data', (d) => setTimeout(() => s.write(d), 100)));
  const { cluster, port } = await setup(t, { retireQuietMs: 150 });
  cluster.setEndpoints('mdns', [spec('a', up.port, { source: 'mdns' })]);
  const c = await client(t, port);
  c.write('hello');
  await sleep(20); // piped, reply pending
  const t0 = Date.now();
  cluster.setEndpoints('mdns', []);
  assert.equal((await readBytes(c, 5)).toString(), 'hello');
  await closed(c);
  const ms = Date.now() - t0;
  assert.ok(ms >= 150 + 60, `closed only after the reply and a quiet pause (${ms} ms)`);
});

test('removal: a connection that never pauses is closed after retireMaxMs', async (t) => {
  const up = await server(t, (s) => {
    s.on('error', () => {});
    const iv = setInterval(() => s.write('x'), 20);
    s.on('close', () => clearInterval(iv));
  });
  const { cluster, port } = await setup(t, { retireQuietMs: 100, retireMaxMs: 400 });
  cluster.setEndpoints('mdns', [spec('a', up.port, { source: 'mdns' })]);
  const c = await client(t, port);
  await readBytes(c, 1);
  c.resume();
  const t0 = Date.now();
  cluster.setEndpoints('mdns', []);
  await closed(c);
  const ms = Date.now() - t0;
  assert.ok(ms >= 350 && ms < 2000, `closed by the bound (${ms} ms)`);
});

test('moved endpoint: connections to its old address close, those to the new one stay', async (t) => {
  const oldUp = await server(t);
  const newUp = await server(t);
  const { cluster, port } = await setup(t, { retireQuietMs: 50 });
  cluster.setEndpoints('mdns', [spec('main', oldUp.port, { source: 'mdns' })]);
  const before = await client(t, port);
  before.write('1');
  assert.equal((await readBytes(before, 1)).toString(), '1');
  // same instance, announced at another address (migration)
  cluster.setEndpoints('mdns', [spec('main', newUp.port, { source: 'mdns' })]);
  await closed(before);
  const after = await client(t, port);
  after.write('2');
  assert.equal((await readBytes(after, 1)).toString(), '2');
  assert.equal(newUp.accepted, 1);
  await sleep(150);
  after.write('3');
  assert.equal((await readBytes(after, 1)).toString(), '3', 'a connection to the new address is kept');
});

test('keepConnectionsOnRemoval: moved or removed, connections stay', async (t) => {
  const oldUp = await server(t);
  const newUp = await server(t);
  const { cluster, port } = await setup(t, { retireQuietMs: 20, keepConnectionsOnRemoval: true });
  cluster.setEndpoints('mdns', [spec('main', oldUp.port, { source: 'mdns' })]);
  const c = await client(t, port);
  c.write('1');
  await readBytes(c, 1);
  cluster.setEndpoints('mdns', [spec('main', newUp.port, { source: 'mdns' })]);
  cluster.setEndpoints('mdns', []);
  await sleep(100);
  c.write('2');
  assert.equal((await readBytes(c, 1)).toString(), '2');
});
