import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { encodeCommand, encodeError, parseReply, RespProtocolError } from './resp.js';
import { classify, parseAuthFile } from './redis.js';

const b = (s: string) => Buffer.from(s, 'binary');

test('encodeCommand: array of bulk strings with byte lengths', () => {
  assert.equal(encodeCommand(['AUTH', 'pässword']).toString(), '*2\r\n$4\r\nAUTH\r\n$9\r\npässword\r\n');
  assert.equal(encodeCommand(['SELECT', '3']).toString(), '*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n');
});

test('encodeError: one line', () => {
  assert.equal(encodeError('ERR a\r\nb').toString(), '-ERR a b\r\n');
});

test('parseReply: every RESP2 type, and incomplete input', () => {
  assert.deepEqual(parseReply(b('+OK\r\n')), { reply: { type: 'simple', value: 'OK' }, next: 5 });
  assert.deepEqual(parseReply(b('-WRONGPASS nope\r\n'))?.reply, { type: 'error', value: 'WRONGPASS nope' });
  assert.deepEqual(parseReply(b(':42\r\n'))?.reply, { type: 'integer', value: 42 });
  assert.deepEqual(parseReply(b('$3\r\nabc\r\n'))?.reply, { type: 'bulk', value: Buffer.from('abc') });
  assert.deepEqual(parseReply(b('$-1\r\n'))?.reply, { type: 'bulk', value: null });
  const arr = parseReply(b('*2\r\n+a\r\n:1\r\n+rest'));
  assert.deepEqual(arr?.reply, { type: 'array', value: [{ type: 'simple', value: 'a' }, { type: 'integer', value: 1 }] });
  assert.equal(arr?.next, 12);
  for (const partial of ['', '+O', '+OK\r', '$3\r\nab', '*2\r\n+a\r\n']) assert.equal(parseReply(b(partial)), undefined, partial);
  // offset: two replies back to back
  const two = b('+OK\r\n+OK\r\n');
  const first = parseReply(two)!;
  assert.equal(parseReply(two, first.next)?.next, two.length);
});

test('parseReply: garbage and oversized replies are protocol errors, at once', () => {
  assert.throws(() => parseReply(b('HTTP/1.1 400 Bad Request\r\n')), RespProtocolError);
  assert.throws(() => parseReply(b('H')), RespProtocolError); // no need to wait for a line end
  assert.throws(() => parseReply(b('$99999999\r\n')), RespProtocolError);
  assert.throws(() => parseReply(b(':12x\r\n')), RespProtocolError);
  assert.throws(() => parseReply(b('$1\r\nab\r\n')), RespProtocolError);
  assert.throws(() => parseReply(Buffer.alloc(5000, 0x2b)), RespProtocolError);
});

test('parseAuthFile: password, user password, spaces, and errors that never show the content', () => {
  const p = parseAuthFile('s3cret\n', '/f');
  assert.equal(p.hasUser, false);
  assert.equal(p.authCommand().toString(), '*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n');
  const u = parseAuthFile('  app  my pass phrase \r\n\n', '/f');
  assert.equal(u.hasUser, true);
  assert.equal(u.authCommand().toString(), '*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$14\r\nmy pass phrase\r\n');
  assert.throws(() => parseAuthFile('\n\n', '/f'), /is empty/);
  try {
    parseAuthFile('topsecret1\ntopsecret2\n', '/f');
    assert.fail('should throw');
  } catch (err) {
    assert.match((err as Error).message, /2 lines/);
    assert.doesNotMatch((err as Error).message, /topsecret/);
  }
  // the object itself never prints its content
  assert.doesNotMatch(inspect(u, { showHidden: true, depth: 5 }), /pass phrase/);
  assert.doesNotMatch(JSON.stringify({ u }), /pass phrase/);
  assert.equal(u.redact('user app said my pass phrase'), 'user *** said ***');
});

test('classify: credential problems are final and not the endpoint\'s fault; the rest fails over', () => {
  const c = parseAuthFile('app pw', '/f');
  const wrong = classify('AUTH', 'WRONGPASS invalid username-password pair or user is disabled.', c);
  assert.equal(wrong.code, 'WRONGPASS');
  assert.equal(wrong.retry, false);
  assert.equal(wrong.blameEndpoint, false);
  const nopass = classify('AUTH', 'ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?', c);
  assert.equal(nopass.code, 'NOPASS');
  assert.match(nopass.message, /no password configured/);
  assert.equal(classify('AUTH', 'ERR invalid password', c).code, 'WRONGPASS'); // Redis < 6
  assert.equal(classify('AUTH', 'ERR Client sent AUTH, but no password is set', c).code, 'NOPASS'); // Redis < 6
  const loading = classify('AUTH', 'LOADING Redis is loading the dataset in memory', c);
  assert.equal(loading.code, 'LOADING');
  assert.equal(loading.retry, true);
  assert.equal(loading.blameEndpoint, true);
  assert.equal(classify('SELECT', 'ERR DB index is out of range', c, 99).code, 'EDBINDEX');
  assert.equal(classify('SELECT', "NOPERM this user has no permissions to run the 'select' command", c, 1).retry, false);
  // a server echoing the secret gets it redacted
  assert.doesNotMatch(classify('AUTH', 'ERR weird pw', c).message, /\bpw\b/);
});
