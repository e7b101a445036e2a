import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { DirectoryWatch, RegistryClient, RegistryStatus } from './client.js';
import { Registrar } from './registrar.js';
import { RegistrySource } from './source.js';
import { decodeRecord, encodeRecord } from './record.js';
import type { EndpointSpec } from '../source.js';

/** The registry as a map, with owners: what the registrar and the source see of etcd or ZooKeeper. */
class MemoryRegistry extends EventEmitter implements RegistryClient {
  readonly status = { state: 'connected' } as RegistryStatus;
  readonly keys = new Map<string, { value: string; owner: string }>();
  readonly watches = new Map<string, FakeWatch>();
  constructor(readonly owner = 'me') {
    super();
  }
  start(): void {}
  async register(dir: string, name: string, value: string, sameOwner: (existing: string) => boolean): Promise<'ok' | 'taken' | 'pending'> {
    const k = `${dir}/${name}`;
    const old = this.keys.get(k);
    if (old && old.owner !== this.owner && !sameOwner(old.value)) return 'taken';
    this.keys.set(k, { value, owner: this.owner });
    this.watches.get(dir)?.set(name, value);
    return 'ok';
  }
  async unregister(dir: string, name: string): Promise<void> {
    this.keys.delete(`${dir}/${name}`);
    this.watches.get(dir)?.delete(name);
  }
  async services(): Promise<string[]> {
    return [];
  }
  watch(dir: string): DirectoryWatch {
    const w = new FakeWatch();
    this.watches.set(dir, w);
    return w;
  }
  async close(): Promise<void> {}
  setState(state: RegistryStatus['state']): void {
    this.status.state = state;
    this.emit('state', state);
  }
}

class FakeWatch extends EventEmitter implements DirectoryWatch {
  readonly entries = new Map<string, string>();
  synced = true;
  listings = 1;
  set(k: string, v: string): void {
    this.entries.set(k, v);
    this.emit('change');
  }
  delete(k: string): void {
    this.entries.delete(k);
    this.emit('change');
  }
  replace(all: Map<string, string>): void {
    this.entries.clear();
    for (const [k, v] of all) this.entries.set(k, v);
    this.emit('change');
  }
  stop(): void {}
}

const offer = (instance: string, port = 7001) => ({ service: 'redis', instance, port, priority: 0, weight: 0, txt: { hostprobe: '5390' } });
const tick = () => new Promise((r) => setTimeout(r, 5));

test('registrar: an instance name another owner holds is renamed; our own earlier one (same host) is taken back', async () => {
  const reg = new MemoryRegistry();
  reg.keys.set('redis/redis%40db1', { value: encodeRecord({ ...offer('redis@db1'), host: 'other', addresses: ['10.0.0.9'] }), owner: 'them' });
  reg.keys.set('redis/redis%40db2', { value: encodeRecord({ ...offer('redis@db2', 40000), host: 'db2', addresses: ['10.0.0.2'] }), owner: 'my-last-life' });
  const [x, y, z] = [{}, {}, {}];
  const a = new Registrar(reg, { hostName: () => 'db1', addresses: () => ['10.0.0.1'] });
  a.offer(x, offer('redis@db1'));
  const b = new Registrar(reg, { hostName: () => 'db2', addresses: () => ['10.0.0.2'] });
  b.offer(y, offer('redis@db2'));
  await tick();
  assert.equal(a.instanceOf(x)!.instance, 'redis@db1 (2)');
  assert.equal(b.instanceOf(y)!.instance, 'redis@db2');
  assert.equal(reg.keys.get('redis/redis%40db2')!.owner, 'me');
  // two advertisements of one process never share a name
  a.offer(z, offer('redis@db1', 7002));
  await tick();
  assert.equal(a.instanceOf(z)!.instance, 'redis@db1 (3)');
  await a.withdraw(x, 'target down');
  assert.ok(!reg.keys.has('redis/redis%40db1%20(2)'));
  await a.withdrawAll('shutdown');
  assert.deepEqual([...reg.keys.keys()].filter((k) => k.includes('db1') && reg.keys.get(k)!.owner === 'me'), []);
});

test('registrar: no address yet (loopback only) is pending, never a loopback registration', async () => {
  const reg = new MemoryRegistry();
  let addresses: string[] = [];
  const r = new Registrar(reg, { hostName: () => 'h', addresses: () => addresses });
  const x = {};
  const states: string[] = [];
  r.on('state', (_s, _i, state) => states.push(state));
  r.offer(x, offer('redis@h'));
  await tick();
  assert.equal(reg.keys.size, 0);
  assert.deepEqual(states, ['pending']);
  addresses = ['10.0.0.7'];
  r.refresh();
  await tick();
  const rec = decodeRecord(reg.keys.get('redis/redis%40h')!.value);
  assert.ok(typeof rec !== 'string' && rec.addresses[0] === '10.0.0.7');
});

test('source: a burst is one update; foreign values are ignored once; an empty listing after an outage waits one TTL', async () => {
  const reg = new MemoryRegistry();
  const src = new RegistrySource(reg, 'redis', { named: true, emptyGraceMs: 60, coalesceMs: [5, 10] });
  const sets: EndpointSpec[][] = [];
  const ignored: string[] = [];
  src.on('endpoints', (s: EndpointSpec[]) => sets.push(s));
  src.on('ignored', (k: string) => ignored.push(k));
  await src.start();
  const w = reg.watches.get('redis')!;
  for (let i = 0; i < 20; i++) w.set(`r${i}`, encodeRecord({ ...offer(`r${i}`), host: `h${i}`, addresses: [`10.0.0.${i + 1}`] }));
  w.set('junk', 'not json');
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(sets.length, 1, 'one update for the burst');
  assert.equal(sets[0]!.length, 20);
  assert.equal(sets[0]![0]!.named, true);
  assert.equal(sets[0]![0]!.source, 'registry');
  w.set('r0', encodeRecord({ ...offer('r0', 7009), host: 'h0', addresses: ['10.0.0.1'] }));
  await new Promise((r) => setTimeout(r, 40));
  assert.deepEqual(ignored, ['junk'], 'said once');
  // the registry goes away and comes back empty (its data lost): the last set stays one TTL
  reg.setState('reconnecting');
  reg.setState('connected');
  w.replace(new Map());
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(sets.at(-1)!.length, 20);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(sets.at(-1)!.length, 0);
  await src.stop();
});
