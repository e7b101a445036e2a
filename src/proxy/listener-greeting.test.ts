// The listener's hooks for protocols whose client speaks first (PostgreSQL): a greeting before
// any endpoint is picked (session, route, refuse), a handshake that replaces its upstream (TLS
// started inside the protocol), and error replies that say why. A toy line protocol stands in.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../cluster/cluster.js';
import { closed, connectTo, readBytes, spec, startServer, waitFor } from '../testing/tcp-kit.js';
import { haveOpenssl, makeCa } from '../testing/test-ca.js';
import { type ClientHello, ConnectListener, type ConnectListenerOptions, type Greeting, HandshakeError } from './listener.js';

/** Reads one line from the client: "HELLO x" → session x, "ROUTE id" → that endpoint, else a refusal. */
function lineGreeting(cluster: Cluster): Greeting {
  return (client, signal) => new Promise<ClientHello>((resolve, reject) => {
    let buf = '';
    const done = (): void => {
      client.off('data', onData);
      client.off('end', onEnd);
      client.pause();
    };
    const onEnd = (): void => {
      done();
      reject(new Error('closed'));
    };
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      done();
      const [word, arg] = buf.slice(0, nl).split(' ');
      if (buf.length > nl + 1) client.unshift(Buffer.from(buf.slice(nl + 1), 'latin1'));
      if (word === 'HELLO') resolve({ kind: 'session', hello: arg });
      else if (word === 'ROUTE') resolve({ kind: 'route', endpoint: cluster.endpoints().find((e) => e.id === arg)! });
      else if (word === 'GARBAGE') reject(new Error('garbage'));
      else resolve({ kind: 'refuse', reply: Buffer.from('nope\n') });
    };
    signal.addEventListener('abort', onEnd, { once: true });
    client.on('data', onData);
    client.on('end', onEnd);
    client.resume();
  });
}

async function setup(t: TestContext, opts: Partial<ConnectListenerOptions> = {}) {
  const cluster = new Cluster('svc');
  const replies: string[] = [];
  const listener = new ConnectListener({
    cluster, port: 0, noEndpointWaitMs: 200, greet: lineGreeting(cluster),
    errorReply: (m, code) => {
      replies.push(`${code}: ${m}`);
      return `ERR ${code}\n`;
    },
    ...opts,
  });
  const events: string[] = [];
  listener.on('upstream-connected', (_c, ep) => events.push(`connected ${ep.id}`));
  listener.on('client-closed-no-endpoint', (_c, reason) => events.push(`no-endpoint ${reason}`));
  listener.on('connection-closed', () => events.push('closed'));
  const port = (await listener.listen()).port;
  t.after(async () => {
    await listener.close();
    cluster.close();
  });
  return { cluster, listener, port, events, replies };
}

test('greeting: a session\'s hello reaches the handshake; bytes after the greeting follow in order', async (t) => {
  const up = await startServer();
  t.after(() => up.close());
  const seen: unknown[] = [];
  const { cluster, port, events } = await setup(t, {
    handshake: async (upstream, _ep, _signal, hello) => {
      seen.push(hello);
      upstream.write(`hs:${String(hello)};`);
    },
  });
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const c = await connectTo(port);
  c.write('HELLO alice\nafter');
  assert.equal((await readBytes(c, 'hs:alice;after'.length)).toString(), 'hs:alice;after');
  assert.deepEqual(seen, ['alice']);
  assert.deepEqual(events, ['connected a']);
  c.destroy();
});

test('greeting: route connects to that endpoint only, even when it is down, with no handshake', async (t) => {
  const [a, b] = [await startServer({ greeting: 'A' }), await startServer({ greeting: 'B' })];
  t.after(() => Promise.all([a.close(), b.close()]));
  let handshakes = 0;
  const { cluster, port, events } = await setup(t, { handshake: async () => void handshakes++ });
  cluster.setEndpoints('static', [spec('a', a.port), spec('b', b.port)]);
  cluster.setHealth(cluster.endpoints().find((e) => e.id === 'b')!, false);
  assert.deepEqual(cluster.healthy().map((e) => e.id), ['a']);
  const c = await connectTo(port);
  c.write('ROUTE b\n');
  assert.equal((await readBytes(c, 1)).toString(), 'B');
  assert.equal(handshakes, 0);
  assert.deepEqual(events, ['connected b']);
  c.destroy();
});

test('greeting: a refusal sends its reply and closes; a failed greeting closes without a word', async (t) => {
  const up = await startServer();
  t.after(() => up.close());
  const { cluster, listener, port, events, replies } = await setup(t);
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const c = await connectTo(port);
  c.write('WHAT\n');
  assert.equal((await readBytes(c, 5)).toString(), 'nope\n');
  await closed(c);
  const g = await connectTo(port);
  const got: Buffer[] = [];
  g.on('data', (d) => got.push(d));
  g.write('GARBAGE\n');
  await closed(g);
  assert.equal(Buffer.concat(got).length, 0);
  await waitFor(() => listener.connections.size === 0);
  assert.deepEqual(events, ['closed', 'closed'], 'no client-closed-no-endpoint, no upstream');
  assert.deepEqual(replies, []);
  assert.equal(up.accepted, 0);
});

test('error replies say why: the handshake\'s code when it refused, the reason when no endpoint took the client', async (t) => {
  const up = await startServer();
  t.after(() => up.close());
  const { cluster, port, replies } = await setup(t, {
    handshake: async (_u, _ep, _s, hello) => {
      if (hello === 'mallory') throw new HandshakeError('not you', 'EBADUSER', { retry: false, blameEndpoint: false });
    },
  });
  const c = await connectTo(port);
  c.write('HELLO bob\n');
  assert.equal((await readBytes(c, 'ERR no-endpoint\n'.length)).toString(), 'ERR no-endpoint\n');
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const m = await connectTo(port);
  m.write('HELLO mallory\n');
  assert.equal((await readBytes(m, 'ERR EBADUSER\n'.length)).toString(), 'ERR EBADUSER\n');
  assert.deepEqual(replies, ["no-endpoint: ambassador: no endpoint for 'svc' (waited 200 ms)", 'EBADUSER: ambassador: not you']);
  c.destroy();
  m.destroy();
});

test('a handshake may replace its upstream: TLS started over it carries the client', { skip: haveOpenssl ? undefined : 'openssl not installed' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'amb-greet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = makeCa(dir);
  const leaf = ca.issue('srv.test');
  // A server that says "plain", then (like PostgreSQL after 'S') speaks TLS on the same connection.
  const up = await startServer({
    onSocket: (s) => {
      s.once('data', (d: Buffer) => {
        // 'S' may arrive with the start of the TLS handshake: that part goes back to the stream.
        s.pause();
        if (d.length > 1) s.unshift(d.subarray(1));
        const t2 = new tls.TLSSocket(s, { isServer: true, cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) });
        t2.on('error', () => {});
        t2.on('data', (d) => t2.write(`tls:${d.toString()}`));
      });
      s.write('plain;');
    },
  });
  t.after(() => up.close());
  const { cluster, port } = await setup(t, {
    handshake: async (upstream) => {
      await readBytes(upstream, 'plain;'.length);
      upstream.write('S');
      const secure = tls.connect({ socket: upstream, ca: readFileSync(ca.cert), servername: 'srv.test' });
      await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
      return secure;
    },
  });
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const c = await connectTo(port);
  c.write('HELLO x\nping');
  assert.equal((await readBytes(c, 'tls:ping'.length)).toString(), 'tls:ping');
  c.destroy();
});
