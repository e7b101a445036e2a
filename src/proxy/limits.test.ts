// Circuit breakers of the listeners (issue 20), with real sockets on 127.0.0.1: past a limit a
// client is refused at once (with the error reply when there is one), counted once per client,
// and the clients within the limit are served. A listener whose endpoint is itself (a loop) stays
// bounded by them.
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../cluster/cluster.js';
import { closed, connectTo, readBytes, spec, startServer, waitFor, type TestServer } from '../testing/tcp-kit.js';
import { FakeClock } from '../base/clock.js';
import { BurstLog, type BurstSummary } from '../logging/burst.js';
import { ConnectListener, type ConnectListenerOptions } from './listener.js';
import { defaultLimits, FD_RESERVE, type LimitName, MAX_LINGERING_REFUSALS } from './limits.js';
import { RelayListener } from './relay.js';

/** Error replies as a RESP error line, like the redis protocol's. */
const resp = (m: string): string => `-ERR ${m}\r\n`;

async function setup(t: TestContext, opts: Partial<ConnectListenerOptions> = {}) {
  const cluster = opts.cluster ?? new Cluster('svc');
  const listener = new ConnectListener({ port: 0, noEndpointWaitMs: 60_000, errorReply: resp, ...opts, cluster });
  const refused: LimitName[] = [];
  listener.on('client-refused', (limit) => refused.push(limit));
  const { port } = await listener.listen();
  t.after(async () => {
    await listener.close();
    cluster.close();
  });
  return { cluster, listener, port, refused };
}

async function server(t: TestContext, opts: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  const s = await startServer(opts);
  t.after(() => s.close());
  return s;
}

async function client(t: TestContext, port: number): Promise<net.Socket> {
  const s = await connectTo(port);
  s.on('error', () => {});
  t.after(() => void s.destroy());
  return s;
}

/** Everything the listener sends before it closes the connection. */
function replyAndClose(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`no close (got ${JSON.stringify(got)})`)), 5000);
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.once('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.once('end', () => s.end());
    s.resume();
  });
}

async function echoes(s: net.Socket, text: string): Promise<void> {
  s.write(text);
  assert.equal((await readBytes(s, text.length)).toString(), text);
}

test('max-connections: the clients past the limit are refused at once with the error reply; the others are served', async (t) => {
  const up = await server(t);
  const { cluster, listener, port, refused } = await setup(t, { limits: { maxConnections: 3 } });
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const served = [await client(t, port), await client(t, port), await client(t, port)];
  for (const [i, s] of served.entries()) await echoes(s, `hello ${i}`);
  const extra = await Promise.all(Array.from({ length: 7 }, () => client(t, port)));
  const replies = await Promise.all(extra.map(replyAndClose));
  for (const r of replies) assert.match(r, /^-ERR ambassador: too many clients for 'svc' \(max-connections=3\); try again later\r\n$/);
  assert.deepEqual(refused, Array(7).fill('max-connections'));
  assert.equal(up.accepted, 3, 'a refused client never reaches the endpoint');
  assert.equal(listener.connections.size, 3);
  for (const s of served) await echoes(s, 'still here');
  // Room again once a client leaves.
  served[0]!.destroy();
  await waitFor(() => listener.connections.size === 2, 3000, 'a connection closed');
  await echoes(await client(t, port), 'next');
  assert.equal(refused.length, 7);
});

test('max-pending: clients waiting for an endpoint are bounded; those waiting are served when one appears', async (t) => {
  const up = await server(t);
  const { cluster, listener, port, refused } = await setup(t, { limits: { maxPending: 2 } });
  const waiting = [await client(t, port), await client(t, port)];
  waiting.forEach((s, i) => s.write(`w${i}`));
  await waitFor(() => listener.connections.size === 2, 3000, 'two pending');
  const third = await client(t, port);
  assert.match(await replyAndClose(third), /too many clients for 'svc' \(max-pending=2\)/);
  assert.deepEqual(refused, ['max-pending']);
  cluster.setEndpoints('static', [spec('a', up.port)]);
  for (const [i, s] of waiting.entries()) assert.equal((await readBytes(s, 2)).toString(), `w${i}`);
  // Piped clients are not pending: new ones get in.
  await echoes(await client(t, port), 'more');
  await echoes(await client(t, port), 'and more');
  assert.equal(refused.length, 1);
});

test('max-per-endpoint: a full endpoint is skipped; with every endpoint full the client is refused at once', async (t) => {
  const a = await server(t);
  const b = await server(t);
  const { cluster, port, refused } = await setup(t, { limits: { maxPerEndpoint: 1 } });
  cluster.setEndpoints('static', [spec('a', a.port), spec('b', b.port)]);
  const one = await client(t, port);
  await echoes(one, '1');
  const two = await client(t, port);
  await echoes(two, '2');
  assert.deepEqual([a.accepted, b.accepted], [1, 1], 'the second client went to the endpoint with room');
  const three = await client(t, port);
  assert.match(await replyAndClose(three), /too many clients for 'svc' \(max-per-endpoint=1\)/);
  assert.deepEqual(refused, ['max-per-endpoint']);
  one.destroy();
  await waitFor(() => cluster.endpoints().find((ep) => ep.id === 'a')!.active === 0, 3000, 'endpoint a free');
  await echoes(await client(t, port), '4');
  assert.deepEqual([a.accepted, b.accepted], [2, 1]);
});

test('without an error reply a refused client is just closed; a flood holds no more sockets than the limits', async (t) => {
  const up = await server(t);
  const { cluster, listener, port, refused } = await setup(t, { errorReply: undefined, limits: { maxConnections: 5 } });
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const held = await Promise.all(Array.from({ length: 5 }, () => client(t, port)));
  for (const s of held) await echoes(s, 'x');
  // 300 clients at once, bounded in count; each is refused and closed, none reaches the endpoint.
  const flood = await Promise.all(Array.from({ length: 300 }, () => connectTo(port).then((s) => (s.on('error', () => {}), s), () => undefined)));
  await Promise.all(flood.map((s) => s && closed(s, 5000).catch(() => s.destroy())));
  assert.equal(up.accepted, 5);
  assert.equal(listener.connections.size, 5);
  assert.equal(refused.length, flood.filter(Boolean).length);
  assert.ok(listener.server.maxConnections <= 5 + MAX_LINGERING_REFUSALS + 16, 'Node closes sockets past the headroom itself');
});

test('a listener whose endpoint is itself (a loop) stays bounded by max-connections, and the client gets the error', async (t) => {
  const cluster = new Cluster('svc');
  const { listener, port, refused } = await setup(t, { cluster, limits: { maxConnections: 20 } });
  let accepted = 0;
  listener.on('connection', () => accepted++);
  cluster.setEndpoints('static', [spec('self', port)]);
  const c = await client(t, port);
  c.write('PING\r\n');
  // Each hop is one more connection of the listener to itself, until the limit; the refusal
  // travels back along the chain to the client.
  assert.match(await replyAndClose(c), /max-connections=20/);
  assert.equal(accepted, 20);
  assert.equal(refused.length, 1);
  await waitFor(() => listener.connections.size === 0, 5000, 'the chain collapsed');
});

test('relay: max-connections closes the clients past the limit, the others are relayed', async (t) => {
  const up = await server(t);
  const relay = new RelayListener({ target: { host: '127.0.0.1', port: up.port }, host: '127.0.0.1', maxConnections: 2 });
  const { port } = await relay.listen();
  t.after(() => relay.close());
  let refused = 0;
  relay.on('client-refused', () => refused++);
  const a = await client(t, port);
  const b = await client(t, port);
  await echoes(a, 'a');
  await echoes(b, 'b');
  const c = await client(t, port);
  assert.equal(await replyAndClose(c), '');
  assert.equal(refused, 1);
  assert.equal(up.accepted, 2);
  await echoes(a, 'still');
});

test('defaultLimits: 4096 per listener when the file descriptors allow it, else their share (two per connection)', () => {
  assert.deepEqual(defaultLimits(2, 1_048_576), { maxConnections: 4096, maxPending: 1024, maxPerEndpoint: 4096 });
  assert.deepEqual(defaultLimits(1, 1024), { maxConnections: (1024 - FD_RESERVE) / 2, maxPending: 384, maxPerEndpoint: 384 });
  const four = defaultLimits(4, 4096);
  assert.equal(four.maxConnections, Math.floor((4096 - FD_RESERVE) / 2 / 4));
  assert.ok(4 * four.maxConnections * 2 + FD_RESERVE <= 4096);
  assert.equal(defaultLimits(3, undefined).maxConnections, 4096);
  assert.equal(defaultLimits(100, 300).maxConnections, 16, 'never below a floor');
});

test('BurstLog: one line when a burst starts, one summary when it is quiet again, one per interval while it lasts', () => {
  const clock = new FakeClock();
  const lines: string[] = [];
  const summaries: Array<[BurstSummary, boolean]> = [];
  const b = new BurstLog({ clock, quietMs: 1000, reportEveryMs: 10_000, onStart: (k) => lines.push(`start ${k}`), onSummary: (s, e) => summaries.push([{ ...s, byKind: { ...s.byKind } }, e]) });
  for (let i = 0; i < 5000; i++) b.hit(i % 2 ? 'max-pending' : 'max-connections');
  assert.deepEqual(lines, ['start max-connections']);
  assert.ok(b.inBurst);
  clock.advance(999);
  b.hit('max-connections');
  clock.advance(999);
  assert.equal(summaries.length, 0, 'not quiet for a whole second yet');
  clock.advance(2);
  assert.deepEqual(summaries, [[{ total: 5001, byKind: { 'max-connections': 2501, 'max-pending': 2500 }, durationMs: 999 }, true]]);
  assert.ok(!b.inBurst);
  // A burst that goes on: a summary every reportEveryMs, then the end.
  for (let ms = 0; ms < 25_000; ms += 100) {
    b.hit('max-connections');
    clock.advance(100);
  }
  clock.advance(1000);
  assert.deepEqual(lines, ['start max-connections', 'start max-connections']);
  // Summed up about every 10 s (checked at the quiet-time ticks), then once at the end.
  assert.deepEqual(summaries.slice(1).map(([, e]) => e), [false, false, true]);
  assert.deepEqual(summaries.slice(1).map(([s]) => Math.floor(s.total / 100)), [1, 2, 2]);
  assert.equal(summaries.at(-1)![0].total, 250);
  b.hit('x');
  b.stop();
  assert.deepEqual(summaries.at(-1), [{ total: 1, byKind: { x: 1 }, durationMs: 0 }, true]);
});
