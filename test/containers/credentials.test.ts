// compose/credentials under a real engine: two apps that send no password each count on the
// Redis of their own environment; the ambassadors authenticated with their own secrets.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, counts, docker, engineSummary, Example, log, skip, waitFor } from './kit.js';

describe('compose/credentials under a real engine', { skip }, () => {
  const ex = new Example('credentials');
  before(async () => {
    await buildImage();
    log(`up in ${await ex.up()} ms`);
  });
  after(async () => {
    if (process.exitCode) console.log(engineSummary());
    log(`down in ${await ex.down()} ms`);
  });

  /** redis-cli inside a Redis container, with that Redis's own password. */
  const cli = async (service: string, db: number, ...args: string[]) =>
    (await docker('exec', await ex.container(service), 'sh', '-c',
      `redis-cli -p 6380 -a "$(cat /run/secrets/redis)" --no-auth-warning -n ${db} ${args.join(' ')}`)).out.trim();

  test('both apps count, no NOAUTH or other Redis error', async () => {
    for (const app of ['app-staging', 'app-production']) {
      await waitFor(`${app} counts to 3`, async () => counts(await ex.logs(app)).includes(3), 40_000);
      const errors = (await ex.logs(app)).filter((l) => /NOAUTH|ERR|WRONGPASS/.test(l));
      assert.deepEqual(errors, [], `${app}: ${errors.join(' | ')}`);
    }
  });

  test('each environment\'s counter is in its own Redis and database only', async () => {
    assert.ok(Number(await cli('redis-staging', 0, 'get', 'staging-visits')) >= 3);
    assert.ok(Number(await cli('redis-production', 1, 'get', 'production-visits')) >= 3);
    assert.equal(await cli('redis-staging', 0, 'exists', 'production-visits'), '0');
    assert.equal(await cli('redis-staging', 1, 'dbsize'), '0');
    assert.equal(await cli('redis-production', 0, 'dbsize'), '0');
    assert.equal(await cli('redis-production', 1, 'exists', 'staging-visits'), '0');
  });

  test('the passwords appear in no log and no /peers', async () => {
    for (const env of ['staging', 'production']) {
      const pw = readFileSync(join(ex.dir, 'secrets', `redis-${env}.txt`), 'utf8').trim().split(/\s+/).pop()!;
      for (const s of [`app-${env}-ambassador`, `redis-${env}-ambassador`]) {
        assert.ok(!(await ex.logs(s)).join('\n').includes(pw), `${s} logs`);
      }
      assert.ok(!(await ex.admin(`app-${env}-ambassador`, '/peers')).body.includes(pw));
    }
  });

  test('restart redis-staging: app-staging counts again, its ambassadors untouched', async () => {
    const since = new Date();
    await ex.ok('restart', 'redis-staging');
    await waitFor('app-staging counts again', async () => counts(await ex.logs('app-staging', since)).length >= 2, 30_000);
    assert.equal(await ex.inspect('redis-staging-ambassador', '{{.RestartCount}} {{.State.Running}}'), '0 true');
  });
});
