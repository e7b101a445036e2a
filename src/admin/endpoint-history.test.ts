import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../cluster/cluster.js';
import { spec } from '../testing/tcp-kit.js';
import { EndpointHistory, type HistorySubject } from './endpoint-history.js';

function subject(): HistorySubject & { cluster: Cluster; listener: { accepted: number } } {
  return { cluster: new Cluster('svc'), listener: { accepted: 0 } };
}

test('rates: per-second deltas of the counters, oldest first, in a ring of fixed size', () => {
  const s = subject();
  s.cluster.setEndpoints('static', [spec('a', 1)]);
  const a = s.cluster.get('static/a')!;
  const h = new EndpointHistory(() => [s], { samples: 4 });
  a.connections = 5; // before the first sample: not a rate
  h.sample(1000);
  for (const [conn, fail, acc] of [[2, 0, 3], [0, 1, 1], [7, 2, 0], [1, 0, 9], [4, 4, 4]]) {
    a.connections += conn!;
    a.failures += fail!;
    s.listener.accepted += acc!;
    h.sample();
  }
  // 6 samples into a ring of 4: the first ones are gone
  assert.deepEqual(h.rates(a), { connections: [0, 7, 1, 4], failures: [1, 2, 0, 4] });
  assert.deepEqual(h.latest(a), [4, 4]);
  assert.deepEqual(h.accepted(s), [1, 0, 9, 4]);
  assert.equal(h.latestAccepted(s), 4);
  assert.equal(h.seq, 6);
  // a counter that went down (never should) counts from its new value
  a.connections = 0;
  h.sample();
  assert.deepEqual(h.latest(a), [0, 0]);
  s.cluster.close();
});

test('departed: an endpoint that leaves is remembered with its reason, for a while, the newest kept', () => {
  const s = subject();
  const h = new EndpointHistory(() => [s], { departedKeepMs: 60_000, departedMax: 2 });
  s.cluster.setEndpoints('mdns', [spec('a', 1, { source: 'mdns' }), spec('b', 2, { source: 'mdns' }), spec('c', 3, { source: 'mdns' })]);
  h.sample(10_000);
  // a says goodbye, then leaves; b leaves while up (its record expired); c stays
  s.cluster.setEndpoints('mdns', [spec('a', 1, { source: 'mdns', draining: true }), spec('b', 2, { source: 'mdns' }), spec('c', 3, { source: 'mdns' })]);
  const goodbyeAt = s.cluster.get('mdns/a')!.stateSince;
  s.cluster.setEndpoints('mdns', [spec('c', 3, { source: 'mdns' })]);
  h.sample(11_000);
  const gone = h.departures(s);
  assert.deepEqual(gone.map((d) => [d.label, d.reason, d.goneAt]).sort(), [['a', 'goodbye', 11_000], ['b', 'removed', 11_000]]);
  assert.equal(gone.find((d) => d.label === 'a')!.since, goodbyeAt, 'down since the goodbye');
  assert.deepEqual(h.rates(s.cluster.get('mdns/c')!).connections, [0, 0]);
  // a third one leaves: only the newest two are kept
  s.cluster.setEndpoints('mdns', []);
  h.sample(12_000);
  assert.equal(h.departures(s).length, 2);
  assert.equal(h.departures(s).at(-1)!.label, 'c');
  // and they are forgotten after departedKeepMs
  h.sample(72_000);
  assert.deepEqual(h.departures(s), []);
  s.cluster.close();
});
