import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FALSE_ALARM, isHardFailure, LossEstimate, missesToConvict } from './evidence.js';

test('missesToConvict: few misses on a clean path, more as loss grows, within bounds', () => {
  assert.equal(missesToConvict(0, 2, 12), 2, 'no loss seen: the minimum');
  assert.equal(missesToConvict(0.003, 2, 12), 2);
  // 10 % loss each way is ~19 % of round trips: 0.19^7 < 1e-5 < 0.19^6
  assert.equal(missesToConvict(0.19, 2, 12), 7);
  // 30 % each way, ~51 % of round trips
  assert.equal(missesToConvict(0.51, 3, 25), 18);
  assert.equal(missesToConvict(0.51, 3, 10), 10, 'capped');
  assert.equal(missesToConvict(1, 3, 20), 20);
  for (const r of [0.05, 0.19, 0.3, 0.51]) {
    const n = missesToConvict(r, 1, 100);
    assert.ok(r ** n <= FALSE_ALARM && r ** (n - 1) > FALSE_ALARM, `rate ${r}: ${n} is the smallest enough`);
  }
});

test('LossEstimate learns the loss rate from answered streaks, and forgets it', () => {
  const e = new LossEstimate(0.01);
  // A deterministic 20 % loss: every fifth probe lost.
  for (let i = 0; i < 400; i++) e.answered(i % 4 === 3 ? 1 : 0);
  assert.ok(e.rate > 0.15 && e.rate < 0.4, `~20 % (${e.rate})`);
  for (let i = 0; i < 400; i++) e.answered(0);
  assert.ok(e.rate < 0.001, `clean again (${e.rate})`);
  // A streak of k misses then an answer counts as k losses and one success.
  const a = new LossEstimate(0, 0.5, 0.5);
  a.answered(1);
  assert.equal(a.rate, 0.25); // miss: 0 → 0.5, answer: 0.5 → 0.25
  // Loss that suddenly gets worse is believed within a few answers, not a minute.
  const j = new LossEstimate(0.01);
  for (let i = 0; i < 200; i++) j.answered(0);
  for (let i = 0; i < 5; i++) j.answered(1);
  assert.ok(j.rate > 0.35, `after five lossy answers: ${j.rate}`);
});

test('hard failures are the network answering, not silence', () => {
  for (const c of ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']) assert.equal(isHardFailure(c), true, c);
  for (const c of ['ETIMEDOUT', 'ECONNRESET', 'ESILENT', undefined]) assert.equal(isHardFailure(c), false, String(c));
});
