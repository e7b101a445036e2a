import net from 'node:net';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../base/clock.js';
import { Cluster } from '../cluster/cluster.js';
import type { Endpoint } from '../cluster/endpoint.js';
import {
  closed,
  connectTo,
  readBytes,
  refusedPort,
  sleep,
  spec,
  startServer,
  waitFor,
  type TestServer,
} from '../testing/tcp-kit.js';
import { ConnectListener, type ConnectListenerOptions } from './listener.js';

async function setup(
  t: TestContext,
  opts: Partial<ConnectListenerOptions> = {},
): Promise<{ cluster: Cluster; listener: ConnectListener; port: number; events: string[] }> {
  const cluster = opts.cluster ?? new Cluster('svc');
  const listener = new ConnectListener({ port: 0, noEndpointWaitMs: 2000, ...opts, cluster });
  const events: string[] = [];
  listener.on('connect-failed', (_c, ep, code) => events.push(`connect-failed ${ep.id} ${code}`));
  listener.on('failover', (_c, from, to) => events.push(`failover ${from.id}->${to.id}`));
  listener.on('upstream-connected', (_c, ep, n) => events.push(`connected ${ep.id} #${n}`));
  listener.on('client-closed-no-endpoint', (_c, reason, n) => events.push(`no-endpoint ${reason} ${n}`));
  const addr = await listener.listen();
  t.after(async () => {
    await listener.close();
    cluster.close();
  });
  return { cluster, listener, port: addr.port, events };
}

async function server(t: TestContext, opts: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  const s = await startServer(opts);
  t.after(() => s.close());
  return s;
}

async function client(t: TestContext, port: number): Promise<net.Socket> {
  const s = await connectTo(port);
  t.after(() => void s.destroy());
  return s;
}

/**
 * A client served by 'good' after its first attempt, to 'slow' (a connect that never completes,
 * never timed out here), lost the race; that attempt is still pending.
 */
async function raceLostAtSlow(t: TestContext) {
  const good = await server(t);
  const slow: net.Socket[] = [];
  const lab = await setup(t, {
    connectTimeoutMs: 60_000,
    raceDelayMs: 20,
    createConnection: (ep: Endpoint) => {
      if (ep.id === 'good') return net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true });
      const s = new net.Socket();
      slow.push(s);
      return s;
    },
  });
  lab.cluster.setEndpoints('static', [spec('slow', 1), spec('good', good.port)]);
  const c = await client(t, lab.port);
  c.write('x');
  assert.equal((await readBytes(c, 1)).toString(), 'x');
  return { ...lab, slow, c };
}

test('forwards bytes both ways and counts them per endpoint', async (t) => {
  const up = await server(t, { greeting: 'hi:' });
  const { cluster, listener, port, events } = await setup(t);
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const c = await client(t, port);
  assert.equal((await readBytes(c, 3)).toString(), 'hi:');
  c.write('ping');
  assert.equal((await readBytes(c, 4)).toString(), 'ping');
  const ep = cluster.endpoints()[0]!;
  assert.equal(ep.active, 1);
  assert.equal(ep.connections, 1);
  await waitFor(() => listener.bytesFor(ep).bytesIn === 7, 3000, 'live byte count');
  assert.deepEqual(listener.bytesFor(ep), { bytesIn: 7, bytesOut: 4 });
  assert.equal(ep.bytesIn, 0, 'closed-connection counter not yet updated');
  assert.deepEqual(events, ['connected a #1']);
  c.end();
  await closed(c);
  await waitFor(() => listener.connections.size === 0);
  assert.equal(ep.active, 0);
  assert.equal(ep.bytesIn, 7);
  assert.equal(ep.bytesOut, 4);
});

test('holds the first client bytes while waiting for an endpoint, then proceeds in order', async (t) => {
  const received: Buffer[] = [];
  const up = await server(t, {
    onSocket: (s) => {
      s.on('data', (d: Buffer) => received.push(d));
      s.pipe(s);
    },
  });
  const { cluster, port, events } = await setup(t, { noEndpointWaitMs: 3000 });
  const c = await client(t, port);
  c.write('first,');
  c.write('second,');
  await sleep(30);
  c.write('third');
  await sleep(30);
  cluster.setEndpoints('static', [spec('late', up.port)]);
  assert.equal((await readBytes(c, 18)).toString(), 'first,second,third');
  assert.equal(Buffer.concat(received).toString(), 'first,second,third');
  assert.deepEqual(events, ['connected late #1']);
});

test('a client that half-closed before an upstream exists still gets its request forwarded', async (t) => {
  const up = await server(t, {
    onSocket: (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => s.end(`got ${Buffer.concat(chunks).toString()}`));
    },
  });
  const { cluster, port } = await setup(t);
  const c = await client(t, port);
  c.end('request');
  await sleep(20);
  cluster.setEndpoints('static', [spec('a', up.port)]);
  assert.equal((await readBytes(c, 11)).toString(), 'got request');
  await closed(c);
});

test('retries on the next endpoint when one refuses: the client sees no error', async (t) => {
  const good = await server(t);
  const dead = await refusedPort();
  const { cluster, port, events } = await setup(t, { balancer: 'round-robin' });
  cluster.setEndpoints('static', [spec('dead', dead), spec('good', good.port)]);
  for (let i = 0; i < 3; i++) {
    const c = await client(t, port);
    c.write(`m${i}`);
    assert.equal((await readBytes(c, 2)).toString(), `m${i}`);
    c.destroy();
  }
  assert.deepEqual(events.slice(0, 3), ['connect-failed dead ECONNREFUSED', 'failover dead->good', 'connected good #2']);
  // A refused connect is a hard failure: the dead endpoint is ejected at once, later clients go straight to good.
  const deadEp = cluster.endpoints().find((e) => e.id === 'dead')!;
  assert.equal(deadEp.failures, 1);
  assert.equal(deadEp.downReason, 'outlier');
  assert.equal(events.at(-1), 'connected good #1');
});

test('a connect timeout fails over to the next endpoint', async (t) => {
  const good = await server(t);
  const { cluster, port, events } = await setup(t, {
    connectTimeoutMs: 50,
    createConnection: (ep: Endpoint) =>
      ep.id === 'slow' ? new net.Socket() /* never connects */ : net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true }),
  });
  cluster.setEndpoints('static', [spec('slow', 1), spec('good', good.port)]);
  const c = await client(t, port);
  c.write('x');
  assert.equal((await readBytes(c, 1)).toString(), 'x');
  assert.deepEqual(events, ['connect-failed slow ETIMEDOUT', 'failover slow->good', 'connected good #2']);
});

test('a pending connect gives up when its endpoint goes down, and the client moves on at once', async (t) => {
  const good = await server(t);
  let deadAttempts = 0;
  const { cluster, port, events } = await setup(t, {
    connectTimeoutMs: 60_000, // only the endpoint going down can end this attempt in time
    raceDelayMs: 60_000, // (and no race)
    createConnection: (ep: Endpoint) => {
      if (ep.id !== 'dead') return net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true });
      deadAttempts++;
      return new net.Socket(); // a cut cable: never connects
    },
  });
  cluster.setEndpoints('static', [spec('dead', 1), spec('good', good.port)]);
  const dead = cluster.endpoints().find((e) => e.id === 'dead')!;
  const c = await client(t, port);
  c.write('x');
  await waitFor(() => deadAttempts === 1, 2000, 'attempt on dead pending');
  await sleep(50);
  assert.deepEqual(events, [], 'still waiting for the dead endpoint');
  cluster.setHealth(dead, false); // e.g. its health checks timed out
  assert.equal((await readBytes(c, 1)).toString(), 'x');
  assert.deepEqual(events, ['connect-failed dead EENDPOINTDOWN', 'failover dead->good', 'connected good #2']);
  assert.equal(dead.consecutiveFailures, 0, 'the cancelled attempt is not counted against the endpoint');
});

test('a slow connect is raced, not abandoned: the next endpoint carries the client; the loser goes on, and its timeout counts', async (t) => {
  const good = await server(t);
  const slow: net.Socket[] = [];
  const { cluster, port, events, listener } = await setup(t, {
    connectTimeoutMs: 300,
    raceDelayMs: 20,
    createConnection: (ep: Endpoint) => {
      if (ep.id === 'good') return net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true });
      const s = new net.Socket(); // a lost SYN: still pending
      slow.push(s);
      return s;
    },
  });
  let raced = 0;
  listener.on('connect-raced', () => raced++);
  cluster.setEndpoints('static', [spec('slow', 1), spec('good', good.port)]);
  const c = await client(t, port);
  c.write('x');
  assert.equal((await readBytes(c, 1)).toString(), 'x');
  assert.deepEqual(events, ['connected good #2'], 'no failure yet: the slow attempt lost a race, it has not failed');
  assert.equal(raced, 1);
  const slowEp = cluster.endpoints().find((e) => e.id === 'slow')!;
  assert.equal(slow[0]!.destroyed, false, 'the losing attempt goes on after its client was served');
  c.destroy(); // nor does it hang on its client
  await waitFor(() => slowEp.failures === 1, 5000, 'the losing attempt timed out');
  assert.equal(slow[0]!.destroyed, true);
  assert.deepEqual(events, ['connected good #2', 'connect-failed slow ETIMEDOUT']);
  assert.equal(slowEp.consecutiveFailures, 1);
});

test('an endpoint whose SYNs are dropped loses every race, and is ejected once two lost attempts timed out', async (t) => {
  const good = await server(t);
  // The race point and the timeouts are clock steps: on a loaded machine a real 20 ms race
  // delay could pass before a connect to good completes and race it to the firewalled one.
  const clock = new FakeClock(Date.now());
  const tried: string[] = [];
  const { cluster, port, events } = await setup(t, {
    clock,
    connectTimeoutMs: 300,
    raceDelayMs: 20,
    balancer: 'round-robin',
    createConnection: (ep: Endpoint) => {
      tried.push(ep.id);
      return ep.id === 'good' ? net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true }) : new net.Socket();
    },
  });
  cluster.setEndpoints('static', [spec('firewalled', 1), spec('good', good.port)]);
  const firewalled = cluster.endpoints().find((e) => e.id === 'firewalled')!;
  let downs = 0;
  cluster.on('endpoint-down', (ep, reason) => {
    if (ep === firewalled && reason === 'outlier') downs++;
  });
  // Every second client starts at the firewalled endpoint, loses the race there, and is served by good.
  for (let i = 0; i < 4; i++) {
    const before = tried.length;
    const c = await client(t, port);
    c.write('p');
    await waitFor(() => tried.length > before, 5000, 'a first attempt');
    if (tried.at(-1) === 'firewalled') clock.advance(20);
    assert.equal((await readBytes(c, 1)).toString(), 'p');
    c.destroy();
  }
  assert.equal(tried.filter((id) => id === 'firewalled').length, 2);
  assert.equal(downs, 0, 'no verdict before the timeout');
  clock.advance(300);
  await waitFor(() => downs === 1, 5000, 'the firewalled endpoint ejected');
  assert.equal(firewalled.stateAt(Date.now()), 'down');
  assert.equal(events.filter((e) => e === 'connect-failed firewalled ETIMEDOUT').length, 2);
  // Ejected: the next client goes straight to good, without a race.
  const before = events.length;
  const c = await client(t, port);
  c.write('q');
  assert.equal((await readBytes(c, 1)).toString(), 'q');
  assert.deepEqual(events.slice(before), ['connected good #1']);
});

test('the listener closing ends the attempts that lost a race', async (t) => {
  const { cluster, listener, slow, c } = await raceLostAtSlow(t);
  c.destroy();
  await listener.close();
  await waitFor(() => slow[0]!.destroyed, 2000, 'the losing attempt closed');
  assert.equal(cluster.endpoints().find((e) => e.id === 'slow')!.consecutiveFailures, 0, 'a cancelled attempt is no evidence');
});

test('with one endpoint, a slow connect is raced by another to the same endpoint; the loser timing out later is no evidence', async (t) => {
  const good = await server(t);
  const made: net.Socket[] = [];
  const { cluster, port, events } = await setup(t, {
    connectTimeoutMs: 300,
    raceDelayMs: 20,
    createConnection: (ep: Endpoint) => {
      // The first SYN is lost; the second goes through.
      const s = made.length === 0 ? new net.Socket() : net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true });
      made.push(s);
      return s;
    },
  });
  cluster.setEndpoints('static', [spec('only', good.port)]);
  const c = await client(t, port);
  c.write('y');
  assert.equal((await readBytes(c, 1)).toString(), 'y');
  assert.deepEqual(events, ['connected only #2']);
  const only = cluster.endpoints()[0]!;
  await waitFor(() => only.failures === 1, 5000, 'the first attempt timed out');
  assert.equal(made[0]!.destroyed, true);
  // It started before the second connected: only that SYN was lost, the endpoint answered.
  assert.equal(only.consecutiveFailures, 0);
  assert.equal(good.accepted, 1);
});

test('when the first attempt completes first after all, the raced one goes on until its timeout', async (t) => {
  const good = await server(t);
  // Clock steps, not waits: a loaded machine cannot time the first attempt out before it connects.
  const clock = new FakeClock(Date.now());
  const made: net.Socket[] = [];
  const { cluster, port, events } = await setup(t, {
    clock,
    connectTimeoutMs: 400,
    raceDelayMs: 20,
    createConnection: () => {
      const s = new net.Socket();
      // The first connects once the second has started (its SYN was retransmitted); the second never.
      if (made.length === 1) made[0]!.connect({ host: '127.0.0.1', port: good.port });
      made.push(s);
      return s;
    },
  });
  cluster.setEndpoints('static', [spec('a', good.port), spec('b', good.port, { host: '127.0.0.2' })]);
  const c = await client(t, port);
  c.write('z');
  await waitFor(() => made.length === 1, 5000, 'the first attempt');
  clock.advance(20);
  assert.equal(made.length, 2, 'the race point started a second attempt');
  assert.equal((await readBytes(c, 1)).toString(), 'z');
  assert.match(events.at(-1)!, /^connected a #\d$/);
  const failures = () => cluster.endpoints().reduce((n, e) => n + e.failures, 0);
  clock.advance(399);
  assert.equal(made[1]!.destroyed, false, 'the raced attempt goes on');
  assert.equal(failures(), 0);
  clock.advance(1);
  await waitFor(() => made[1]!.destroyed, 5000, 'the raced attempt timed out');
  assert.equal(failures(), 1, 'the raced attempt timed out, and counted');
  assert.equal(cluster.endpoints().find((e) => e.id === 'b')!.failures, 1);
});

test('raced attempts are bounded: every one times out, the client is closed after maxConnectAttempts', async (t) => {
  const { cluster, port, events } = await setup(t, {
    connectTimeoutMs: 150,
    raceDelayMs: 10,
    maxConnectAttempts: 3,
    createConnection: () => new net.Socket(),
  });
  cluster.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  const c = await client(t, port);
  c.write('hello');
  await closed(c);
  assert.equal(events.filter((e) => e.endsWith('ETIMEDOUT')).length, 3);
  assert.equal(events.at(-1), 'no-endpoint all-failed 3');
});

test('closes the client when every attempt fails, bounded by maxConnectAttempts', async (t) => {
  const ports = await Promise.all(Array.from({ length: 7 }, () => refusedPort()));
  const { cluster, port, events } = await setup(t, { maxConnectAttempts: 5 });
  cluster.setEndpoints('static', ports.map((p, i) => spec(`d${i}`, p)));
  const c = await client(t, port);
  c.write('hello');
  await closed(c);
  assert.equal(events.filter((e) => e.startsWith('connect-failed')).length, 5);
  assert.equal(events.at(-1), 'no-endpoint all-failed 5');
});

test('empty cluster: closes the client after noEndpointWaitMs', async (t) => {
  const { port, events, listener } = await setup(t, { noEndpointWaitMs: 60 });
  const c = await client(t, port);
  c.write('anyone?');
  await closed(c);
  assert.deepEqual(events, ['no-endpoint no-endpoint 0']);
  await waitFor(() => listener.connections.size === 0);
});

test('a client that resets while waiting is dropped quietly', async (t) => {
  const { listener, port, events } = await setup(t, { noEndpointWaitMs: 60_000 });
  const c = await client(t, port);
  await waitFor(() => listener.connections.size === 1);
  c.resetAndDestroy();
  await waitFor(() => listener.connections.size === 0, 3000, 'pending connection dropped');
  assert.deepEqual(events, []);
});

test('a client that resets while its connect is pending cancels the connect, quietly', async (t) => {
  const pending: net.Socket[] = [];
  const { cluster, listener, port, events } = await setup(t, {
    connectTimeoutMs: 60_000,
    raceDelayMs: 60_000, // the fast path's own attempt, never handed to the race
    createConnection: () => {
      const s = new net.Socket(); // a cut cable: never connects
      pending.push(s);
      return s;
    },
  });
  cluster.setEndpoints('static', [spec('slow', 1)]);
  const c = await client(t, port);
  await waitFor(() => pending.length === 1, 2000, 'connect pending');
  c.resetAndDestroy();
  await waitFor(() => listener.connections.size === 0, 3000, 'pending connection dropped');
  assert.ok(pending[0]!.destroyed, 'the pending connect was given up');
  assert.deepEqual(events, [], 'no connect failure reported against the endpoint');
  assert.equal(cluster.endpoints()[0]!.consecutiveFailures, 0);
});

test('waits while the only endpoint is withdrawn by its own ambassador, proceeds when it is back', async (t) => {
  const up = await server(t);
  const { cluster, port } = await setup(t);
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const ep = cluster.endpoints()[0]!;
  cluster.setHealth(ep, false, 'source-check');
  const c = await client(t, port);
  c.write('q');
  await sleep(30);
  assert.equal(up.accepted, 0, 'a known answer (the source says it does not serve) is respected');
  cluster.setHealth(ep, true, 'source-check');
  assert.equal((await readBytes(c, 1)).toString(), 'q');
});

test('panic mode: every endpoint down on health evidence alone is still tried', async (t) => {
  const [up, up2] = [await server(t), await server(t)];
  const { cluster, port, listener } = await setup(t);
  cluster.setEndpoints('static', [spec('a', up.port), spec('b', up2.port)]);
  let panics = 0;
  listener.on('panic-attempt', () => panics++);
  const [a, b] = cluster.endpoints() as [Endpoint, Endpoint];
  cluster.setHealth(a, false, 'host-probe');
  cluster.setHealth(b, false);
  assert.equal(cluster.inPanic, true);
  const c = await client(t, port);
  c.write('q');
  assert.equal((await readBytes(c, 1)).toString(), 'q', 'served at once, not after noEndpointWaitMs');
  assert.equal(panics, 1);
  assert.equal(up.accepted + up2.accepted, 1);
});

test('half-close: client end reaches the server, which can still reply', async (t) => {
  let serverSawEnd = false;
  const up = await server(t, {
    onSocket: (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => {
        serverSawEnd = true;
        s.write('reply-after-end:');
        setTimeout(() => s.end(Buffer.concat(chunks)), 20);
      });
    },
  });
  const { cluster, port, listener } = await setup(t);
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const c = await client(t, port);
  c.write('abc');
  await waitFor(() => [...listener.connections].some((x) => x.state === 'open'));
  c.end();
  assert.equal((await readBytes(c, 19)).toString(), 'reply-after-end:abc');
  await closed(c);
  assert.ok(serverSawEnd);
  await waitFor(() => listener.connections.size === 0);
  const r = cluster.endpoints()[0]!;
  assert.equal(r.active, 0);
});

test('half-close the other way: server end reaches the client, which can still send', async (t) => {
  const got: Buffer[] = [];
  const up = await server(t, {
    onSocket: (s) => {
      s.end('bye');
      s.on('data', (d: Buffer) => got.push(d));
    },
  });
  const { cluster, port } = await setup(t);
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const c = await client(t, port);
  assert.equal((await readBytes(c, 3)).toString(), 'bye');
  await new Promise<void>((r) => {
    c.once('end', () => r());
    c.resume();
  });
  c.end('still-here');
  await waitFor(() => Buffer.concat(got).toString() === 'still-here');
  await closed(c);
});

test('closes connections when their endpoint is removed or fails health checks; not on outlier ejection', async (t) => {
  const [up, up2] = [await server(t), await server(t)];
  const { cluster, port } = await setup(t, { cluster: new Cluster('svc', { outlier: { consecutiveFailures: 1 } }) });
  cluster.setEndpoints('static', [spec('a', up.port), spec('b', up2.port)]);
  const [a, b] = cluster.endpoints() as [Endpoint, Endpoint];
  const c1 = await client(t, port); // -> a
  c1.write('1');
  await readBytes(c1, 1);
  const c2 = await client(t, port); // -> b
  c2.write('2');
  await readBytes(c2, 1);
  assert.equal(a.active, 1);
  assert.equal(b.active, 1);

  cluster.reportConnectFailure(a); // ejected as outlier: connection stays
  assert.equal(a.downReason, 'outlier');
  c1.write('3');
  assert.equal((await readBytes(c1, 1)).toString(), '3');

  cluster.setHealth(b, false);
  await closed(c2);
  cluster.setEndpoints('static', []);
  await closed(c1);
});

test('keepConnectionsOnRemoval keeps proxied connections open', async (t) => {
  const up = await server(t);
  const { cluster, port } = await setup(t, { keepConnectionsOnRemoval: true });
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const c = await client(t, port);
  c.write('1');
  await readBytes(c, 1);
  cluster.setEndpoints('static', []);
  c.write('2');
  assert.equal((await readBytes(c, 1)).toString(), '2');
});

test('close({drainMs}): stops accepting, lets open connections finish, then destroys the rest', async (t) => {
  const up = await server(t);
  const { cluster, port, listener } = await setup(t);
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const finishing = await client(t, port);
  const lingering = await client(t, port);
  for (const c of [finishing, lingering]) {
    c.write('x');
    await readBytes(c, 1);
  }
  let done = false;
  const closing = listener.close({ drainMs: 300 }).then(() => (done = true));
  await sleep(20);
  await assert.rejects(connectTo(port), /ECONNREFUSED/);
  // Still working while draining.
  finishing.write('y');
  assert.equal((await readBytes(finishing, 1)).toString(), 'y');
  finishing.end();
  await closed(finishing);
  assert.equal(done, false, 'the lingering connection holds the drain');
  await closing;
  await closed(lingering);
  assert.equal(listener.connections.size, 0);
});

test('close() drops clients still waiting for an endpoint', async (t) => {
  const { listener, port } = await setup(t, { noEndpointWaitMs: 60_000 });
  const c = await client(t, port);
  await waitFor(() => listener.connections.size === 1);
  await listener.close({ drainMs: 10_000 });
  await closed(c);
});

test('idle timeout closes a quiet connection', async (t) => {
  const up = await server(t);
  const { cluster, port, listener } = await setup(t, { idleTimeoutMs: 50 });
  cluster.setEndpoints('static', [spec('a', up.port)]);
  let code: string | undefined;
  listener.on('connection-closed', (_c, r) => (code = r?.error));
  const c = await client(t, port);
  c.write('x');
  await readBytes(c, 1);
  await closed(c);
  await waitFor(() => code !== undefined);
  assert.equal(code, 'EIDLE');
});

test('handshake runs before piping; client bytes sent meanwhile arrive after it, in order', async (t) => {
  const seen: Buffer[] = [];
  const up = await server(t, {
    onSocket: (s) => {
      let authed = false;
      s.on('data', (d: Buffer) => {
        seen.push(d);
        if (!authed && Buffer.concat(seen).toString().startsWith('AUTH pw\r\n')) {
          authed = true;
          s.write('+OK\r\nEXTRA');
        } else if (authed) s.write(d);
      });
    },
  });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const { cluster, port, events } = await setup(t, {
    handshake: async (upstream) => {
      upstream.write('AUTH pw\r\n');
      const reply = await new Promise<Buffer>((resolve) => upstream.once('data', resolve));
      upstream.pause();
      assert.ok(reply.toString().startsWith('+OK\r\n'));
      const rest = reply.subarray(5);
      if (rest.length > 0) upstream.unshift(rest); // bytes not ours go to the client
      await gate;
    },
  });
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const c = await client(t, port);
  c.write('GET k\r\n');
  await sleep(30);
  c.write('GET j\r\n');
  await sleep(10);
  release();
  assert.equal((await readBytes(c, 5 + 14)).toString(), 'EXTRAGET k\r\nGET j\r\n');
  assert.equal(Buffer.concat(seen).toString(), 'AUTH pw\r\nGET k\r\nGET j\r\n');
  assert.deepEqual(events, ['connected a #1']);
});

test('a failing handshake fails over to the next endpoint', async (t) => {
  const bad = await server(t);
  const good = await server(t);
  const { cluster, port, events } = await setup(t, {
    handshakeTimeoutMs: 1000,
    handshake: async (_u, ep) => {
      if (ep.id === 'bad') throw Object.assign(new Error('WRONGPASS'), { code: 'EAUTH' });
    },
  });
  cluster.setEndpoints('static', [spec('bad', bad.port), spec('good', good.port)]);
  const c = await client(t, port);
  c.write('z');
  assert.equal((await readBytes(c, 1)).toString(), 'z');
  assert.deepEqual(events, ['connect-failed bad EAUTH', 'failover bad->good', 'connected good #2']);
});

test('listen() on a port in use fails with a one-line error', async (t) => {
  const { port } = await setup(t);
  const other = new ConnectListener({ cluster: new Cluster('x'), port });
  await assert.rejects(other.listen(), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'EADDRINUSE');
    assert.match(err.message, new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port}: address already in use$`));
    return true;
  });
  await other.close();
});

test('back-pressure: a client that does not read keeps the proxy buffer bounded', async (t) => {
  const TOTAL = 50 * 1024 * 1024;
  const CHUNK = Buffer.alloc(64 * 1024, 0x61);
  let sent = 0;
  const up = await server(t, {
    onSocket: (s) => {
      const pump = (): void => {
        while (sent < TOTAL) {
          sent += CHUNK.length;
          if (!s.write(CHUNK)) {
            s.once('drain', pump);
            return;
          }
        }
        s.end();
      };
      pump();
    },
  });
  const { cluster, port, listener } = await setup(t);
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const c = await client(t, port);
  c.pause();
  await waitFor(() => [...listener.connections].some((x) => x.state === 'open'));
  const conn = [...listener.connections][0]!;

  // Wait until the upstream stalls (no progress for 200 ms), bounded by 10 s.
  let last = -1;
  let stableSince = Date.now();
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    await sleep(20);
    if (sent !== last) {
      last = sent;
      stableSince = Date.now();
    } else if (Date.now() - stableSince > 200) break;
  }
  assert.ok(sent < TOTAL, `upstream was never pushed back (sent ${sent})`);
  const buffered = conn.client.writableLength + conn.upstream!.readableLength;
  assert.ok(buffered <= 256 * 1024, `proxy buffers ${buffered} bytes`);
  // What the proxy read but has not handed to the kernel is exactly that small buffer.
  const inProxy = conn.upstream!.bytesRead - (conn.client.bytesWritten - conn.client.writableLength);
  assert.ok(inProxy <= 256 * 1024, `proxy holds ${inProxy} bytes`);

  // Now read everything: all 50 MB arrive.
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got} bytes`)), 60_000);
    c.on('data', (d: Buffer) => (got += d.length));
    c.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
    c.resume();
  });
  assert.equal(got, TOTAL);
});

test('a bug while serving a client (a balancer that throws) closes that client, is reported once, and the next client is served', async (t) => {
  const up = await server(t);
  let broken = true;
  const balancer = {
    name: 'round-robin' as const,
    pick: (eps: readonly Endpoint[]) => {
      if (broken) throw new Error('balancer bug');
      return eps[0];
    },
  };
  const { cluster, listener, port, events } = await setup(t, { balancer });
  cluster.setEndpoints('static', [spec('a', up.port)]);
  const errors: unknown[] = [];
  let closedConns = 0;
  listener.on('internal-error', (_c, err) => errors.push(err));
  listener.on('connection-closed', () => closedConns++);
  const c = await client(t, port);
  c.write('x');
  await closed(c);
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /balancer bug/);
  await waitFor(() => listener.connections.size === 0 && closedConns === 1, 3000, 'the client accounted for');
  assert.deepEqual(events, [], 'not a failure of the endpoint, nor a refusal');
  broken = false;
  const d = await client(t, port);
  d.write('ok');
  assert.equal((await readBytes(d, 2)).toString(), 'ok');
  assert.deepEqual(events, ['connected a #1']);
});

test('an attempt that lost its race ends without a verdict when its endpoint goes down meanwhile', async (t) => {
  const { cluster, events, slow } = await raceLostAtSlow(t);
  assert.equal(slow[0]!.destroyed, false, 'the lost attempt goes on');
  const slowEp = cluster.endpoints().find((e) => e.id === 'slow')!;
  cluster.setHealth(slowEp, false); // e.g. its health checks failed
  assert.equal(slow[0]!.destroyed, true, 'given up at once');
  assert.equal(slowEp.failures, 0, 'no verdict of its own');
  assert.deepEqual(events, ['connected good #2']);
});
