import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bindAccepts, dialledAddresses, formatAddressPort, isLinkLocal6, isLoopback, isUnspecified, normalizeAddress, orderAddresses,
  parseAddressPort, zoned,
} from './address.js';

test('address helpers: one spelling, loopback, unspecified, what a dial reaches, what a bind accepts', () => {
  assert.equal(normalizeAddress('FE80::1%eth0'), 'fe80::1');
  assert.equal(normalizeAddress('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(normalizeAddress('[fd00::1]'), 'fd00::1');
  assert.ok(isLoopback('127.3.4.5') && isLoopback('::1') && isLoopback('::ffff:127.0.0.1') && !isLoopback('10.0.0.1'));
  assert.ok(isUnspecified('0.0.0.0') && isUnspecified('::') && !isUnspecified('::1'));
  assert.deepEqual(dialledAddresses('localhost'), ['127.0.0.1', '::1']);
  assert.deepEqual(dialledAddresses('0.0.0.0'), ['127.0.0.1']);
  assert.deepEqual(dialledAddresses('::'), ['::1']);
  assert.deepEqual(dialledAddresses('db.internal'), []);
  const local = new Set(['10.0.0.1', 'fd00::1']);
  const isLocal = (a: string) => isLoopback(a) || local.has(a);
  assert.ok(bindAccepts('0.0.0.0', '127.9.9.9', isLocal), '0.0.0.0 takes all of 127/8');
  assert.ok(bindAccepts('0.0.0.0', '10.0.0.1', isLocal));
  assert.ok(!bindAccepts('0.0.0.0', '10.0.0.2', isLocal), 'not an address of this host');
  assert.ok(!bindAccepts('0.0.0.0', '::1', isLocal), '0.0.0.0 is IPv4 only');
  assert.ok(bindAccepts('::', '::1', isLocal) && bindAccepts('::', '10.0.0.1', isLocal), ':: is dual stack');
  assert.ok(bindAccepts('127.0.0.1', '127.0.0.1', isLocal) && !bindAccepts('127.0.0.1', '127.0.0.2', isLocal) && !bindAccepts('127.0.0.1', '10.0.0.1', isLocal));
  assert.deepEqual(parseAddressPort('[fd00::1]:6379'), { host: 'fd00::1', port: 6379 });
  assert.deepEqual(parseAddressPort('10.0.0.2:6379'), { host: '10.0.0.2', port: 6379 });
  assert.equal(parseAddressPort('fd00::1:6379'), undefined);
  assert.equal(parseAddressPort('x:99999'), undefined);
});

test('host:port with IPv6 brackets, zones kept; link-local IPv6 zoned, nothing else', () => {
  assert.equal(formatAddressPort('10.0.0.5', 6379), '10.0.0.5:6379');
  assert.equal(formatAddressPort('db.local', 6379), 'db.local:6379');
  assert.equal(formatAddressPort('fd00::1', 6379), '[fd00::1]:6379');
  assert.equal(formatAddressPort('fe80::1%eth0', 6379), '[fe80::1%eth0]:6379');
  assert.ok(isLinkLocal6('fe80::1') && isLinkLocal6('FEBF::1') && !isLinkLocal6('fec0::1') && !isLinkLocal6('fd00::1'));
  assert.equal(zoned('fe80::1', 'eth0'), 'fe80::1%eth0');
  assert.equal(zoned('fd00::1', 'eth0'), 'fd00::1');
  assert.equal(zoned('10.0.0.1', 'eth0'), '10.0.0.1');
});

test('a peer\'s addresses are ordered likeliest first: IPv4, IPv4 link-local, IPv6, IPv6 link-local', () => {
  assert.deepEqual(orderAddresses(['fe80::1%eth0', '2001:db8::5', '169.254.3.4', '10.0.0.9', 'fe80::1%eth0']),
    ['10.0.0.9', '169.254.3.4', '2001:db8::5', 'fe80::1%eth0']);
});
