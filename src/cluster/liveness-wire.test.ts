import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeLiveness, encodeLiveness, HEADER_BYTES, MAX_PORTS, livenessPortOf, REPLY, REQUEST } from './liveness-wire.js';

const nonce = Buffer.from('0123456789abcdef', 'hex');

test('probe datagrams round-trip; a reply is as long as its request', () => {
  const req = encodeLiveness(REQUEST, nonce, [{ port: 6379 }, { port: 16379 }]);
  assert.equal(req.length, HEADER_BYTES + 8);
  const d = decodeLiveness(req)!;
  assert.equal(d.type, REQUEST);
  assert.ok(d.nonce.equals(nonce));
  assert.deepEqual(d.entries, [{ port: 6379, status: 0 }, { port: 16379, status: 0 }]);
  const rep = encodeLiveness(REPLY, d.nonce, [{ port: 6379, status: 1 }, { port: 16379, status: 0 }]);
  assert.equal(rep.length, req.length);
  assert.deepEqual(decodeLiveness(rep)!.entries, [{ port: 6379, status: 1 }, { port: 16379, status: 0 }]);
  assert.equal(encodeLiveness(REQUEST, nonce, Array.from({ length: 100 }, (_, i) => ({ port: i + 1 }))).length, HEADER_BYTES + 4 * MAX_PORTS);
});

test('anything but an exact probe message is rejected', () => {
  const req = encodeLiveness(REQUEST, nonce, [{ port: 1 }]);
  const bad = (mutate: (b: Buffer) => Buffer) => decodeLiveness(mutate(Buffer.from(req)));
  assert.equal(bad((b) => b.subarray(0, 10)), undefined, 'short');
  assert.equal(bad((b) => Buffer.concat([b, Buffer.alloc(1)])), undefined, 'trailing byte');
  assert.equal(bad((b) => (b.writeUInt32BE(0x41424344, 0), b)), undefined, 'magic');
  assert.equal(bad((b) => ((b[4] = 2), b)), undefined, 'version');
  assert.equal(bad((b) => ((b[5] = 3), b)), undefined, 'type');
  assert.equal(bad((b) => (b.writeUInt16BE(2, 6), b)), undefined, 'count vs length');
  assert.equal(bad((b) => ((b[HEADER_BYTES + 2] = 1), b)), undefined, 'a request carries no status');
  assert.equal(bad((b) => ((b[HEADER_BYTES + 3] = 1), b)), undefined, 'reserved byte');
  assert.equal(decodeLiveness(Buffer.alloc(0)), undefined);
});

test('livenessPortOf reads a valid TXT hostprobe port only', () => {
  assert.equal(livenessPortOf({ hostprobe: '40123' }), 40123);
  for (const v of ['0', '65536', '12a', '', ' 1', '-1']) assert.equal(livenessPortOf({ hostprobe: v }), undefined, JSON.stringify(v));
  assert.equal(livenessPortOf({}), undefined);
});
