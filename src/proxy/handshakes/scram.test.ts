import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ScramClient, ScramError, ScramKeyCache } from './scram.js';

// RFC 7677 §3: user "user", password "pencil".
const NONCE = 'rOprNGfwEbeRWgbNEkqO';
const SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';

test('SCRAM-SHA-256: the exchange of RFC 7677 §3, byte for byte, and the server signature checked', async () => {
  const c = new ScramClient(new ScramKeyCache('pencil'), { nonce: NONCE, user: 'user' });
  assert.equal(c.firstMessage().toString(), 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
  const final = await c.finalMessage(Buffer.from(SERVER_FIRST));
  assert.equal(final.toString(), 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=');
  c.verifyServerFinal(Buffer.from('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='));
  // a server that does not know the keys cannot forge the signature
  assert.throws(() => c.verifyServerFinal(Buffer.from('v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')), /signature is wrong/);
  assert.throws(() => c.verifyServerFinal(Buffer.from('e=invalid-proof')), /server error: invalid-proof/);
});

test('SCRAM: the client nonce must be extended; extensions, odd iteration counts and empty salts are refused', async () => {
  const keys = new ScramKeyCache('pencil');
  const bad = [
    'r=someoneElse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
    `r=${NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`,
    `m=ext,r=${NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`,
    `r=${NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0`,
    `r=${NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999`,
    `r=${NONCE}x,s=,i=4096`,
    `r=${NONCE}x,i=4096`,
  ];
  for (const b of bad) {
    await assert.rejects(new ScramClient(keys, { nonce: NONCE }).finalMessage(Buffer.from(b)), ScramError, b);
  }
});

test('SCRAM keys are derived once per salt and iteration count (PBKDF2 once, not per login), bounded', async () => {
  const keys = new ScramKeyCache('pencil', 2);
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
  const a = keys.get(salt, 4096);
  assert.equal(keys.get(salt, 4096), a, 'the same derivation, not a second one');
  assert.notEqual(keys.get(salt, 4097), a);
  keys.get(Buffer.from('other'), 4096); // third entry: the oldest goes
  assert.notEqual(keys.get(salt, 4096), a);
  // the same keys either way
  assert.deepEqual(await keys.get(salt, 4096), await a);
});
