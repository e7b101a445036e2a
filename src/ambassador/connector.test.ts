// Primary/standby failback (balance=srv): pooled connections held on the standby move back to the
// primary at their first pause once it returns — never in the middle of traffic.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { PassThrough } from 'node:stream';
import { createLogger } from '../logging/logger.js';
import { parseConnect } from '../config/specs.js';
import type { DiscoverySource, EndpointSpec } from '../discovery/source.js';
import { closed, connectTo, readBytes, sleep, spec, startServer, waitFor } from '../testing/tcp-kit.js';
import { Connector } from './connector.js';

/** Stands in for the mDNS browser: the test decides which instances are announced. */
class Announcements extends EventEmitter implements DiscoverySource {
  readonly kind = 'mdns' as const;
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  announce(specs: EndpointSpec[]): void {
    this.emit('endpoints', specs);
  }
}

async function primaryAndStandby(t: TestContext, failback: 'retire' | 'keep') {
  const primary = await startServer({ greeting: 'P' });
  const standby = await startServer({ greeting: 'S' });
  t.after(() => primary.close());
  t.after(() => standby.close());
  const source = new Announcements();
  // Port 0 (any free one): not a valid flag, fine for the listener.
  const conn = new Connector({ ...parseConnect(`redis=127.0.0.1:1,balance=srv,failback=${failback}`), port: 0 }, [source], createLogger('silent'), {
    healthIntervalMs: 60_000, healthTimeoutMs: 500, connectTimeoutMs: 1000, noEndpointWaitMs: 1000, keepConnections: false,
  });
  await conn.bind();
  await conn.start();
  t.after(() => conn.stop(1000));
  const port = conn.listener.address()!.port;
  const p = spec('primary', primary.port, { source: 'mdns', priority: 0 });
  const s = spec('standby', standby.port, { source: 'mdns', priority: 10 });
  return { conn, port, source, p, s };
}

async function pooled(port: number): Promise<{ socket: net.Socket; served: string }> {
  const socket = await connectTo(port);
  return { socket, served: (await readBytes(socket, 1)).toString() };
}

test('balance=srv: when the primary is back, a pooled connection on the standby closes at its first pause', async (t) => {
  const { conn, port, source, p, s } = await primaryAndStandby(t, 'retire');
  const retire = t.mock.method(conn.listener, 'retireConnectionsTo');
  source.announce([s]); // the primary is down
  const held = await pooled(port);
  assert.equal(held.served, 'S');
  t.after(() => void held.socket.destroy());

  source.announce([p, s]); // the primary is back
  await waitFor(() => retire.mock.calls.some((c) => c.result === 1), 3000, 'the held connection set to close at its first pause');
  // While traffic flows without a pause the connection is left alone, however long that lasts.
  for (let i = 0; i < 12; i++) {
    held.socket.write('x');
    assert.equal((await readBytes(held.socket, 1)).toString(), 'x');
    await sleep(50);
  }
  assert.equal(held.socket.closed, false, 'not cut in the middle of traffic');
  // Then it pauses: the connection closes, and the pool's new one goes to the primary.
  await closed(held.socket, 5000);
  assert.equal((await pooled(port)).served, 'P');
});

test('balance=srv,failback=keep: pooled connections stay on the standby', async (t) => {
  const { conn, port, source, p, s } = await primaryAndStandby(t, 'keep');
  // A connection leaves only through these two (at its first pause, or at once): with keep,
  // the primary's return must start neither. Spied on, not replaced.
  const retire = t.mock.method(conn.listener, 'retireConnectionsTo');
  const close = t.mock.method(conn.listener, 'closeConnectionsTo');
  source.announce([s]);
  const held = await pooled(port);
  t.after(() => void held.socket.destroy());
  source.announce([p, s]);
  const fresh = await pooled(port);
  t.after(() => void fresh.socket.destroy());
  assert.equal(fresh.served, 'P', 'new connections go to the primary (the primary\'s return was handled)');
  assert.equal(retire.mock.callCount() + close.mock.callCount(), 0, 'no connection was set to close');
  held.socket.write('y');
  assert.equal((await readBytes(held.socket, 1)).toString(), 'y', 'the held connection still works');
  assert.equal(held.socket.closed, false);
});

test('an internal error while serving a client: logged once with its stack (repeats folded), the client closed, the next one served', async (t) => {
  const up = await startServer({ greeting: 'U' });
  t.after(() => up.close());
  const source = new Announcements();
  const out = new PassThrough();
  const lines: Array<Record<string, unknown>> = [];
  out.on('data', (d: Buffer) => {
    for (const l of d.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
  });
  const conn = new Connector({ ...parseConnect('redis=127.0.0.1:1'), port: 0 }, [source], createLogger('info', 'json', out), {
    healthIntervalMs: 60_000, healthTimeoutMs: 500, connectTimeoutMs: 1000, noEndpointWaitMs: 1000, keepConnections: false,
  });
  await conn.bind();
  await conn.start();
  t.after(() => conn.stop(0));
  source.announce([spec('u', up.port, { source: 'mdns' })]);
  let bugs = 2;
  conn.listener.on('upstream-connected', () => {
    if (bugs-- > 0) throw new Error('bug in a listener');
  });
  const port = conn.listener.address()!.port;
  for (let i = 0; i < 2; i++) await closed(await connectTo(port));
  assert.equal((await pooled(port)).served, 'U', 'the process goes on');
  const logged = lines.filter((l) => String(l.msg).startsWith('internal error'));
  assert.equal(logged.length, 1, 'the same bug twice: one line');
  assert.equal(logged[0]!.level, 50);
  assert.match(String(logged[0]!.err), /^Error: bug in a listener\n\s+at /, 'with its stack');
});
