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
