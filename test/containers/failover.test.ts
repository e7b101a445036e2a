// compose/failover-and-load-balancing under a real engine: the client's requests rotate over
// three replicas; a graceful stop (goodbye) and a hard failure (kill) lose no request; the
// replicas come back into the rotation after `start`; restarting a replica leaves its
// ambassador on the network.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildImage, engineSummary, Example, log, skip, waitFor } from './kit.js';

describe('compose/failover-and-load-balancing under a real engine', { skip }, () => {
  const ex = new Example('failover-and-load-balancing');
  before(async () => {
    await buildImage();
    log(`up in ${await ex.up()} ms`);
  });
  after(async () => {
    if (process.exitCode) console.log(engineSummary());
    log(`down in ${await ex.down()} ms`);
  });

  const answers = async (since?: Date) => (await ex.logs('client', since)).filter((l) => l.startsWith('Hostname: ') || l === 'request failed');
  const replicas = (a: string[]) => new Set(a.filter((l) => l.startsWith('Hostname: ')).map((l) => l.slice('Hostname: '.length)));

  test('the client\'s requests rotate over api-1, api-2 and api-3', async () => {
    await waitFor('all three answer', async () => replicas(await answers()).size === 3, 40_000);
    const since = new Date();
    const six = await waitFor('six answers', async () => { const a = await answers(since); return a.length >= 6 && a; }, 20_000);
    log(`answers: ${six.slice(0, 6).map((l) => l.replace('Hostname: ', '')).join(' ')}`);
    assert.deepEqual(replicas(six.slice(0, 6)), new Set(['api-1', 'api-2', 'api-3']));
    assert.ok(!six.includes('request failed'));
  });

  test('stop api-2-ambassador (goodbye): api-2 leaves the rotation, no request fails', async () => {
    const since = new Date();
    await ex.ok('stop', 'api-2-ambassador');
    const rec = await ex.records('client-ambassador', since);
    assert.ok(rec.some((r) => r.msg === 'endpoint down' && r.endpoint === 'api-2' && r.reason === 'goodbye'), 'goodbye');
    const mark = new Date();
    const a = await waitFor('five answers', async () => { const x = await answers(mark); return x.length >= 5 && x; }, 20_000);
    assert.ok(!replicas(a).has('api-2'), a.join(' | '));
    assert.ok(!(await answers(since)).includes('request failed'));
  });

  // A request already forwarded to api-3 when it dies cannot be saved by a TCP proxy (its bytes
  // went to the dead process; HAProxy in mode tcp cannot either): at most that one, the first
  // answer after the kill, may fail. Every request that starts later must be answered: a connect
  // refused by the dead port is retried on api-1, so the ambassador never gives a client up.
  test('kill api-3 api-3-ambassador (hard failure): no new request fails, only api-1 answers', async () => {
    const since = new Date();
    await ex.ok('kill', 'api-3', 'api-3-ambassador');
    await waitFor('api-3 marked down', async () => (await ex.records('client-ambassador', since))
      .some((r) => r.msg === 'endpoint down' && r.endpoint === 'api-3'), 15_000);
    const mark = new Date();
    const a = await waitFor('four answers', async () => { const x = await answers(mark); return x.length >= 4 && x; }, 20_000);
    assert.deepEqual(replicas(a), new Set(['api-1']), a.join(' | '));
    const all = await answers(since);
    const failed = all.flatMap((l, i) => (l === 'request failed' ? [i] : []));
    if (failed.length) log(`the request in flight at the kill failed: ${all.join(' | ')}`);
    assert.ok(failed.length === 0 || (failed.length === 1 && failed[0] === 0), all.join(' | '));
    const gaveUp = (await ex.records('client-ambassador', since)).filter((r) => typeof r.msg === 'string' && r.msg.startsWith('client closed'));
    assert.deepEqual(gaveUp, [], 'the ambassador closed a client without an endpoint');
  });

  test('start api-3 api-3-ambassador api-2-ambassador: all three back in the rotation', async () => {
    const since = new Date();
    await ex.ok('start', 'api-3', 'api-3-ambassador', 'api-2-ambassador');
    await waitFor('all three again', async () => replicas(await answers(since)).size === 3, 30_000);
    const metrics = (await ex.admin('client-ambassador', '/metrics')).body;
    for (const n of ['api-1', 'api-2', 'api-3']) {
      assert.match(metrics, new RegExp(`^ambassador_connections_established_total\\{[^}]*endpoint="${n}"[^}]*\\} [1-9]`, 'm'));
    }
  });

  test('restart api-1: its ambassador stays on the network, api-1 answers again', async () => {
    const since = new Date();
    await ex.ok('restart', 'api-1');
    await waitFor('api-1 answers after its restart', async () => replicas(await answers(since)).has('api-1'), 30_000);
    assert.equal(await ex.inspect('api-1-ambassador', '{{.RestartCount}} {{.State.Running}}'), '0 true');
  });
});
