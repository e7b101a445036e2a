import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRecord, encodeRecord, instanceFromKey, instanceKey } from './record.js';

const rec = { service: 'redis', instance: 'redis@db1', host: 'db1', addresses: ['198.18.1.1', 'fd00::1'], port: 6379, priority: 0, weight: 5, txt: { hostprobe: '5390', env: 'prod' } };

test('a registration round-trips through its JSON, with its schema version', () => {
  const text = encodeRecord(rec);
  assert.equal(JSON.parse(text).v, 1);
  assert.deepEqual(decodeRecord(text), { v: 1, ...rec });
  // fields added later are ignored, not refused
  assert.deepEqual(decodeRecord(JSON.stringify({ ...JSON.parse(text), region: 'eu' })), { v: 1, ...rec });
});

test('values that are not ours are refused with a reason, never thrown', () => {
  const bad: Array<[string, RegExp]> = [
    ['not json{', /not JSON/],
    ['[1,2]', /not a JSON object/],
    ['"text"', /not a JSON object/],
    [JSON.stringify({ ...rec }), /no schema version/],
    [JSON.stringify({ v: 2, ...rec }), /schema version 2/],
    [JSON.stringify({ v: 1, ...rec, port: 70000 }), /bad port/],
    [JSON.stringify({ v: 1, ...rec, addresses: ['db1.example'] }), /IP literals/],
    [JSON.stringify({ v: 1, ...rec, addresses: [] }), /addresses/],
    [JSON.stringify({ v: 1, ...rec, txt: { a: 1 } }), /bad txt/],
    [JSON.stringify({ v: 1, ...rec, service: 'Not A Service' }), /bad service/],
    [JSON.stringify({ v: 1, ...rec, priority: -1 }), /priority/],
  ];
  for (const [text, why] of bad) {
    const r = decodeRecord(text);
    assert.equal(typeof r, 'string', text);
    assert.match(r as string, why, text);
  }
});

test('instance names become one path segment (no /, never . or ..) and back', () => {
  for (const name of ['redis@db1', 'main db (2)', 'a/b', '.', '..', 'ünïcode']) {
    const k = instanceKey(name);
    assert.ok(!k.includes('/') && k !== '.' && k !== '..', k);
    assert.equal(instanceFromKey(k), name);
  }
});
