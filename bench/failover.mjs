#!/usr/bin/env node
// Failover and discovery timing (issue 7, section 2) on a network-namespace lab with real
// redis-server and the real CLI, default settings (host probes every 500 ms, connects raced after 250 ms):
//   discovery  advertiser start on host a → first successful request through the connector on c
//   sigterm    SIGTERM to a's advertiser → a's endpoint removed at c; failed new connections
//   kill9      kill -9 of a's advertiser and redis (the host dies) → detection at c; failures
//   linkcut    a's cable cut → detection at c; failures
// A bounded connect-per-request loop (a new connection every ~5 ms, SET + GET) runs on c during
// the failure scenarios. Needs `npx tsc -p tsconfig.test.json` (uses the test lab from .build/).
//
//   node bench/failover.mjs [--quick] [--rounds N] [--out bench/results/failover.json]
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, sh } from './lib/proc.mjs';
import { benchArgs } from './lib/args.mjs';
import { importTestLab } from './lib/test-lab.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

enterPrivateNetns(fileURLToPath(import.meta.url), 'bench failover', { MDNS_AMBASSADOR_TEST_ISOLATED: '1' });

const [{ Lab, startRedis }, { startAdvertiser, startConnector, startAmbassador, tagRedis, runLoop, waitServedBy }] =
  await importTestLab('bench failover', 'lib/netns.js', 'e2e/ambassador-kit.js');

const { argv, opt, quick } = benchArgs();
const rounds = Number(opt('rounds', quick ? 2 : 5));
const outFile = resolve(root, opt('out', 'bench/results/failover.json'));
const log = (...a) => console.error(`[failover ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const lab = await Lab.create({ hosts: ['a', 'b', 'c'], prefix: 'bench' });
const results = { discovery: [], sigterm: [], kill9: [], linkcut: [] };
try {
  const [a, b, c] = ['a', 'b', 'c'].map((h) => lab.host(h));
  let ra = await startRedis(a, { port: 7001 });
  const rb = await startRedis(b, { port: 7002 });
  await tagRedis(ra, 'a');
  await tagRedis(rb, 'b');
  const conn = await startConnector(c, ['--connect', 'redis=6379']);
  const aAddr = `${a.ip}:7001`;

  // --- discovery: only a advertises; the loop on c waits (the connector holds clients up to
  // --wait-for-endpoint) and stops at the first success.
  for (let i = 0; i < rounds; i++) {
    const loop = runLoop(c, { count: 1, intervalMs: 0, timeoutMs: 8000, deadlineMs: 8000, untilOk: true });
    await sleep(100);
    const t0 = Date.now();
    const { amb, announced } = await startAdvertiser(a, ['--advertise', 'redis=7001']);
    await loop.finished;
    const first = loop.conns().find((r) => r.ok);
    const up = conn.find({ msg: 'endpoint up', address: aAddr }, t0);
    const mdnsStarted = amb.find({ msg: 'mDNS started' });
    const row = {
      firstOkMs: first ? first.end - t0 : NaN,
      endpointUpMs: up ? up.time - t0 : NaN,
      announcedMs: announced.time - t0,
      processStartMs: mdnsStarted ? mdnsStarted.time - t0 : NaN,
    };
    results.discovery.push(row);
    log(`discovery ${i + 1}: first ok ${row.firstOkMs} ms (mDNS up ${row.processStartMs} ms, announced ${row.announcedMs} ms, endpoint up at c ${row.endpointUpMs} ms)`);
    const t1 = Date.now();
    await amb.stop();
    await conn.waitLog({ msg: 'endpoint down', address: aAddr }, { since: t1, timeoutMs: 10_000 });
  }

  // --- failures: a and b advertise; the loop runs on c throughout.
  let advA = (await startAdvertiser(a, ['--advertise', 'redis=7001'])).amb;
  const advB = (await startAdvertiser(b, ['--advertise', 'redis=7002'])).amb;
  await waitServedBy(c, 'a');
  await waitServedBy(c, 'b');

  const scenario = async (name, act, restore) => {
    for (let i = 0; i < rounds; i++) {
      const loop = runLoop(c, { count: 3000, intervalMs: 5, timeoutMs: 5000, deadlineMs: 5000 });
      await loop.waitCount(50);
      const t0 = Date.now();
      await act();
      const down = await conn.waitLog({ msg: 'endpoint down', address: aAddr }, { since: t0 - 5, timeoutMs: 10_000 }).catch(() => undefined);
      await loop.finished;
      // Connections started after the event ("new connections", the target), and the ones already
      // running when it happened: a request in flight on a server that dies cannot be saved by a
      // TCP proxy (it may have been executed), so those are counted apart.
      const after = loop.conns().filter((r) => r.at >= t0);
      const inFlight = loop.conns().filter((r) => r.at < t0 && r.end >= t0);
      const failed = after.filter((r) => !r.ok);
      const slow = after.filter((r) => r.ok && r.ms > 200);
      const row = {
        detectMs: down ? down.time - t0 : NaN,
        reason: down?.reason,
        connections: after.length,
        failed: failed.length,
        failedErrors: [...new Set(failed.map((f) => f.err))].slice(0, 3),
        inFlight: inFlight.length,
        inFlightFailed: inFlight.filter((r) => !r.ok).length,
        maxMs: Math.max(0, ...after.map((r) => r.ms)),
        slowOver200ms: slow.length,
      };
      results[name].push(row);
      log(`${name} ${i + 1}: endpoint down at c after ${row.detectMs} ms (${row.reason}); ${row.connections} new connections since, ${row.failed} failed, slowest ${row.maxMs} ms; in flight at the event ${row.inFlight}, ${row.inFlightFailed} failed`);
      await restore();
      await waitServedBy(c, 'a', { timeoutMs: 20_000 });
    }
  };

  await scenario(
    'sigterm',
    async () => advA.proc.kill('SIGTERM'),
    async () => {
      await advA.proc.exited;
      advA = (await startAdvertiser(a, ['--advertise', 'redis=7001'])).amb;
    },
  );
  await scenario(
    'kill9',
    async () => {
      advA.proc.kill('SIGKILL');
      ra.process.kill('SIGKILL');
    },
    async () => {
      await advA.proc.exited;
      await ra.process.exited;
      ra = await startRedis(a, { port: 7001 });
      await tagRedis(ra, 'a');
      advA = (await startAdvertiser(a, ['--advertise', 'redis=7001'])).amb;
    },
  );
  await scenario(
    'linkcut',
    async () => a.linkDown(),
    async () => {
      await a.linkUp();
    },
  );
  void advB;
  void startAmbassador;
} finally {
  await lab.destroy();
}

const m = (rows, k) => median(rows.map((r) => r[k]));
const max = (rows, k) => Math.max(...rows.map((r) => r[k]).filter(Number.isFinite));
const sum = (rows, k) => rows.reduce((s, r) => s + (r[k] ?? 0), 0);
const md = [];
md.push(`Lab: 3 network namespaces on one bridge (a, b: redis-server + \`ambassador --advertise redis=PORT\`; c: \`ambassador --connect redis=6379\`), default settings (\`--health-interval 500\`: host probes between ambassadors, checks of advertised targets; connects raced after 250 ms). ${rounds} repetitions each, ${new Date().toISOString()}.`);
md.push('');
md.push('| scenario | median | worst | target | failed new connections (all repetitions) | in flight at the event: failed |');
md.push('|---|---:|---:|---|---|---|');
const d = results.discovery;
md.push(`| advertiser start → first successful request at c | ${m(d, 'firstOkMs')} ms | ${max(d, 'firstOkMs')} ms | < 1200 ms | – | – |`);
md.push(`| … of which: process start → mDNS up | ${m(d, 'processStartMs')} ms | ${max(d, 'processStartMs')} ms | | | |`);
md.push(`| … advertiser start → announced (probing 750 ms included) | ${m(d, 'announcedMs')} ms | ${max(d, 'announcedMs')} ms | | | |`);
for (const [k, title, target] of [
  ['sigterm', 'SIGTERM → endpoint removed at c', '< 100 ms, 0 failed'],
  ['kill9', 'kill -9 (ambassador + redis on a) → endpoint down at c', '< 1500 ms, 0 failed'],
  ['linkcut', 'link cut → endpoint down at c', '< 1500 ms, 0 failed'],
]) {
  const rs = results[k];
  md.push(`| ${title} | ${m(rs, 'detectMs')} ms | ${max(rs, 'detectMs')} ms | ${target} | ${sum(rs, 'failed')} of ${sum(rs, 'connections')}; slowest connection ${max(rs, 'maxMs')} ms | ${sum(rs, 'inFlightFailed')} of ${sum(rs, 'inFlight')} |`);
}
md.push('');
md.push('Failed new connections are those of the client loop (a new connection every ~5 ms: SET + GET, 5 s bound) started after the event; requests already in flight when a server dies are counted apart (a TCP proxy cannot replay them: they may have been executed). A connect that fails at c is retried on b before the client sees anything, so hard failures cost latency (the slowest connection) rather than errors.');
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify({ kind: 'failover', date: new Date().toISOString(), rounds, results, markdown: md.join('\n') }, null, 1));
console.log(md.join('\n'));
