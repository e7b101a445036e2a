import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { MergedSource } from './merged.js';
import type { DiscoverySource, EndpointSpec, SourceKind } from './source.js';

class Fake extends EventEmitter implements DiscoverySource {
  constructor(readonly kind: SourceKind) {
    super();
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

const spec = (source: SourceKind, id: string, addresses: string[], port: number, extra: Partial<EndpointSpec> = {}): EndpointSpec =>
  ({ id, source, host: addresses[0]!, addresses, port, priority: 0, weight: 0, txt: {}, label: id, ...extra });

test('an instance seen over mDNS and in the registry is one endpoint, under a stable id', () => {
  const mdns = new Fake('mdns');
  const reg = new Fake('registry');
  const m = new MergedSource([mdns, reg]);
  const sets: EndpointSpec[][] = [];
  m.on('endpoints', (s: EndpointSpec[]) => sets.push(s));
  mdns.emit('endpoints', [spec('mdns', 'mdns:a', ['198.18.1.1', 'fe80::1%lab0'], 7001)]);
  reg.emit('endpoints', [spec('registry', 'registry:redis/a', ['198.18.1.1'], 7001), spec('registry', 'registry:redis/b', ['198.18.2.1'], 7001)]);
  let last = sets.at(-1)!;
  assert.equal(last.length, 2);
  const a = last.find((s) => s.id === 'mdns:a')!;
  assert.deepEqual(a.via, ['mdns', 'registry']);
  assert.equal(a.source, 'mdns');
  assert.deepEqual(a.addresses, ['198.18.1.1', 'fe80::1%lab0']);
  assert.equal(a.expiresAt, undefined, 'held by the registry: no TTL of its own');
  assert.deepEqual(last.find((s) => s.id === 'registry:redis/b')!.via, ['registry']);
  // mDNS loses it (multicast cut): still the same endpoint, held by the registry
  mdns.emit('endpoints', []);
  last = sets.at(-1)!;
  assert.ok(last.some((s) => s.id === 'mdns:a' && s.via!.join() === 'registry'));
  // the same port on another address is another endpoint
  mdns.emit('endpoints', [spec('mdns', 'mdns:c', ['198.18.1.9'], 7001)]);
  assert.equal(sets.at(-1)!.length, 3);
});

test('an authenticated registry decides the addresses dialled; an mDNS goodbye drains', () => {
  const mdns = new Fake('mdns');
  const reg = new Fake('registry');
  const m = new MergedSource([mdns, reg]);
  let last: EndpointSpec[] = [];
  m.on('endpoints', (s: EndpointSpec[]) => (last = s));
  reg.emit('endpoints', [spec('registry', 'registry:redis/a', ['198.18.1.1'], 7001, { named: true })]);
  mdns.emit('endpoints', [spec('mdns', 'mdns:a', ['198.18.1.1', '198.18.66.6'], 7001, { draining: true })]);
  assert.equal(last.length, 1);
  assert.deepEqual(last[0]!.addresses, ['198.18.1.1']);
  assert.equal(last[0]!.named, true);
  assert.equal(last[0]!.draining, true);
  assert.equal(last[0]!.id, 'registry:redis/a');
});
