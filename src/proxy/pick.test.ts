// The pick alone: which endpoint a client's next attempt goes to, from the cluster's state and
// what failed for that client so far (no sockets, no listener).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RoundRobinBalancer } from '../cluster/balancer.js';
import { Cluster } from '../cluster/cluster.js';
import type { Endpoint } from '../cluster/endpoint.js';
import { spec } from '../testing/tcp-kit.js';
import { NO_ENDPOINTS, NO_FAILURES, pickEndpoint, type FailedTry } from './pick.js';

function cluster(...ids: string[]): { c: Cluster; eps: Endpoint[] } {
  const c = new Cluster('svc', { outlier: false });
  c.setEndpoints('static', ids.map((id, i) => spec(id, 7000 + i)));
  return { c, eps: c.endpoints() };
}

const failed = (...entries: [Endpoint, Partial<FailedTry>][]): Map<Endpoint, FailedTry> =>
  new Map(entries.map(([ep, f]) => [ep, { generation: ep.generation, hard: true, ...f }]));

test('pick: usable endpoints in the balancer\'s order; those failed for this client (at their address) left out', () => {
  const { c, eps: [a, b, d] } = cluster('a', 'b', 'd');
  const rr = new RoundRobinBalancer();
  assert.deepEqual([0, 1, 2, 3].map(() => pickEndpoint(c, rr, Infinity, NO_ENDPOINTS, NO_FAILURES)), [a, b, d, a]);
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), Infinity, NO_ENDPOINTS, failed([a!, {}])), b);
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), Infinity, NO_ENDPOINTS, failed([a!, {}], [b!, {}])), d);
  // One that moved since it failed is worth a retry at its new address.
  const moved = failed([a!, { generation: a!.generation - 1 }], [b!, {}], [d!, {}]);
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), Infinity, NO_ENDPOINTS, moved), a);
});

test('pick: nothing usable and nothing failed: undefined (the client waits)', () => {
  const { c } = cluster();
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), Infinity, NO_ENDPOINTS, NO_FAILURES), undefined);
  const { c: gone, eps: [a] } = cluster('a');
  gone.setHealth(a!, false, 'source-check'); // a known answer, not a panic candidate
  assert.equal(pickEndpoint(gone, new RoundRobinBalancer(), Infinity, NO_ENDPOINTS, NO_FAILURES), undefined);
});

test('pick: racing a pending attempt, another endpoint first, else the same one again', () => {
  const { c, eps: [a, b] } = cluster('a', 'b');
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), Infinity, [a!], NO_FAILURES), b);
  const { c: one, eps: [only] } = cluster('only');
  assert.equal(pickEndpoint(one, new RoundRobinBalancer(), Infinity, [only!], NO_FAILURES), only, 'a fresh SYN beside the retransmitting one');
  // But not one that failed hard for this client.
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), Infinity, [a!], failed([b!, {}])), a);
});

test('pick: every endpoint down on health evidence alone: those are tried (panic mode); goodbyes and withdrawals never', () => {
  const { c, eps: [a, b, d] } = cluster('a', 'b', 'd');
  c.setHealth(a!, false, 'host-probe');
  c.setHealth(b!, false);
  c.setHealth(d!, false, 'source-check');
  assert.equal(c.inPanic, true);
  const rr = new RoundRobinBalancer();
  const picks = [0, 1, 2, 3].map(() => pickEndpoint(c, rr, Infinity, NO_ENDPOINTS, NO_FAILURES));
  assert.deepEqual(new Set(picks), new Set([a, b]));
  assert.equal(pickEndpoint(c, rr, Infinity, NO_ENDPOINTS, failed([a!, {}], [b!, {}])), undefined);
});

test('pick: an endpoint that only timed out for this client is tried again last; a refused one is not', () => {
  const { c, eps: [a, b] } = cluster('a', 'b');
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), Infinity, NO_ENDPOINTS, failed([a!, { hard: false }], [b!, {}])), a);
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), Infinity, NO_ENDPOINTS, failed([a!, {}], [b!, {}])), undefined);
});

test('pick: max-per-endpoint: full endpoints skipped; every usable one full and nothing pending: \'full\'', () => {
  const { c, eps: [a, b] } = cluster('a', 'b');
  a!.active = 2;
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), 2, NO_ENDPOINTS, NO_FAILURES), b);
  b!.active = 2;
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), 2, NO_ENDPOINTS, NO_FAILURES), 'full');
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), 2, [a!], NO_FAILURES), undefined, 'racing: not a refusal');
  assert.equal(pickEndpoint(c, new RoundRobinBalancer(), 3, NO_ENDPOINTS, NO_FAILURES), a);
});
