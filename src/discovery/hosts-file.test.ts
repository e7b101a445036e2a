import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHosts } from './hosts-file.js';

test('hosts file: names and aliases, both families, comments, file order, case and trailing dots', () => {
  const h = parseHosts([
    '127.0.0.1 localhost',
    '# 10.9.9.9 commented.test',
    '10.0.0.5   r1.svc.test r1   # replica one',
    'fd00::5\tR1.svc.test.',
    '10.0.0.6 r1.svc.test',
    '10.0.0.5 r1.svc.test',
    'not-an-address r2.svc.test',
    '10.0.0.7',
    '',
  ].join('\n'));
  assert.deepEqual(h.get('r1.svc.test'), ['10.0.0.5', 'fd00::5', '10.0.0.6']);
  assert.deepEqual(h.get('r1'), ['10.0.0.5']);
  assert.equal(h.get('commented.test'), undefined);
  assert.equal(h.get('r2.svc.test'), undefined);
  assert.deepEqual(h.get('localhost'), ['127.0.0.1']);
});
