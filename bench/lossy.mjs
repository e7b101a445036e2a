#!/usr/bin/env node
// Lossy links (issue 17): every host of a network-namespace lab drops a share of the packets it
// receives (iptables statistic match on its lab interface). a: redis :7001 behind
// `--advertise one=7001 --advertise two=7001`; b: redis :7002 behind `--advertise two=7002`;
// c: `--connect one=6379` (one replica) and `--connect two=6380` (two replicas). On c, four
// bounded loops side by side, one new connection per request (SET + GET, 3 s client timeout,
// 100 ms apart): direct to a, direct to b, through one, through two. Counted: ok / failed per
// loop, and endpoint-down events at c while every replica is alive.
// Each build given with --cli NAME=PATH (repeatable; default this tree's dist/cli/bin.js as "after").
//
//   node bench/lossy.mjs [--loss 0.1] [--seconds 60] [--cli before=/tmp/base/dist/cli/bin.js --cli after=dist/cli/bin.js]
//                        [--out bench/results/lossy.json]
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './lib/args.mjs';
import { importTestLab } from './lib/test-lab.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

enterPrivateNetns(fileURLToPath(import.meta.url), 'bench lossy', { MDNS_AMBASSADOR_TEST_ISOLATED: '1' });

const [{ Lab, startRedis }, { Amb, runLoop, tagRedis, waitServedBy }] =
  await importTestLab('bench lossy', 'lib/netns.js', 'e2e/ambassador-kit.js');

const { argv, opt, quick } = benchArgs();
const loss = Number(opt('loss', 0.1));
const seconds = Number(opt('seconds', quick ? 20 : 60));
const outFile = resolve(root, opt('out', 'bench/results/lossy.json'));
const clis = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] !== '--cli') continue;
  const [name, path] = argv[i + 1].split('=');
  clis.push({ name, path: resolve(path) });
}
if (clis.length === 0) clis.push({ name: 'after', path: resolve(root, 'dist/cli/bin.js') });
const log = (...a) => console.error(`[lossy ${new Date().toISOString().slice(11, 19)}]`, ...a);

function start(host, cli, args) {
  const full = [cli, '--log-format', 'json', '--hostname', host.name, '--interface', host.ifname, ...args];
  return new Amb(host, host.spawn(process.execPath, full, { name: `[${host.name}] ambassador ${args.join(' ')}` }), args);
}

async function setLoss(host, share) {
  await host.run('iptables', ['-F', 'INPUT']);
  if (share > 0) await host.run('iptables', ['-A', 'INPUT', '-i', host.ifname, '-m', 'statistic', '--mode', 'random', '--probability', String(share), '-j', 'DROP']);
}

const results = [];
for (const { name, path } of clis) {
  const lab = await Lab.create({ hosts: ['a', 'b', 'c'], prefix: 'lossy' });
  try {
    const [a, b, c] = ['a', 'b', 'c'].map((h) => lab.host(h));
    const [ra, rb] = await Promise.all([startRedis(a, { port: 7001 }), startRedis(b, { port: 7002 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
    const conn = start(c, path, ['--connect', 'one=6379', '--connect', 'two=6380']);
    const advs = [start(a, path, ['--advertise', 'one=7001', '--advertise', 'two=7001']), start(b, path, ['--advertise', 'two=7002'])];
    for (const x of advs) await x.waitLog({ msg: 'advertisement', state: 'announced' }, { timeoutMs: 20_000 });
    await waitServedBy(c, 'a', { port: 6379 });
    await waitServedBy(c, 'a', { port: 6380 });
    await waitServedBy(c, 'b', { port: 6380 });
    for (const h of [a, b, c]) await setLoss(h, loss);
    const o = { count: 100_000, intervalMs: 100, deadlineMs: seconds * 1000, timeoutMs: 3000 };
    const t0 = Date.now();
    const loops = {
      directA: runLoop(c, { ...o, host: a.ip, port: 7001 }),
      directB: runLoop(c, { ...o, host: b.ip, port: 7002 }),
      one: runLoop(c, { ...o, port: 6379 }),
      two: runLoop(c, { ...o, port: 6380 }),
    };
    await Promise.all(Object.values(loops).map((l) => l.finished));
    const s = Object.fromEntries(Object.entries(loops).map(([k, l]) => [k, l.summary()]));
    const downs = (svc) => conn.findAll((l) => l.msg === 'endpoint down' && l.time >= t0 && l.service === svc);
    const reasons = (ls) => Object.entries(ls.reduce((m, l) => ({ ...m, [l.reason]: (m[l.reason] ?? 0) + 1 }), {})).map(([k, v]) => `${v} ${k}`).join(', ');
    const row = {
      build: name,
      one: { direct: { ok: s.directA.ok, failed: s.directA.failed }, through: { ok: s.one.ok, failed: s.one.failed }, downs: downs('one').length, reasons: reasons(downs('one')) },
      two: {
        direct: { ok: s.directA.ok + s.directB.ok, failed: s.directA.failed + s.directB.failed },
        through: { ok: s.two.ok, failed: s.two.failed },
        downs: downs('two').length,
        reasons: reasons(downs('two')),
      },
    };
    results.push(row);
    log(JSON.stringify(row));
  } finally {
    await lab.destroy();
  }
}

const pct = (x) => `${x.ok} / ${x.failed} (${((100 * x.failed) / Math.max(1, x.ok + x.failed)).toFixed(1)} %)`;
const md = [];
md.push(`${Math.round(loss * 100)} % of received packets dropped on every host, ${seconds} s, one new connection per request (SET + GET, 3 s client timeout, 100 ms apart), four loops side by side; ${new Date().toISOString()}.`);
md.push('');
md.push('| build | replicas | direct: ok / failed | through the ambassador: ok / failed | endpoint-down events, every replica alive |');
md.push('|---|---:|---|---|---|');
for (const r of results) {
  for (const [k, n] of [['one', 1], ['two', 2]]) {
    const x = r[k];
    md.push(`| ${r.build} | ${n} | ${pct(x.direct)} | ${pct(x.through)} | ${x.downs}${x.downs ? ` (${x.reasons})` : ''} |`);
  }
}
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify({ kind: 'lossy', date: new Date().toISOString(), loss, seconds, results, markdown: md.join('\n') }, null, 1));
console.log(md.join('\n'));
