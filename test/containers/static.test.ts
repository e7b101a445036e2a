// compose/static under a real engine: no multicast; the app counts on both Redis servers
// (least-conn), keeps working while one is stopped, and the stopped one comes back.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildImage, counts, docker, engineSummary, Example, log, skip, waitFor } from './kit.js';

describe('compose/static under a real engine', { skip }, () => {
  const ex = new Example('static');
  before(async () => {
    await buildImage();
    log(`up in ${await ex.up()} ms`);
  });
  after(async () => {
    if (process.exitCode) console.log(engineSummary());
    log(`down in ${await ex.down()} ms`);
  });

  const visits = async (s: string) => Number((await docker('exec', await ex.container(s), 'redis-cli', '-p', '6380', 'get', 'visits')).out.trim()) || 0;

  test('the app counts, and both Redis servers take requests', async () => {
    await waitFor('both Redis servers counted', async () => (await visits('redis-a')) >= 1 && (await visits('redis-b')) >= 1, 40_000);
    assert.ok(counts(await ex.logs('app')).length >= 2);
    const rec = await ex.records('app-ambassador');
    assert.ok(!rec.some((r) => String(r.msg).includes('mDNS started')), 'no multicast engine with --static only');
  });

  test('stop redis-a: the app keeps working on redis-b; start: redis-a is back', async () => {
    const since = new Date();
    await ex.ok('stop', 'redis-a');
    const b = await visits('redis-b');
    await waitFor('app counts on redis-b', async () => (await visits('redis-b')) >= b + 3, 30_000);
    const failed = (await ex.logs('app', since)).filter((l) => !/^\d+$/.test(l));
    assert.deepEqual(failed, [], 'no failed INCR while redis-a is down');
    await ex.ok('start', 'redis-a');
    const a = await visits('redis-a');
    await waitFor('redis-a back in the rotation', async () => (await visits('redis-a')) > a, 40_000);
  });
});
