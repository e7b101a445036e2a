import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePacket, encodePacket, MalformedPacketError, recordLength } from './codec.js';
import { decodeTxt, encodeTxt, serviceType } from './records.js';

test('QU bit survives an encode/decode round trip (dns-packet alone loses it)', () => {
  const buf = encodePacket({ type: 'query', questions: [{ name: 'a.local', type: 'ANY', qu: true }, { name: 'b.local', type: 'A' }] });
  const p = decodePacket(buf);
  assert.deepEqual(p.questions, [{ name: 'a.local', type: 'ANY', qu: true }, { name: 'b.local', type: 'A' }]);
});

test('responses carry the authoritative bit, flush bits and TTL 0', () => {
  const buf = encodePacket({
    type: 'response',
    answers: [{ name: 'h.local', type: 'A', ttl: 0, flush: true, data: '10.0.0.1' }],
  });
  assert.ok(buf.readUInt16BE(2) & (1 << 10));
  const p = decodePacket(buf);
  assert.equal(p.type, 'response');
  assert.deepEqual(p.answers[0], { name: 'h.local', type: 'A', class: 'IN', ttl: 0, flush: true, data: '10.0.0.1' });
});

test('malformed packets raise MalformedPacketError', () => {
  const good = encodePacket({ type: 'response', answers: [{ name: 'h.local', type: 'A', ttl: 5, data: '10.0.0.1' }] });
  const cases: Buffer[] = [
    Buffer.alloc(5),
    good.subarray(0, good.length - 2), // truncated rdata
    (() => { const b = Buffer.from(good); b.writeUInt16BE(200, 6); return b; })(), // count larger than packet
    (() => { const b = Buffer.from(good); b[12] = 0xc0; b[13] = 12; return b; })(), // pointer loop to itself
    (() => { const b = Buffer.from(good); b[12] = 0x50; return b; })(), // label type 01
    (() => { const b = Buffer.from(good); b[2] = 0x78; return b; })(), // opcode 15
  ];
  for (const c of cases) assert.throws(() => decodePacket(c), MalformedPacketError);
});

test('DNS-SD TXT: empty TXT is one empty string; keys are case-insensitive, first wins', () => {
  assert.deepEqual(encodeTxt({}), [Buffer.alloc(0)]);
  assert.deepEqual(decodeTxt([Buffer.from('Env=prod'), Buffer.from('env=staging'), Buffer.from('flag'), Buffer.alloc(0)]), {
    env: 'prod', flag: '',
  });
});

test('service type spelling', () => {
  assert.equal(serviceType('redis'), '_redis._tcp.local');
  assert.equal(serviceType('_redis._tcp'), '_redis._tcp.local');
  assert.equal(serviceType('_redis._tcp.local'), '_redis._tcp.local');
});

test('names are compressed (RFC 1035 §4.1.4) and decode back to the same records', () => {
  const full = 'redis@db._redis._tcp.local';
  const p = {
    type: 'response' as const,
    answers: [
      { name: '_redis._tcp.local', type: 'PTR', ttl: 4500, data: full },
      { name: full, type: 'SRV', ttl: 120, flush: true, data: { priority: 1, weight: 2, port: 6379, target: 'db.local' } },
      { name: full, type: 'TXT', ttl: 120, flush: true, data: [Buffer.from('env=prod')] },
      { name: 'db.local', type: 'A', ttl: 120, flush: true, data: '198.18.0.1' },
      { name: 'db.local', type: 'AAAA', ttl: 120, flush: true, data: 'fe80::1' },
    ],
  };
  const buf = encodePacket(p);
  const back = decodePacket(buf);
  assert.deepEqual(back.answers.map((a) => [a.name, a.type, a.ttl, !!a.flush]), p.answers.map((a) => [a.name, a.type, a.ttl, !!a.flush]));
  assert.equal(back.answers[0]!.data, full);
  assert.deepEqual(back.answers[1]!.data, { priority: 1, weight: 2, port: 6379, target: 'db.local' });
  assert.deepEqual(back.answers[2]!.data, [Buffer.from('env=prod')]);
  assert.equal(back.answers[4]!.data, 'fe80::1');
  const uncompressed = p.answers.reduce((n, a) => n + recordLength(a), 12);
  assert.ok(buf.length < uncompressed * 0.7, `${buf.length} bytes vs ${uncompressed} uncompressed`);
  // An empty TXT is one zero-length string (RFC 6763 §6.1): rdlength 1, byte 0.
  const empty = encodePacket({ type: 'response', answers: [{ name: 'x.local', type: 'TXT', ttl: 1, data: [Buffer.alloc(0)] }] });
  assert.deepEqual([...empty.subarray(empty.length - 3)], [0, 1, 0]);
});

test('an EDNS option in an OPT record: written after the additionals, read back as its code, not as a record', () => {
  const buf = encodePacket({ type: 'query', questions: [{ name: 'host.local', type: 'A' }, { name: 'host.local', type: 'AAAA' }], optionCode: 65_353 });
  assert.equal(buf.readUInt16BE(0), 0, 'ID 0');
  assert.equal(buf.readUInt16BE(10), 1, 'one additional: the OPT record');
  const p = decodePacket(buf);
  assert.deepEqual(p.optionCodes, [65_353]);
  assert.deepEqual(p.additionals, []);
  assert.equal(p.questions.length, 2);
  assert.equal(decodePacket(encodePacket({ type: 'query', questions: [{ name: 'host.local', type: 'A' }] })).optionCodes, undefined);
});
