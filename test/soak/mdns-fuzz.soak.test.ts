// Long mDNS fuzz run (not in CI). Skips unless SOAK=1; see test/soak/README.md.
//   SOAK=1 SOAK_SEEDS=10 SOAK_CASES=200000 node scripts/test.mjs soak/mdns-fuzz
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzzInProcess } from '../robustness/fuzz-harness.js';

const soak = process.env.SOAK === '1' ? false : 'soak run: set SOAK=1 (see test/soak/README.md)';
const SEEDS = Number(process.env.SOAK_SEEDS ?? 10);
const CASES = Number(process.env.SOAK_CASES ?? 200_000);
const FIRST = Number(process.env.SOAK_FIRST_SEED ?? 1);

test(`mDNS fuzz soak: ${SEEDS} seeds × ${CASES} cases`, { skip: soak, timeout: 24 * 3600_000 }, async () => {
  let total = 0;
  let malformed = 0;
  for (let s = FIRST; s < FIRST + SEEDS; s++) {
    const r = await fuzzInProcess(s, CASES);
    total += r.cases;
    malformed += r.malformed;
    assert.deepEqual(r.handlerErrors, [], `seed ${s}: exceptions escaped a handler`);
    assert.deepEqual(r.violations, [], `seed ${s}: reproduce with FUZZ_SEED=${s} FUZZ_CASES=${CASES}`);
  }
  console.log(`# soak: ${total} cases over ${SEEDS} seeds, ${malformed} malformed, no crash, no violation`);
});
