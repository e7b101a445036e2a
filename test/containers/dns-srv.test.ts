// compose/dns-srv under a real engine: dnsmasq from an image built from the repository (no
// package install at start, no network needed), the app counts on redis-old; the SRV record is
// pointed at redis-new and dnsmasq restarted, and within the TTL the app counts on redis-new.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, docker, engineSummary, Example, log, ok, skip, waitFor } from './kit.js';

describe('compose/dns-srv under a real engine', { skip }, () => {
  const ex = new Example('dns-srv');
  before(async () => {
    await buildImage();
    const t = Date.now();
    await ex.ok('build', 'dnsmasq');
    log(`dnsmasq image built from compose/dns-srv/Dockerfile in ${Date.now() - t} ms`);
    log(`up in ${await ex.up()} ms`);
  });
  after(async () => {
    if (process.exitCode) console.log(engineSummary());
    log(`down in ${await ex.down()} ms`);
  });

  const visits = async (s: string) => Number((await docker('exec', await ex.container(s), 'redis-cli', '-p', '6380', 'get', 'visits')).out.trim()) || 0;

  test('dnsmasq starts at once, offline; the app counts on redis-old', async () => {
    await waitFor('redis-old counts', async () => (await visits('redis-old')) >= 2, 40_000);
    assert.equal(await visits('redis-new'), 0);
    const logs = (await ex.logs('dnsmasq')).join('\n');
    assert.match(logs, /started/);
    assert.doesNotMatch(logs, /apk|fetch/);
  });

  test('migration: the SRV record points at redis-new, restart dnsmasq; new connections go there', async () => {
    const conf = join(ex.dir, 'dnsmasq.conf');
    writeFileSync(conf, readFileSync(conf, 'utf8').replace('redis-old.svc.internal,6380', 'redis-new.svc.internal,6380'));
    const t = Date.now();
    await ex.ok('restart', 'dnsmasq');
    await waitFor('redis-new counts', async () => (await visits('redis-new')) >= 2, 30_000);
    log(`migration: app counting on redis-new ${Date.now() - t} ms after restart dnsmasq`);
    const old = await visits('redis-old');
    await new Promise((r) => setTimeout(r, 5000));
    assert.equal(await visits('redis-old'), old, 'nothing goes to redis-old any more');
    const rec = await ex.records('app-ambassador');
    assert.ok(rec.some((r) => r.msg === 'endpoint up' && String(r.address).startsWith('172.28.0.11')), 'endpoint redis-new up');
    void ok;
  });
});
