import assert from 'node:assert/strict';
import { test } from 'node:test';
import { saslprep } from './saslprep.js';

test('SASLprep as PostgreSQL applies it: RFC 4013 §3 examples; ASCII and failures left as they are', () => {
  assert.equal(saslprep('I\u00ADX'), 'IX'); // soft hyphen mapped to nothing
  assert.equal(saslprep('user'), 'user');
  assert.equal(saslprep('USER'), 'USER');
  assert.equal(saslprep('\u00AA'), 'a'); // NFKC
  assert.equal(saslprep('\u2168'), 'IX'); // NFKC
  assert.equal(saslprep('p\u00E4ss\u00A0word'), 'p\u00E4ss word'); // non-ASCII space → space
  assert.equal(saslprep('pa\u0308ss'), 'p\u00E4ss'); // combining sequence composed
  // PostgreSQL uses pure ASCII as it is, even the control characters RFC 4013 prohibits
  assert.equal(saslprep('a\u0007b'), 'a\u0007b');
  // prohibited (a non-ASCII control character), bidi violation, empty after mapping: the password as it is
  assert.equal(saslprep('\u00E4\u0085\u00AA'), '\u00E4\u0085\u00AA');
  assert.equal(saslprep('\u0627\u0031'), '\u0627\u0031'); // RandALCat not last
  assert.equal(saslprep('\u0627a\u0627'), '\u0627a\u0627'); // RandALCat with LCat
  assert.equal(saslprep('\u0627\u0031\u0628'), '\u0627\u0031\u0628'); // fine, and unchanged by NFKC
  assert.equal(saslprep('\u00AD'), '\u00AD');
});
