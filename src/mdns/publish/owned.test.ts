import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareRecordSets, nextHostName, nextInstanceName } from './owned.js';

test('conflict renames follow the Avahi/Apple conventions', () => {
  assert.equal(nextInstanceName('redis@db'), 'redis@db (2)');
  assert.equal(nextInstanceName('redis@db (2)'), 'redis@db (3)');
  assert.equal(nextHostName('db'), 'db-2');
  assert.equal(nextHostName('db-9'), 'db-10');
});

test('probe tiebreak compares type then rdata bytes (RFC 6762 §8.2)', () => {
  const a = [{ name: 'x', type: 'A', ttl: 1, data: '169.254.99.200' }];
  const b = [{ name: 'x', type: 'A', ttl: 1, data: '169.254.200.50' }];
  assert.ok(compareRecordSets(b, a) > 0);
  assert.ok(compareRecordSets(a, b) < 0);
  assert.equal(compareRecordSets(a, a), 0);
  const srv = [{ name: 'x', type: 'SRV', ttl: 1, data: { priority: 0, weight: 0, port: 1, target: 'h.local' } }];
  assert.ok(compareRecordSets(srv, a) > 0);
});

test('§8.2 tiebreak compares the raw rdata: the SRV with the later port wins even with a shorter target name', () => {
  const srv = (port: number, target: string) => ({ name: 'x._s._tcp.local', type: 'SRV', ttl: 120, data: { priority: 0, weight: 0, port, target } });
  assert.ok(compareRecordSets([srv(200, 'b.local')], [srv(100, 'a-much-longer-host-name.local')]) > 0);
  assert.ok(compareRecordSets([srv(100, 'a-much-longer-host-name.local')], [srv(200, 'b.local')]) < 0);
});
