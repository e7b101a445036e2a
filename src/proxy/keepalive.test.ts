import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { mock, test } from 'node:test';
import { SocketPipe } from './pipe.js';
import { deferKeepAlive, KEEPALIVE_DEFER_MS, withdrawKeepAlive, type KeepAliveTarget } from './keepalive.js';

function target(): KeepAliveTarget & { enabled: number } {
  const t = { enabled: 0, enableKeepAlive: () => void t.enabled++ };
  return t;
}

test('keep-alive is switched on after one to two ticks, once, and never for a connection closed before', () => {
  mock.timers.enable({ apis: ['setInterval'] });
  try {
    const early = target();
    deferKeepAlive(early);
    mock.timers.tick(KEEPALIVE_DEFER_MS / 2);
    const late = target();
    const short = target();
    deferKeepAlive(late);
    deferKeepAlive(short);
    mock.timers.tick(KEEPALIVE_DEFER_MS / 2); // first tick: nothing has lived a whole tick yet
    assert.deepEqual([early.enabled, late.enabled], [0, 0]);
    withdrawKeepAlive(short); // closed within its first second
    mock.timers.tick(KEEPALIVE_DEFER_MS); // second tick
    assert.deepEqual([early.enabled, late.enabled, short.enabled], [1, 1, 0]);
    mock.timers.tick(5 * KEEPALIVE_DEFER_MS);
    assert.deepEqual([early.enabled, late.enabled, short.enabled], [1, 1, 0], 'once only');
    // The timer stopped with nothing enrolled; a new enrolment starts it again.
    const again = target();
    deferKeepAlive(again);
    mock.timers.tick(2 * KEEPALIVE_DEFER_MS);
    assert.equal(again.enabled, 1);
  } finally {
    mock.timers.reset();
  }
});

test('a pipe gets keep-alive on both sockets once it has lived 1–2 ticks; a short one never', async () => {
  const server = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const pair = async (): Promise<{ pipe: SocketPipe; calls: string[]; close: () => void }> => {
    // client ↔ (a, b) ↔ echo server: `a` stands for the accepted client, `b` for the upstream.
    const front = net.createServer();
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => front.once('connection', r));
    const outside = net.connect((front.address() as net.AddressInfo).port, '127.0.0.1');
    const a = await accepted;
    const b = net.connect(port, '127.0.0.1');
    await once(b, 'connect');
    const calls: string[] = [];
    for (const [name, s] of [['client', a], ['upstream', b]] as const) {
      const orig = s.setKeepAlive.bind(s);
      s.setKeepAlive = (enable?: boolean, delay?: number) => {
        calls.push(`${name} ${enable} ${delay}`);
        return orig(enable, delay);
      };
    }
    const pipe = new SocketPipe(a, b, { keepAliveInitialDelayMs: 7000 });
    return { pipe, calls, close: () => (outside.destroy(), front.close()) };
  };
  mock.timers.enable({ apis: ['setInterval'] });
  try {
    const long = await pair();
    const short = await pair();
    short.close();
    await short.pipe.closed;
    mock.timers.tick(2 * KEEPALIVE_DEFER_MS);
    assert.deepEqual(long.calls, ['client true 7000', 'upstream true 7000']);
    assert.deepEqual(short.calls, []);
    long.close();
    await long.pipe.closed;
  } finally {
    mock.timers.reset();
    server.close();
  }
});
