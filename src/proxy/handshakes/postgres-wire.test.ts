import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seeded } from '../../testing/tcp-kit.js';
import {
  CANCEL_REQUEST_CODE, errorResponse, MAX_STARTUP_PACKET, paramText, PgWireError, protocolVersion, readErrorFields,
  readInitialPacket, readMessage, readSaslMechanisms, sslRequest, startupMessage,
} from './postgres-wire.js';

const V30 = protocolVersion(3, 0);

test('startup message: read and re-encoded byte for byte, whatever the encoding of its values', () => {
  // application_name in Latin-1 (0xe9), not UTF-8: kept as the client sent it.
  const params: Array<[string, string]> = [['user', 'root'], ['database', 'appdb'], ['application_name', 'caf\xe9'], ['options', '-c search_path=x']];
  const bytes = startupMessage(V30, params);
  assert.equal(bytes.readInt32BE(0), bytes.length);
  const read = readInitialPacket(Buffer.concat([bytes, Buffer.from('rest')]))!;
  assert.equal(read.length, bytes.length);
  assert.deepEqual(read.packet, { kind: 'startup', version: V30, params });
  assert.deepEqual(startupMessage(V30, params), bytes);
  if (read.packet.kind === 'startup') assert.equal(paramText(read.packet.params, 'database'), 'appdb');
  // incomplete: wait for more
  assert.equal(readInitialPacket(bytes.subarray(0, 5)), undefined);
  assert.equal(readInitialPacket(bytes.subarray(0, bytes.length - 1)), undefined);
});

test('SSLRequest, GSSENCRequest and CancelRequest (3.0 and the longer keys of 3.2)', () => {
  assert.deepEqual(readInitialPacket(sslRequest())?.packet, { kind: 'ssl' });
  const gss = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
  assert.deepEqual(readInitialPacket(gss)?.packet, { kind: 'gssenc' });
  for (const keyLength of [8, 4 + 32]) {
    const cancel = Buffer.alloc(8 + keyLength);
    cancel.writeInt32BE(cancel.length, 0);
    cancel.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
    for (let i = 8; i < cancel.length; i++) cancel[i] = i;
    const p = readInitialPacket(cancel)!.packet;
    assert.equal(p.kind, 'cancel');
    if (p.kind === 'cancel') {
      assert.deepEqual(p.key, cancel.subarray(8));
      assert.deepEqual(p.raw, cancel);
    }
  }
});

test('bad first packets are refused with a PgWireError that shows no byte of them', () => {
  const bad: Array<[Buffer, RegExp]> = [
    [Buffer.from([0, 0, 0, 4, 0, 3, 0, 0]), /invalid length/],
    [Buffer.from([0, 0, 0x30, 0x00, 0, 3, 0, 0]), /invalid length/], // 12288 > 10000
    [Buffer.from([0x16, 3, 1, 0, 0xa5, 1, 0, 0]), /started TLS directly/],
    [Buffer.from('GET / HTTP/1.1\r\n'), /invalid length/],
    [Buffer.concat([Buffer.from([0, 0, 0, 13, 0, 3, 0, 0]), Buffer.from('user\0')]), /terminator/], // no value
    [Buffer.concat([Buffer.from([0, 0, 0, 16, 0, 3, 0, 0]), Buffer.from('user\0ab\0x')]), /terminator/], // no final NUL
    [Buffer.from([0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 1]), /invalid length of SSL/],
    [Buffer.from([0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1]), /invalid length of cancel/],
  ];
  for (const [b, why] of bad) assert.throws(() => readInitialPacket(b), (e: Error) => e instanceof PgWireError && why.test(e.message), b.toString('hex'));
  assert.ok(MAX_STARTUP_PACKET === 10_000);
});

test('fuzz: random first packets either parse, wait for more, or throw PgWireError; nothing else', () => {
  const rnd = seeded(30);
  const valid = startupMessage(V30, [['user', 'u'], ['database', 'd']]);
  let parsed = 0;
  let refused = 0;
  for (let i = 0; i < 20_000; i++) {
    let b: Buffer;
    if (i % 2 === 0) {
      b = Buffer.alloc(Math.floor(rnd() * 64));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      if (b.length >= 4 && rnd() < 0.7) b.writeInt32BE(Math.min(b.length, 8 + Math.floor(rnd() * 64)), 0);
    } else {
      // a valid packet with a few bytes flipped or cut
      b = Buffer.from(valid.subarray(0, Math.max(1, Math.floor(rnd() * (valid.length + 1)))));
      for (let k = 0; k < 3; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    }
    try {
      if (readInitialPacket(b)) parsed++;
    } catch (e) {
      assert.ok(e instanceof PgWireError, `case ${i}: ${(e as Error).stack}`);
      refused++;
    }
  }
  assert.ok(parsed > 100 && refused > 1000, `parsed ${parsed}, refused ${refused}`);
});

test('backend messages: framing, ErrorResponse fields, SASL mechanisms', () => {
  const e = errorResponse({ severity: 'FATAL', code: '28P01', message: 'ambassador: no', hint: 'h' });
  const m = readMessage(Buffer.concat([Buffer.from('x'), e]), 1)!;
  assert.equal(m.type, 'E');
  assert.equal(m.start, 1);
  assert.equal(m.next, 1 + e.length);
  const f = readErrorFields(m.body);
  assert.equal(f.get('S'), 'FATAL');
  assert.equal(f.get('V'), 'FATAL');
  assert.equal(f.get('C'), '28P01');
  assert.equal(f.get('M'), 'ambassador: no');
  assert.equal(f.get('H'), 'h');
  assert.equal(readMessage(e.subarray(0, 6), 0), undefined);
  assert.throws(() => readMessage(Buffer.from([0x52, 0, 0, 0, 2]), 0), PgWireError);
  assert.throws(() => readMessage(Buffer.from([0x52, 0x7f, 0, 0, 0]), 0), /invalid length/);
  const sasl = Buffer.from('\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0', 'latin1');
  assert.deepEqual(readSaslMechanisms(sasl), ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
});
