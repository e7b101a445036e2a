#!/usr/bin/env node
// Live networks (issue 11): how fast the mesh follows a network that changes under it. Lab of 3
// network namespaces on one bridge: a runs redis-server and `ambassador --advertise redis=12345
// --admin`, b runs `ambassador --connect redis=6379`. Each round:
//   renumber   a's address changes (the new one added, the old one deleted, as DHCP does):
//              ms until b's connector moved its endpoint, ms until the first successful request
//              through b started after the change (a client loop, one new connection every 20 ms),
//              failed requests, and the mDNS packets a sent in the 3 s after the change
//   linkup     a's interface goes down (set down on the host) and comes back: ms from link-up
//              until a `browse redis --json` on b, started while a was down, prints it (a's
//              probes after 0.5 s settling and its announcement); rounds 32 s apart, so that a
//              link coming up 3 times in 30 s (damped as flapping: 5 s pause) is not measured
// Needs `npx tsc -p tsconfig.test.json` (uses the test lab from .build/) and redis-server, curl.
//
//   node bench/live-network.mjs [--quick] [--rounds N] [--out bench/results/live-network.json]
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './lib/proc.mjs';
import { benchArgs } from './lib/args.mjs';
import { importTestLab } from './lib/test-lab.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

enterPrivateNetns(fileURLToPath(import.meta.url), 'bench live-network', { MDNS_AMBASSADOR_TEST_ISOLATED: '1' });

const [{ Lab, startRedis }, kit] = await importTestLab('bench live-network', 'lib/netns.js', 'e2e/ambassador-kit.js');
const { CLI, runLoop, sleep, startAdvertiser, startConnector, tagRedis, waitServedBy } = kit;

const { opt, quick } = benchArgs();
const rounds = Number(opt('rounds', quick ? 2 : 5));
const outFile = resolve(root, opt('out', 'bench/results/live-network.json'));
const log = (...a) => console.error(`[live-network ${new Date().toISOString().slice(11, 19)}]`, ...a);

// Bounded: every wait below is; this is the last resort (the lab cleans up on exit).
setTimeout(() => {
  console.error('bench live-network: overall bound reached, giving up');
  process.exit(3);
}, (90 + rounds * 50) * 1000).unref();

async function metric(host, name) {
  const r = await host.exec('curl', ['-s', '--max-time', '3', 'http://127.0.0.1:9901/metrics'], { timeoutMs: 5000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ').pop()) : NaN;
}

const lab = await Lab.create({ hosts: ['a', 'b'] });
const results = { renumber: [], linkup: [] };
try {
  const [a, b] = [lab.host('a'), lab.host('b')];
  await a.sysctl('net.ipv4.conf.all.promote_secondaries', '1');
  await a.sysctl(`net.ipv4.conf.${a.ifname}.promote_secondaries`, '1');
  const redis = await startRedis(a, { port: 12345 });
  await tagRedis(redis, 'a');
  const { amb: adv } = await startAdvertiser(a, ['--advertise', 'redis=12345', '--admin', '9901']);
  const conn = await startConnector(b, ['--connect', 'redis=6379']);
  await waitServedBy(b, 'a');
  const prefix = a.ip.replace(/\.\d+$/, '');
  let ip = a.ip;

  for (let i = 0; i < rounds; i++) {
    // renumber
    await sleep(2500); // earlier announcements are over
    const next = `${prefix}.${101 + i}`;
    const sent0 = await metric(a, 'ambassador_mdns_packets_sent_total');
    const loop = runLoop(b, { port: 6379, count: 100_000, intervalMs: 20, deadlineMs: 8000, timeoutMs: 6000 });
    await loop.waitCount(3);
    await a.addAddress(`${next}/24`);
    await a.delAddress(`${ip}/24`);
    const t0 = Date.now();
    ip = next;
    const moved = await conn.waitLog({ msg: 'endpoint moved', address: `${next}:12345` }, { since: t0 - 1000, timeoutMs: 8000 });
    await sleep(3000);
    const sent1 = await metric(a, 'ambassador_mdns_packets_sent_total');
    await loop.stop();
    const after = loop.conns().filter((r) => r.at >= t0);
    const firstOk = after.find((r) => r.ok);
    const r = {
      movedMs: moved.time - t0,
      firstRequestMs: firstOk ? firstOk.end - t0 : null,
      failed: after.filter((x) => !x.ok).length,
      requests: after.length,
      packets: sent1 - sent0,
    };
    results.renumber.push(r);
    log(`renumber ${i + 1}/${rounds}: → ${next}: endpoint moved +${r.movedMs} ms, first request +${r.firstRequestMs} ms, ${r.failed}/${r.requests} failed, ${r.packets} packets`);

  }

  for (let i = 0; i < rounds; i++) {
    if (i > 0) await sleep(32_000); // no flapping: at most 2 link-ups in 30 s
    await a.linkDown('host');
    await sleep(2000); // seen down (the next look)
    const browse = b.spawn(process.execPath, [CLI, 'browse', 'redis', '--json', '--interface', b.ifname], { name: '[b] browse' });
    await sleep(1500); // its first queries are out (and unanswered)
    await a.linkUp('host');
    const tUp = Date.now();
    await browse.waitForLine(/"event":"up"/, { timeoutMs: 15_000 });
    const seenMs = Date.now() - tUp;
    await browse.stop();
    results.linkup.push({ seenMs });
    log(`linkup ${i + 1}/${rounds}: seen by a fresh browse on b +${seenMs} ms`);
    await waitServedBy(b, 'a');
  }
  const renames = adv.findAll({ msg: /renamed/ }).length;
  const summary = {
    renumber: {
      movedMs: median(results.renumber.map((r) => r.movedMs)),
      firstRequestMs: median(results.renumber.map((r) => r.firstRequestMs ?? Infinity)),
      failed: results.renumber.reduce((n, r) => n + r.failed, 0),
      packets: median(results.renumber.map((r) => r.packets)),
    },
    linkup: { seenMs: median(results.linkup.map((r) => r.seenMs)) },
    renames,
  };
  console.log(JSON.stringify(summary, null, 2));
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify({ date: new Date().toISOString(), node: process.version, rounds, summary, results }, null, 2) + '\n');
  log(`written ${outFile}`);
} finally {
  await lab.destroy();
}
