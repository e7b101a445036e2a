import { EventEmitter } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../base/clock.js';
import { Cluster } from './cluster.js';
import type { Endpoint } from './endpoint.js';
import { HealthChecker, type HealthCheckOptions } from './health-checker.js';
import { spec, startServer, waitFor } from '../testing/tcp-kit.js';

test('health checker marks a closed port down and a reopened one up', async () => {
  const srv = await startServer();
  const port = srv.port;
  const c = new Cluster('svc');
  c.setEndpoints('static', [spec('a', port)]);
  const a = c.endpoints()[0]!;
  const events: string[] = [];
  c.on('endpoint-down', (e, r) => events.push(`down ${r}`));
  c.on('endpoint-up', () => events.push('up'));
  const checks: Array<[boolean, string | undefined]> = [];
  const hc = new HealthChecker(c, { intervalMs: 20, timeoutMs: 200, unhealthyThreshold: 2, healthyThreshold: 1 });
  hc.on('check', (_e, ok, code) => checks.push([ok, code]));
  hc.start();
  try {
    await waitFor(() => checks.length >= 2, 3000, 'two checks');
    assert.equal(a.state, 'up');
    assert.ok(checks.every(([ok]) => ok));

    await srv.close();
    await waitFor(() => a.state === 'down', 3000, 'down after close');
    assert.equal(a.downReason, 'health-check');
    assert.deepEqual(events, ['down health-check']);
    assert.ok(checks.some(([ok, code]) => !ok && code === 'ECONNREFUSED'));

    // Reopen on the same port (may be briefly unavailable; bounded retries).
    let reopened: Awaited<ReturnType<typeof startServer>> | undefined;
    for (let i = 0; i < 50 && !reopened; i++) {
      try {
        reopened = await startServer({ port });
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    assert.ok(reopened, 'could not reopen the port');
    await waitFor(() => a.state === 'up', 3000, 'up after reopen');
    assert.deepEqual(events, ['down health-check', 'up']);
    await reopened.close();
  } finally {
    hc.stop();
    c.close();
  }
});

test('health checker: after a failure it confirms at once, not an interval later; timeouts count as failures', async () => {
  const c = new Cluster('svc');
  let created = 0;
  const hc = new HealthChecker(c, {
    intervalMs: 60_000, // one round only: everything after the first check is a confirmation
    timeoutMs: 50,
    unhealthyThreshold: 3,
    createConnection: () => {
      created++;
      return new net.Socket(); // never connects: exercises the timeout path without any network
    },
  });
  c.setEndpoints('static', [spec('a', 1)]);
  const a = c.endpoints()[0]!;
  const codes: string[] = [];
  const downAfter: number[] = [];
  hc.on('check', (_e, ok, code) => codes.push(`${ok}:${code}`));
  c.on('endpoint-down', () => downAfter.push(codes.length));
  hc.start();
  try {
    await waitFor(() => a.state === 'down', 5000, 'down after three timeouts');
    assert.deepEqual(codes, ['false:ETIMEDOUT', 'false:ETIMEDOUT', 'false:ETIMEDOUT']);
    assert.deepEqual(downAfter, [3], 'down on the third consecutive failure, not before');
    assert.equal(created, 3);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(created, 3, 'a down endpoint is checked on the interval again, not back to back');
  } finally {
    hc.stop();
    c.close();
  }
});

test('health checker: one failed check that the confirmation contradicts keeps the endpoint up', async () => {
  const c = new Cluster('svc');
  let created = 0;
  const hc = new HealthChecker(c, {
    intervalMs: 60_000,
    timeoutMs: 50,
    unhealthyThreshold: 2,
    createConnection: () => {
      created++;
      const s = new net.Socket();
      // The first check times out (a lost SYN); the confirmation connects.
      if (created > 1) setImmediate(() => s.emit('connect'));
      return s;
    },
  });
  const events: string[] = [];
  c.on('endpoint-down', () => events.push('down'));
  c.setEndpoints('static', [spec('a', 1)]);
  const a = c.endpoints()[0]!;
  const codes: string[] = [];
  hc.on('check', (_e, ok, code) => codes.push(`${ok}:${code}`));
  hc.start();
  try {
    await waitFor(() => codes.length === 2, 5000, 'check and confirmation');
    assert.deepEqual(codes, ['false:ETIMEDOUT', 'true:undefined']);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(a.state, 'up');
    assert.deepEqual(events, []);
    assert.equal(created, 2, 'after a passing confirmation, back to the interval');
  } finally {
    hc.stop();
    c.close();
  }
});

test('health checker: stop() cancels in-flight checks and timers; removed endpoints are forgotten', async () => {
  const c = new Cluster('svc');
  let sockets = 0;
  const hc = new HealthChecker(c, {
    intervalMs: 5,
    timeoutMs: 60_000,
    createConnection: () => {
      sockets++;
      return new net.Socket();
    },
  });
  hc.start();
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  await waitFor(() => sockets >= 2, 1000);
  c.setEndpoints('static', [spec('b', 2)]);
  hc.stop();
  assert.equal(hc.isRunning, false);
  assert.equal(c.listenerCount('endpoint-added'), 0);
  // If anything leaked (socket with 60 s timeout, round timer) node --test would not exit.
  c.close();
});

// ---------------------------------------------------------------------------------------------
// On a fake clock, with scripted outcomes: no real network, no wall-clock.

type Outcome = 'ok' | 'timeout' | 'refused' | { reply: string };

/** A stand-in for the check socket: connects, refuses, or stays silent as scripted. */
class ScriptedSocket extends EventEmitter {
  destroyed = false;
  written = '';
  constructor(private readonly clock: FakeClock, private readonly outcome: Outcome) {
    super();
    clock.setTimeout(() => {
      if (this.destroyed) return;
      if (outcome === 'refused') this.emit('error', Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }));
      else if (outcome !== 'timeout') this.emit('connect');
    }, 1);
  }
  setEncoding(): this {
    return this;
  }
  write(s: string): boolean {
    this.written += s;
    const o = this.outcome;
    if (typeof o === 'object') this.clock.setTimeout(() => !this.destroyed && this.emit('data', o.reply), 1);
    return true;
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      this.emit('close');
    }
    return this;
  }
}

function scripted(outcomes: (n: number, ep: Endpoint) => Outcome, opts: Partial<HealthCheckOptions> = {}) {
  const clock = new FakeClock();
  const c = new Cluster('svc');
  const sockets: ScriptedSocket[] = [];
  let n = 0;
  const hc = new HealthChecker(c, {
    intervalMs: 500, timeoutMs: 500, jitter: 0, clock, afterPendingIo: (fn) => fn(), ...opts,
    createConnection: (ep) => {
      const s = new ScriptedSocket(clock, outcomes(n++, ep));
      sockets.push(s);
      return s as unknown as net.Socket;
    },
  });
  const log: string[] = [];
  hc.on('check', (ep, ok, code) => log.push(`${ep.id}:${ok ? 'ok' : code}`));
  c.on('endpoint-down', (ep, why) => log.push(`DOWN ${ep.id} ${why}`));
  c.on('endpoint-up', (ep, was) => was && log.push(`UP ${ep.id}`));
  return { clock, c, hc, log, sockets };
}

test('own checks: a refusal is proof (down at once); timeouts need a streak', () => {
  let refuse = false;
  const { clock, c, hc, log } = scripted(() => (refuse ? 'refused' : 'ok'));
  c.setEndpoints('static', [spec('a', 1)]);
  hc.start();
  clock.advance(2_000);
  refuse = true;
  const before = log.length;
  clock.advance(600);
  assert.deepEqual(log.slice(before).filter((l) => l !== 'a:ok'), ['a:ECONNREFUSED', 'DOWN a health-check']);
  // The last check, as the status page shows it: when, and what it said.
  const last = hc.lastCheck(c.endpoints()[0]!)!;
  assert.equal(last.ok, false);
  assert.equal(last.code, 'ECONNREFUSED');
  assert.ok(last.at > clock.now() - 600 && last.at <= clock.now());
  hc.stop();
  c.close();
});

test('own checks: the streak of timeouts that convicts grows with the loss seen while the endpoint answered', () => {
  // Every fifth check times out (a lost SYN) for a while, then the endpoint dies.
  let dead = false;
  const { clock, c, hc, log } = scripted((n) => (dead || n % 5 === 4 ? 'timeout' : 'ok'));
  c.setEndpoints('static', [spec('a', 1)]);
  const a = c.endpoints()[0]!;
  hc.start();
  clock.advance(300_000);
  assert.ok(!log.some((l) => l.startsWith('DOWN')), 'lone timeouts never took it down');
  const rate = hc.lossRate(a)!;
  assert.ok(rate > 0.1 && rate < 0.3, `learned the loss (${rate})`);
  dead = true;
  const at = log.length;
  clock.advance(10_000);
  const streak = log.slice(at).indexOf('DOWN a health-check');
  // the exact number follows the estimate (0.2^8 > 1e-5 > 0.2^7); clearly more than the clean-LAN 2
  assert.ok(streak >= 5, `convicted after ${streak} timeouts in a row`);
  hc.stop();
  c.close();
});

test('own checks: on a clean path two timeouts in a row, the second confirmed at once', () => {
  let dead = false;
  const { clock, c, hc, log } = scripted(() => (dead ? 'timeout' : 'ok'));
  c.setEndpoints('static', [spec('a', 1)]);
  hc.start();
  clock.advance(5_000);
  dead = true;
  const t = clock.now();
  let downAt = 0;
  c.on('endpoint-down', () => (downAt = clock.now()));
  clock.advance(5_000);
  // next round within 500 ms, then two 500 ms timeouts back to back
  assert.ok(downAt > 0 && downAt - t <= 500 + 2 * 502, `down ${downAt - t} ms after the death`);
});

test('check=redis: PONG (or NOAUTH) is alive; a frozen server that accepts but never answers goes down; LOADING at once', () => {
  let mode: 'pong' | 'noauth' | 'frozen' | 'loading' = 'pong';
  const { clock, c, hc, log, sockets } = scripted(() => {
    if (mode === 'pong') return { reply: '+PONG\r\n' };
    if (mode === 'noauth') return { reply: '-NOAUTH Authentication required.\r\n' };
    if (mode === 'loading') return { reply: '-LOADING Redis is loading the dataset in memory\r\n' };
    return 'ok'; // connects (the kernel completes the handshake), never replies
  }, { kind: 'redis' });
  c.setEndpoints('static', [spec('r', 6379)]);
  const r = c.endpoints()[0]!;
  hc.start();
  clock.advance(2_000);
  assert.equal(sockets[0]!.written, 'PING\r\n');
  mode = 'noauth';
  clock.advance(2_000);
  assert.equal(r.state, 'up');
  mode = 'frozen';
  clock.advance(3_000);
  assert.equal(r.downReason, 'health-check');
  assert.ok(log.includes('r:ETIMEDOUT'));
  mode = 'pong';
  clock.advance(1_000);
  assert.equal(r.state, 'up');
  mode = 'loading';
  const at = log.length;
  clock.advance(600);
  assert.deepEqual(log.slice(at).filter((l) => l !== 'r:ok'), ['r:EBADREPLY', 'DOWN r health-check']);
  hc.stop();
  c.close();
});

test('endpoints judged by someone else (host probes) are not checked, and lose our verdict when they switch', () => {
  const probed = new Set<string>(['p']);
  const { clock, c, hc, sockets } = scripted(() => 'refused', { skip: (ep) => probed.has(ep.id) });
  c.setEndpoints('static', [spec('p', 1), spec('o', 2)]);
  hc.start();
  clock.advance(2_000);
  const [p, o] = c.endpoints() as [Endpoint, Endpoint];
  assert.equal(p.state, 'up');
  assert.equal(p.healthOrigin, 'passive');
  assert.equal(o.healthOrigin, 'own-check');
  assert.equal(o.downReason, 'health-check');
  const n = sockets.length;
  clock.advance(5_000);
  assert.ok(sockets.length > n, 'o is still checked');
  probed.add('o');
  c.setEndpoints('static', [spec('p', 1), { ...spec('o', 2), label: 'now probed' }]);
  assert.equal(o.state, 'up', 'our verdict is dropped with the endpoint');
  const m = sockets.length;
  clock.advance(5_000);
  assert.equal(sockets.length, m, 'nothing checked any more');
  hc.stop();
  c.close();
});
