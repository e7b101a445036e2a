import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from './cluster.js';
import type { Endpoint } from './endpoint.js';
import { sleep, spec, waitFor } from '../testing/tcp-kit.js';

function record(c: Cluster): string[] {
  const log: string[] = [];
  c.on('endpoint-added', (e) => log.push(`added ${e.id}`));
  c.on('endpoint-removed', (e) => log.push(`removed ${e.id}`));
  c.on('endpoint-up', (e) => log.push(`up ${e.id}`));
  c.on('endpoint-down', (e, r) => log.push(`down ${e.id} ${r}`));
  c.on('endpoint-updated', (e, addr) => log.push(`updated ${e.id}${addr ? ' address' : ''}`));
  c.on('changed', () => log.push('changed'));
  return log;
}

test('setEndpoints: add, update keeping counters, remove; events', () => {
  const c = new Cluster('redis');
  const log = record(c);
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  assert.deepEqual(log.splice(0), ['added a', 'up a', 'added b', 'up b', 'changed']);
  assert.equal(c.size, 2);
  const a = c.endpoints().find((e) => e.id === 'a')!;
  a.connections = 7;
  a.bytesIn = 100;

  // Same set again: nothing happens.
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  assert.deepEqual(log.splice(0), []);

  // Weight/txt change on a, port change on b.
  c.setEndpoints('static', [spec('a', 1, { weight: 5, txt: { v: '2' } }), spec('b', 3)]);
  assert.deepEqual(log.splice(0), ['updated a', 'updated b address', 'changed']);
  const a2 = c.endpoints().find((e) => e.id === 'a')!;
  assert.equal(a2, a, 'same Endpoint object');
  assert.equal(a2.weight, 5);
  assert.deepEqual(a2.txt, { v: '2' });
  assert.equal(a2.connections, 7);
  assert.equal(a2.bytesIn, 100);
  assert.equal(c.endpoints().find((e) => e.id === 'b')!.port, 3);

  // b disappears.
  c.setEndpoints('static', [spec('a', 1, { weight: 5, txt: { v: '2' } })]);
  assert.deepEqual(log.splice(0), ['down b removed', 'removed b', 'changed']);
  assert.deepEqual(c.endpoints().map((e) => e.id), ['a']);
  c.close();
});

test('setEndpoints merges per source: one source does not remove another', () => {
  const c = new Cluster('svc');
  c.setEndpoints('mdns', [spec('m1', 1, { source: 'mdns' })]);
  c.setEndpoints('static', [spec('s1', 2)]);
  c.setEndpoints('srv', [spec('x', 3, { source: 'srv' })]);
  assert.deepEqual(c.endpoints().map((e) => e.key).sort(), ['mdns/m1', 'srv/x', 'static/s1']);
  c.setEndpoints('mdns', []);
  assert.deepEqual(c.endpoints().map((e) => e.key).sort(), ['srv/x', 'static/s1']);
  // The same id from two sources is two endpoints.
  c.setEndpoints('mdns', [spec('s1', 2, { source: 'mdns' })]);
  assert.equal(c.size, 3);
  c.close();
});

test('one backend announced twice (two ambassadors, one target) is one endpoint; the other takes over when it leaves', () => {
  const c = new Cluster('svc');
  const dup: string[] = [];
  c.on('endpoint-duplicate', (s, why) => dup.push(`${s.id}: ${why}`));
  const one = spec('redis@a', 7000, { source: 'mdns', host: '198.18.1.1' });
  const two = spec('redis@a (2)', 7000, { source: 'mdns', host: '198.18.1.1' });
  const other = spec('redis@a:7400', 7400, { source: 'mdns', host: '198.18.1.1' });
  c.setEndpoints('mdns', [one, two, other]);
  assert.deepEqual(c.endpoints().map((e) => e.id), ['redis@a', 'redis@a:7400']);
  assert.deepEqual(dup, ['redis@a (2): the same backend (198.18.1.1:7000) as redis@a, which is the endpoint: one backend, one share']);
  assert.deepEqual(c.duplicates().map((d) => d.spec.id), ['redis@a (2)']);
  assert.deepEqual(c.filteredOut(), [], 'not a where. filter');
  // The same set in another order: the endpoint stays the one it was.
  c.setEndpoints('mdns', [other, two, one]);
  assert.deepEqual(c.endpoints().map((e) => e.id), ['redis@a', 'redis@a:7400']);
  assert.equal(dup.length, 1, 'said once');
  // Its ambassador says goodbye: the other instance of the backend takes over at once.
  c.setEndpoints('mdns', [{ ...one, draining: true }, two, other]);
  assert.deepEqual(c.healthy().map((e) => e.id).sort(), ['redis@a (2)', 'redis@a:7400']);
  c.setEndpoints('mdns', [two, other]);
  assert.deepEqual(c.endpoints().map((e) => e.id).sort(), ['redis@a (2)', 'redis@a:7400']);
  assert.deepEqual(c.duplicates(), []);
  c.close();
  // What a backend is can be given (the ambassador's: a relay's relay-to target).
  const byTxt = new Cluster('svc', { backend: (s) => s.txt.target ?? `${s.host}:${s.port}` });
  byTxt.setEndpoints('mdns', [spec('r1', 40001, { source: 'mdns', txt: { target: 'db' } }), spec('r2', 40002, { source: 'mdns', txt: { target: 'db' } })]);
  assert.deepEqual(byTxt.endpoints().map((e) => e.id), ['r1']);
  byTxt.close();
});

test('where filter keeps only specs whose TXT has every K=V; a TXT change can drop one', () => {
  const c = new Cluster('db', { where: { env: 'prod', role: 'primary' } });
  const log = record(c);
  c.setEndpoints('mdns', [
    spec('p', 1, { source: 'mdns', txt: { env: 'prod', role: 'primary', extra: 'x' } }),
    spec('s', 2, { source: 'mdns', txt: { env: 'staging', role: 'primary' } }),
    spec('n', 3, { source: 'mdns' }),
  ]);
  assert.deepEqual(c.endpoints().map((e) => e.id), ['p']);
  log.length = 0;
  c.setEndpoints('mdns', [spec('p', 1, { source: 'mdns', txt: { env: 'prod', role: 'replica' } })]);
  assert.deepEqual(log, ['down p removed', 'removed p', 'changed']);
  assert.equal(c.size, 0);
  c.close();
});

test('healthy() and setHealth: down/up events with reason health-check', () => {
  const c = new Cluster('svc');
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  const [a] = c.endpoints() as [Endpoint, Endpoint];
  const log = record(c);
  c.setHealth(a, false);
  c.setHealth(a, false); // no duplicate event
  assert.deepEqual(log.splice(0), ['down a health-check', 'changed']);
  assert.equal(a.state, 'down');
  assert.equal(a.downReason, 'health-check');
  assert.deepEqual(c.healthy().map((e) => e.id), ['b']);
  c.setHealth(a, true);
  assert.deepEqual(log.splice(0), ['up a', 'changed']);
  assert.equal(c.healthy().length, 2);
  // A removed-while-down endpoint emits no second down.
  c.setHealth(a, false);
  log.length = 0;
  c.setEndpoints('static', [spec('b', 2)]);
  assert.deepEqual(log, ['removed a', 'changed']);
  c.close();
});

test('outlier: ejected after consecutive failures, back on probation after back-off, back-off doubles', async () => {
  const c = new Cluster('svc', { outlier: { consecutiveFailures: 2, baseEjectionMs: 40, maxEjectionMs: 1000 } });
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  const a = c.endpoints()[0]!;
  const log = record(c);

  c.reportConnectFailure(a);
  assert.equal(a.state, 'up', 'one failure is not enough');
  c.reportConnectSuccess(a);
  c.reportConnectFailure(a);
  assert.equal(a.state, 'up', 'success reset the streak');
  c.reportConnectFailure(a);
  assert.equal(a.state, 'down');
  assert.equal(a.downReason, 'outlier');
  assert.deepEqual(c.healthy().map((e) => e.id), ['b']);
  assert.deepEqual(log.splice(0), ['down a outlier', 'changed']);
  const firstEjection = a.ejectedUntil - Date.now();
  assert.ok(firstEjection <= 40);

  await waitFor(() => log.includes('up a'), 2000, 'return from ejection');
  assert.deepEqual(log.splice(0), ['up a', 'changed']);
  assert.equal(a.state, 'up');
  assert.equal(c.healthy().length, 2);

  // Probation: a single failure ejects again, for twice as long.
  const t0 = Date.now();
  c.reportConnectFailure(a);
  const t0b = Date.now();
  assert.equal(a.downReason, 'outlier');
  assert.ok(a.ejectedUntil >= t0 + 80 && a.ejectedUntil <= t0b + 80, `second ejection ${a.ejectedUntil - t0}`);
  await waitFor(() => log.includes('up a'), 2000, 'second return');

  // A success clears the back-off: next ejection is back to base and needs 2 failures.
  c.reportConnectSuccess(a);
  c.reportConnectFailure(a);
  assert.equal(a.state, 'up');
  const t1 = Date.now();
  c.reportConnectFailure(a);
  assert.ok(a.ejectedUntil <= Date.now() + 40 && a.ejectedUntil >= t1 + 40);
  assert.equal(a.failures, 6);
  c.close();
});

test('outlier: back-off is capped; disabled outlier detection never ejects', () => {
  const c = new Cluster('svc', { outlier: { consecutiveFailures: 1, baseEjectionMs: 10, maxEjectionMs: 25 } });
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  const a = c.endpoints()[0]!;
  a.ejections = 10;
  const t = Date.now();
  c.reportConnectFailure(a);
  assert.ok(a.ejectedUntil >= t + 25 && a.ejectedUntil <= Date.now() + 25, "capped at 25 ms");
  c.close();

  const d = new Cluster('svc', { outlier: false });
  d.setEndpoints('static', [spec('a', 1)]);
  const e = d.endpoints()[0]!;
  for (let i = 0; i < 10; i++) d.reportConnectFailure(e);
  assert.equal(e.state, 'up');
  assert.equal(e.failures, 10);
  d.close();
});

test('an address change resets health and ejection', () => {
  const c = new Cluster('svc', { outlier: { consecutiveFailures: 1, baseEjectionMs: 60_000 } });
  c.setEndpoints('static', [spec('a', 1), spec('b', 3)]);
  const a = c.endpoints()[0]!;
  c.reportConnectFailure(a);
  assert.equal(a.downReason, 'outlier');
  const log = record(c);
  c.setEndpoints('static', [spec('a', 2), spec('b', 3)]);
  assert.deepEqual(log, ['updated a address', 'up a', 'changed']);
  assert.equal(a.state, 'up');
  c.close();
});

test('waitForEndpoint: immediate, resolves on arrival, times out, aborts', async () => {
  const c = new Cluster('svc');
  assert.equal(await c.waitForEndpoint(10), false);
  const p = c.waitForEndpoint(2000);
  setTimeout(() => c.setEndpoints('static', [spec('a', 1)]), 20);
  assert.equal(await p, true);
  assert.equal(await c.waitForEndpoint(0), true);

  c.setHealth(c.endpoints()[0]!, false);
  const ac = new AbortController();
  const p2 = c.waitForEndpoint(5000, ac.signal);
  ac.abort();
  assert.equal(await p2, false);

  const p3 = c.waitForEndpoint(5000);
  await sleep(5);
  c.setHealth(c.endpoints()[0]!, true);
  assert.equal(await p3, true);

  c.setEndpoints('static', []);
  const p4 = c.waitForEndpoint(5000);
  c.close();
  assert.equal(await p4, false, 'close wakes waiters');
  assert.equal(c.listenerCount('changed'), 0);
});

test('close removes endpoints and clears ejection timers', () => {
  const c = new Cluster('svc', { outlier: { consecutiveFailures: 1, baseEjectionMs: 60_000 } });
  c.setEndpoints('static', [spec('a', 1)]);
  const a = c.endpoints()[0]!;
  c.reportConnectFailure(a);
  c.close();
  assert.equal(c.size, 0);
  assert.equal(a.removed, true);
  c.setEndpoints('static', [spec('a', 1)]);
  assert.equal(c.size, 0, 'inert after close');
});

test('outlier: a hard failure (refused, unreachable) ejects at once; a timeout needs the streak', () => {
  const c = new Cluster('svc', { outlier: { consecutiveFailures: 2, baseEjectionMs: 60_000 } });
  c.setEndpoints('static', [spec('a', 1), spec('b', 2), spec('c', 3)]);
  const [a, b] = c.endpoints() as [Endpoint, Endpoint];
  c.reportConnectFailure(a, 'ETIMEDOUT');
  assert.equal(a.state, 'up', 'one timeout proves nothing on a lossy path');
  c.reportConnectFailure(b, 'ECONNREFUSED');
  assert.equal(b.downReason, 'outlier');
  c.close();
});

test('outlier: the last usable endpoint is never ejected on passive evidence alone', () => {
  const c = new Cluster('svc', { outlier: { consecutiveFailures: 1, baseEjectionMs: 60_000 } });
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  const [a, b] = c.endpoints() as [Endpoint, Endpoint];
  c.reportConnectFailure(a, 'ECONNREFUSED');
  assert.equal(a.downReason, 'outlier');
  for (let i = 0; i < 5; i++) c.reportConnectFailure(b, 'ECONNREFUSED');
  assert.equal(b.state, 'up', 'b is all that is left');
  assert.equal(b.failures, 5);
  assert.equal(c.sparedLast, 5);
  // Active evidence still counts: a failed health check takes it down.
  c.setHealth(b, false);
  assert.equal(b.downReason, 'health-check');
  c.close();
});

test('panic mode: no usable endpoint, some down only on evidence; candidates exclude goodbyes and source withdrawals', () => {
  const c = new Cluster('svc', { outlier: { consecutiveFailures: 1, baseEjectionMs: 60_000 } });
  const panics: boolean[] = [];
  c.on('panic', (p) => panics.push(p));
  c.setEndpoints('mdns', [spec('a', 1, { source: 'mdns' }), spec('b', 2, { source: 'mdns' }), spec('c', 3, { source: 'mdns' })]);
  const [a, b, cc] = c.endpoints() as [Endpoint, Endpoint, Endpoint];
  c.setHealth(a, false, 'host-probe');
  c.setHealth(b, false, 'source-check');
  assert.equal(c.inPanic, false, 'c is still usable');
  c.setEndpoints('mdns', [spec('a', 1, { source: 'mdns' }), spec('b', 2, { source: 'mdns' }), spec('c', 3, { source: 'mdns', draining: true })]);
  assert.equal(cc.downReason, 'goodbye');
  assert.equal(c.inPanic, true);
  assert.deepEqual(c.panicCandidates().map((e) => e.id), ['a'], 'host-probe yes; source-check and goodbye no');
  c.setHealth(a, true, 'host-probe');
  assert.equal(c.inPanic, false);
  assert.deepEqual(panics, [true, false]);
  assert.equal(c.panics, 1);
  // Nothing but withdrawn/leaving endpoints: no panic (nothing worth trying).
  c.setHealth(a, false, 'source-check');
  assert.equal(c.inPanic, false);
  c.close();
});

test('flaps: an endpoint judged down and back while announced', () => {
  const c = new Cluster('svc');
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  const [a] = c.endpoints() as [Endpoint];
  const ups: string[] = [];
  c.on('endpoint-up', (e, was) => ups.push(`${e.id} ${was}`));
  c.setHealth(a, false, 'host-probe');
  c.setHealth(a, true, 'host-probe');
  c.setHealth(a, false);
  c.setHealth(a, true);
  c.setHealth(a, false, 'source-check');
  c.setHealth(a, true, 'source-check');
  assert.equal(a.flaps, 2);
  assert.deepEqual(ups, ['a host-probe', 'a health-check', 'a source-check']);
  c.close();
});

test('stateSince: set on arrival and on each up/down transition, not when a down endpoint changes reason', async () => {
  const c = new Cluster('svc');
  const t0 = Date.now();
  c.setEndpoints('static', [spec('a', 1), spec('b', 2)]);
  const a = c.get('static/a')!;
  assert.ok(a.stateSince >= t0 && a.stateSince <= Date.now());
  const arrived = a.stateSince;
  await sleep(3);
  c.setHealth(a, false);
  assert.ok(a.stateSince > arrived, 'down: a new since');
  const downAt = a.stateSince;
  await sleep(3);
  c.setHealth(a, false, 'host-probe'); // a second judge: still down since then
  c.setHealth(a, true); // the first one clears: still down (host-probe)
  assert.equal(a.stateSince, downAt);
  await sleep(3);
  c.setHealth(a, true, 'host-probe');
  assert.ok(a.stateSince > downAt, 'up again: a new since');
  c.close();
});
