// compose/discovery under a real engine: the app's INCR on localhost:6379 reaches Redis in
// another pod, the sidecars turn healthy, a goodbye takes Redis out of the app's view and a
// restart of its ambassador brings it back; then Redis itself is stopped and started,
// restarted, and recreated, and the app keeps counting with no manual step (the pod layout:
// the ambassador never leaves the network), and so does a recreated app.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildImage, counts, engineSummary, Example, log, skip, waitFor } from './kit.js';

describe('compose/discovery under a real engine', { skip }, () => {
  const ex = new Example('discovery');
  let t0 = 0;
  before(async () => {
    await buildImage();
    t0 = Date.now();
    log(`up in ${await ex.up()} ms`);
  });
  after(async () => {
    if (process.exitCode) console.log(engineSummary());
    log(`down in ${await ex.down()} ms`);
  });

  /** The app counts on after `since` (its own INCR through both ambassadors succeeds). */
  const countsAfter = (since: Date, n = 2) => waitFor(`app counts ${n} times after ${since.toISOString()}`,
    async () => { const c = counts(await ex.logs('app', since)); return c.length >= n && c; }, 30_000);

  test('the app\'s INCR on localhost:6379 counts up through the ambassadors', async () => {
    const c = await waitFor('app counts to 3', async () => counts(await ex.logs('app')).includes(3), 30_000);
    assert.ok(c);
    log(`app's third INCR ${Date.now() - t0} ms after up`);
    const peers = JSON.parse((await ex.admin('app-ambassador', '/peers')).body);
    const ep = peers.clusters[0].endpoints[0];
    assert.equal(ep.port, 6380, 'Redis found on its real port');
    assert.equal(ep.state, 'up');
  });

  test('both sidecars turn healthy (HEALTHCHECK on /healthz)', async () => {
    for (const s of ['redis-ambassador', 'app-ambassador']) {
      await waitFor(`${s} healthy`, async () => (await ex.inspect(s, '{{.State.Health.Status}}')) === 'healthy', 40_000, 1000);
    }
  });

  test('stop redis-ambassador: goodbye, exit 0, the app fails; start: it counts again', async () => {
    const since = new Date();
    await ex.ok('stop', 'redis-ambassador');
    assert.equal(await ex.inspect('redis-ambassador', '{{.State.ExitCode}}'), '0');
    const rec = await ex.records('app-ambassador', since);
    assert.ok(rec.some((r) => r.msg === 'endpoint down' && r.reason === 'goodbye'), 'goodbye seen by the app\'s ambassador');
    await waitFor('app fails', async () => (await ex.logs('app', since)).some((l) => /Connection reset|closed|Error|refused/i.test(l) || l === ''), 20_000);
    const back = new Date();
    await ex.ok('start', 'redis-ambassador');
    await countsAfter(back);
  });

  for (const [op, run] of [
    ['stop redis && start redis', async () => { await ex.ok('stop', 'redis'); await ex.ok('start', 'redis'); }],
    ['restart redis', async () => { await ex.ok('restart', 'redis'); }],
    ['up --force-recreate redis', async () => { await ex.recreate('redis'); }],
  ] as const) {
    test(`${op}: the app counts again with no manual step, redis-ambassador stays up and healthy`, async () => {
      const id = await ex.container('redis-ambassador');
      const t = Date.now();
      const since = new Date();
      await run();
      const ran = Date.now() - t;
      const c = await countsAfter(since);
      log(`${op}: command ${ran} ms, app counting again ${Date.now() - t} ms after it began (${c.slice(0, 3).join(', ')}…)`);
      assert.equal(await ex.container('redis-ambassador'), id, 'same sidecar container');
      assert.equal(await ex.inspect('redis-ambassador', '{{.RestartCount}} {{.State.Running}}'), '0 true');
      const h = await ex.admin('redis-ambassador', '/healthz');
      assert.equal(h.status, 200, h.body);
      // Withdrawn while Redis was down (unless it was back before two health checks failed), announced again now.
      const adv = JSON.parse((await ex.admin('redis-ambassador', '/peers')).body).advertisements[0];
      assert.equal(adv.state, 'announced');
    });
  }

  test('up --force-recreate app: the new app container counts through the same ambassador', async () => {
    const since = new Date();
    await ex.recreate('app');
    await countsAfter(since);
    assert.equal(await ex.inspect('app-ambassador', '{{.RestartCount}} {{.State.Running}}'), '0 true');
  });

  test('down is fast: every container exits on SIGTERM', async () => {
    const t = Date.now();
    await ex.ok('stop', '-t', '10');
    const ms = Date.now() - t;
    log(`stop of all ${(await ex.compose('ps', '-q')).out.trim().split('\n').length} containers: ${ms} ms`);
    assert.ok(ms < 8000, `stop took ${ms} ms (a container ignored SIGTERM and waited for the kill)`);
  });
});
