// The heap the `ambassador` command chooses, and that a user's own choice wins, whether given on
// node's command line or in NODE_OPTIONS (how most users reach node behind a command).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { heapAsked, heapChoice } from './heap.js';

const LEAN = ['--optimize-for-size', '--semi-space-growth-factor=1'];
const RESTART = { restartWith: ['--max-semi-space-size=4'], flags: [] };

test('by default: a restart with a young generation of up to 4 MB, where node can restart itself', () => {
  assert.deepEqual(heapChoice([], true), RESTART);
  assert.deepEqual(heapChoice(['--expose-gc', '--enable-source-maps'], true), RESTART);
  assert.deepEqual(heapChoice(['--no-optimize-for-size'], true), RESTART, 'not asking for size is asking for speed');
});

test('where it cannot (Node 20): the lean heap, set in place', () => {
  assert.deepEqual(heapChoice([], false), { restartWith: [], flags: LEAN });
  assert.deepEqual(heapChoice(['--expose-gc'], false), { restartWith: [], flags: LEAN });
  assert.deepEqual(heapChoice(['--no-optimize-for-size'], false), { restartWith: [], flags: ['--semi-space-growth-factor=1'] });
});

test('--optimize-for-size on node\'s command line asks for the lean heap: no restart', () => {
  assert.deepEqual(heapChoice(['--optimize-for-size'], true), { restartWith: [], flags: ['--semi-space-growth-factor=1'] });
  assert.deepEqual(heapChoice(['--optimize_for_size'], true), { restartWith: [], flags: ['--semi-space-growth-factor=1'] });
});

test('a young-generation size given by the user is a heap of their choice: no flag, no restart', () => {
  for (const canRestart of [true, false]) {
    assert.deepEqual(heapChoice(['--max-semi-space-size=4'], canRestart), { restartWith: [], flags: [] });
    assert.deepEqual(heapChoice(['--max_semi_space_size=1'], canRestart), { restartWith: [], flags: [] });
    assert.deepEqual(heapChoice(['--min-semi-space-size=2', '--no-optimize-for-size'], canRestart), { restartWith: [], flags: [] });
    assert.deepEqual(heapChoice(['--semi-space-growth-factor=2'], canRestart), { restartWith: [], flags: [] });
    assert.deepEqual(heapChoice(['--max-semi-space-size=4', '--optimize-for-size'], canRestart), { restartWith: [], flags: [] },
      'their optimize-for-size stays theirs');
  }
});

test('the restarted process sees its own flag and does not restart again', () => {
  const once = heapChoice([], true).restartWith;
  assert.deepEqual(heapChoice(once, true), { restartWith: [], flags: [] });
});

test('--heap lean (or AMBASSADOR_HEAP=lean) asks for the lean heap: no restart', () => {
  assert.deepEqual(heapChoice([], true, 'lean'), { restartWith: [], flags: LEAN });
  assert.deepEqual(heapChoice([], true, 'fast'), RESTART);
  assert.deepEqual(heapChoice(['--max-semi-space-size=8'], true, 'lean'), { restartWith: [], flags: [] }, 'node\'s own size still wins');
});

test('the heap asked for: the flag in either form, else the variable; a name yargs refuses is none', () => {
  assert.equal(heapAsked(['--connect', 'redis=6379', '--heap', 'lean'], {}), 'lean');
  assert.equal(heapAsked(['--heap=lean'], { AMBASSADOR_HEAP: 'fast' }), 'lean', 'the flag wins');
  assert.equal(heapAsked(['--connect', 'redis=6379'], { AMBASSADOR_HEAP: 'Lean ' }), 'lean');
  assert.equal(heapAsked([], {}), undefined);
  assert.equal(heapAsked(['--heap', 'tiny'], {}), undefined);
  assert.equal(heapAsked(['--', '--heap', 'lean'], {}), undefined, 'not after --');
});

test('with HAProxy as the data plane the default is lean: HAProxy carries the bytes', () => {
  assert.equal(heapAsked(['--data-plane', 'haproxy'], {}), 'lean');
  assert.equal(heapAsked(['--data-plane=haproxy'], {}), 'lean');
  assert.equal(heapAsked([], { AMBASSADOR_DATA_PLANE: 'haproxy' }), 'lean');
  assert.equal(heapAsked(['--data-plane', 'haproxy', '--heap', 'fast'], {}), 'fast', 'an explicit heap wins');
  assert.equal(heapAsked(['--data-plane', 'node'], {}), undefined);
});
