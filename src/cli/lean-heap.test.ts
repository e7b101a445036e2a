// The heap flags the `ambassador` command sets, and that a user's own flags win, whether given
// on node's command line or in NODE_OPTIONS (how most users reach node behind a command).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leanHeapFlags } from './lean-heap.js';

test('by default: --optimize-for-size and a young generation that does not grow', () => {
  assert.deepEqual(leanHeapFlags([]), ['--optimize-for-size', '--semi-space-growth-factor=1']);
});

test("the user's flags win, in either spelling, negated or with a value", () => {
  assert.deepEqual(leanHeapFlags(['--no-optimize-for-size']), ['--semi-space-growth-factor=1']);
  assert.deepEqual(leanHeapFlags(['--optimize_for_size']), ['--semi-space-growth-factor=1']);
  assert.deepEqual(leanHeapFlags(['--min_semi_space_size=2', '--no-optimize-for-size']), []);
  assert.deepEqual(leanHeapFlags(['--expose-gc']), ['--optimize-for-size', '--semi-space-growth-factor=1']);
});

test('a young-generation size given by the user is a heap of their choice: neither flag is set', () => {
  assert.deepEqual(leanHeapFlags(['--max-semi-space-size=4']), []);
  assert.deepEqual(leanHeapFlags(['--semi-space-growth-factor=2']), []);
  assert.deepEqual(leanHeapFlags(['--max-semi-space-size=4', '--optimize-for-size']), [], 'their optimize-for-size stays theirs');
});
