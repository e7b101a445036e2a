import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { sleep, waitFor } from '../testing/tcp-kit.js';
import type { EndpointSpec } from './source.js';
import { StaticSource } from './static.js';

test('--static: addresses as given; names resolved by the source and dialled by address', async () => {
  const src = new StaticSource([{ host: '10.0.0.5', port: 6380 }, { host: 'localhost', port: 6381 }], { refreshMs: 60_000 });
  let last: EndpointSpec[] = [];
  src.on('endpoints', (s: EndpointSpec[]) => (last = s));
  await src.start();
  assert.deepEqual(last.map((e) => e.host), ['10.0.0.5'], 'the name is not dialled before it resolves');
  await waitFor(() => last.length === 2, 3000, 'localhost resolved');
  const named = last.find((e) => e.label === 'localhost:6381')!;
  assert.equal(named.host, '127.0.0.1', 'IPv4 first');
  assert.equal(named.id, 'static:localhost:6381', 'identity is the name, so a new address is a move, not a new endpoint');
  await src.stop();
});

test('--static: a name whose lookup hangs holds at most one lookup; the others resolve and refresh', async () => {
  const calls = new Map<string, number>();
  const addr = (a: string): LookupAddress[] => [{ address: a, family: 4 }];
  let dbAddress = '10.0.0.7';
  const lookup = (name: string): Promise<LookupAddress[]> => {
    calls.set(name, (calls.get(name) ?? 0) + 1);
    if (name === 'stuck.example') return new Promise(() => {}); // never answers
    if (name === 'gone.example') return Promise.reject(Object.assign(new Error('not found'), { code: 'ENOTFOUND' }));
    return Promise.resolve(addr(dbAddress));
  };
  const src = new StaticSource([{ host: 'stuck.example', port: 1 }, { host: 'db.example', port: 2 }, { host: 'gone.example', port: 3 }],
    { refreshMs: 20, lookup });
  let last: EndpointSpec[] = [];
  const errors: string[] = [];
  src.on('endpoints', (s: EndpointSpec[]) => (last = s));
  src.on('resolve-error', (e: Error) => errors.push(e.message));
  await src.start();
  await waitFor(() => (calls.get('db.example') ?? 0) >= 5, 3000, 'refreshes');
  assert.equal(calls.get('stuck.example'), 1, 'one hanging lookup, never a second one');
  assert.deepEqual(last.map((e) => `${e.label}=${e.host}`), ['db.example:2=10.0.0.7']);
  assert.deepEqual(errors, ["--static: 'gone.example' does not resolve (ENOTFOUND)"], 'one warning per outage');
  dbAddress = '10.0.0.8'; // renumbered: followed at the next refresh
  await waitFor(() => last[0]?.host === '10.0.0.8', 3000, 'new address');
  await src.stop();
  await sleep(50);
});
