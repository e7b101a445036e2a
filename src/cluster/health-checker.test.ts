import net from 'node:net';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from './cluster.js';
import { HealthChecker } from './health-checker.js';
import { spec, startServer, waitFor } from './test-helpers.test.js';

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

test('health checker: unhealthy threshold needs consecutive failures; timeout counts as failure', async () => {
  const c = new Cluster('svc');
  let created = 0;
  const hc = new HealthChecker(c, {
    intervalMs: 10_000,
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
  hc.on('check', (_e, ok, code) => codes.push(`${ok}:${code}`));
  hc.start();
  try {
    await hc.check(a); // in flight from start(): returns immediately
    await waitFor(() => codes.length === 1, 2000);
    assert.equal(a.state, 'up');
    await hc.check(a);
    assert.equal(a.state, 'up');
    await hc.check(a);
    assert.equal(a.state, 'down');
    assert.deepEqual(codes, ['false:ETIMEDOUT', 'false:ETIMEDOUT', 'false:ETIMEDOUT']);
    assert.equal(created, 3);
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
