#!/usr/bin/env node
// What one new connection costs a proxy, counted rather than timed (the machine is shared, so
// wall clock and CPU time are noisy): user-space instructions per connection under callgrind
// (every thread: V8's compiler and GC helpers included) and system calls per connection under
// `strace -c -f`. Each connection is one redis-benchmark GET over a fresh connection (-k 0), the
// life of a connection the churn test measures: accept, pick an endpoint, connect, first byte,
// close.
//
//   node bench/conncost.mjs [--paths haproxy,ambassador] [--tools callgrind,strace]
//                           [--n 2000] [--warmup 1000] [--clients 10] [--idle-s 10]
//                           [--out bench/results/conncost-TOOLS.json] [--keep DIR (callgrind dumps)]
//                           [path options of datapath.mjs: --node, --amb, --variant, --ambassador-bin]
//
// Per path and tool: start the proxy under the tool, warm it up (--warmup connections: V8 has
// compiled the hot code), wait --settle-s, zero the counters, count --idle-s seconds with no
// client (timers), zero again, count --n connections, and report
// (counted − idle rate × duration) ÷ n. Callgrind's count is also split by what the
// instructions were for (bench/lib/callgrind.mjs): V8's JIT compilers, garbage collection, the
// rest; "without JIT compiling" is the figure to compare, since V8 still (re)compiles hot
// functions thousands of connections into a run under valgrind (a third of the count on
// Node 20 after 2 000 connections), work a long-running proxy does once. Under valgrind a run lasts ~20× longer than natively,
// so time-driven work (health checks) weighs 20× more: the ambassador's health checks are best
// slowed down for this count (--amb-args "--health-interval 60000 --health-timeout 10000
// --connect-timeout 10000"; they are not per-connection work and timeouts do not change the
// path a connection takes). Runs in a private network namespace like datapath.mjs.
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { startProcess, run, sh, sleep, tree, waitPort } from './lib/proc.mjs';
import { pathDefinitions } from './lib/paths.mjs';
import { benchArgs } from './lib/args.mjs';
import { classify } from './lib/callgrind.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
enterPrivateNetns(fileURLToPath(import.meta.url), 'conncost');
sh('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=10000 65000']);
sh('sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1']);

const { argv, opt } = benchArgs();
const n = Number(opt('n', 2000));
const warmup = Number(opt('warmup', 1000));
const clients = Number(opt('clients', 10));
const idleS = Number(opt('idle-s', 10));
const settleS = Number(opt('settle-s', 15));
const tools = opt('tools', 'callgrind,strace').split(',');
// bench/report.mjs renders bench/results/conncost-callgrind.json and conncost-strace.json
const outFile = resolve(root, opt('out', `bench/results/conncost-${tools.join('-')}.json`));
// --keep DIR: keep the callgrind dumps of the counted windows (for callgrind_annotate)
const keepDir = opt('keep');
const REDIS = 7001;
const IPERF = 5201;
const work = join(os.tmpdir(), `conncost-${process.pid}`);
mkdirSync(work, { recursive: true });
const log = (...a) => console.error(`[conncost ${new Date().toISOString().slice(11, 19)}]`, ...a);

/** How each tool wraps a proxy's command line. */
const wrappers = {
  callgrind: (cmd, args, name) => [
    'valgrind',
    ['--tool=callgrind', `--callgrind-out-file=${join(work, `cg-${name}.%p`)}`, '--dump-line=no', '--dump-instr=no', '--trace-children=no', cmd, ...args],
  ],
  strace: (cmd, args) => [cmd, args],
};

/**
 * Counters of one tool on a running proxy: zero() starts a count, read() ends it and returns
 * { total, detail }.
 */
const counters = {
  callgrind: (pid) => {
    const dumps = () => readdirSync(work).filter((f) => f.startsWith('cg-') && f.includes(`.${pid}.`));
    return {
      zero: async () => {
        sh('callgrind_control', ['-z', String(pid)]);
      },
      read: async () => {
        const before = new Set(dumps());
        sh('callgrind_control', ['-d', String(pid)]);
        for (let i = 0; i < 600; i++) {
          const fresh = dumps().filter((f) => !before.has(f));
          for (const f of fresh) {
            const text = readFileSync(join(work, f), 'utf8');
            const m = text.match(/^(?:summary|totals): (\d+)/m);
            if (m) {
              if (keepDir) {
                mkdirSync(keepDir, { recursive: true });
                copyFileSync(join(work, f), join(keepDir, f));
              }
              // By what the instructions were for: JIT compilers (warm-up), GC, the rest.
              const c = classify(join(work, f), 0);
              return { total: Number(m[1]), detail: { compile: c.compile, gc: c.gc, rest: c.rest } };
            }
          }
          await sleep(100);
        }
        throw new Error('callgrind dump did not appear');
      },
    };
  },
  strace: (pid) => {
    let tracer;
    let file;
    let k = 0;
    return {
      zero: async () => {
        file = join(work, `strace-${pid}-${k++}.txt`);
        // Every process of the tree: the ambassador's HAProxy (--data-plane haproxy) is a child
        // started before the count, which -f alone would not follow.
        tracer = startProcess('strace', ['-f', '-c', '-o', file, ...tree(pid).flatMap((p) => ['-p', String(p)])]);
        await sleep(1500); // attached to every thread
      },
      read: async () => {
        try {
          process.kill(tracer.pid, 'SIGINT');
        } catch {}
        await tracer.exited;
        return parseStrace(readFileSync(file, 'utf8'));
      },
    };
  },
};

function parseStrace(text) {
  const detail = {};
  for (const line of text.split('\n')) {
    // % time  seconds  usecs/call  calls  [errors]  syscall
    const m = line.trim().match(/^[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?([a-z_0-9]+)$/);
    if (m && m[3] !== 'total') detail[m[3]] = Number(m[1]);
  }
  return { total: Object.values(detail).reduce((a, b) => a + b, 0), detail };
}

async function churn(port, count) {
  const r = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-c', String(clients), '-k', '0', '-t', 'get', '-n', String(count), '--csv'], { timeoutMs: 1_800_000 });
  if (!/"GET"/.test(r.stdout)) throw new Error(`redis-benchmark failed (code ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stdout.slice(-300)} ${r.stderr.slice(-300)}`);
  if (/error|refused|reset/i.test(r.stderr)) log(`redis-benchmark: ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
}

async function main() {
  const redis = startProcess('redis-server', ['--bind', '127.0.0.1', '--port', String(REDIS), '--save', '', '--appendonly', 'no', '--maxclients', '20000', '--loglevel', 'warning']);
  await waitPort(REDIS);
  const iperf = startProcess('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(IPERF)]);
  const results = [];
  for (const tool of tools) {
    const { defs, names, node } = pathDefinitions({ root, argv, opt, redisPort: REDIS, bulkPort: IPERF, wrap: wrappers[tool], startTimeoutMs: 300_000 });
    const paths = opt('paths', 'haproxy,ambassador').split(',');
    for (const name of paths) {
      if (!defs[name]) throw new Error(`unknown path ${name} (known: ${names.join(', ')})`);
      log(`${tool} ${name}: starting`);
      const pt = await defs[name]();
      try {
        const pid = pt.pids[0];
        await churn(pt.redis, warmup);
        // Let the warm-up's after-effects (V8's background compiles, GC of its garbage) finish.
        await sleep(settleS * 1000);
        const c = counters[tool](pid);
        await c.zero();
        const t0 = Date.now();
        await sleep(idleS * 1000);
        const idle = await c.read();
        const idleMs = Date.now() - t0;
        await c.zero();
        const t1 = Date.now();
        await churn(pt.redis, n);
        const busy = await c.read();
        const busyMs = Date.now() - t1;
        const idleShare = (x) => (x * busyMs) / idleMs;
        const perConn = (busy.total - idleShare(idle.total)) / n;
        const detail = {};
        for (const [k, v] of Object.entries(busy.detail)) {
          const d = (v - idleShare(idle.detail[k] ?? 0)) / n;
          if (d >= 0.05 || tool === 'callgrind') detail[k] = +d.toFixed(2);
        }
        const idleSharePct = (100 * idleShare(idle.total)) / busy.total;
        // Without the JIT compilers: what a connection costs once the process is warm (V8 still
        // (re)compiles hot functions thousands of connections into a run under valgrind).
        const steady = detail.compile !== undefined ? perConn - detail.compile : undefined;
        const row = { tool, path: name, node: node[name], n, busyMs, idleMs, busyTotal: busy.total, idleTotal: idle.total, idleSharePct, perConn, steady, detail };
        results.push(row);
        const fmtDetail = Object.entries(detail).map(([k, v]) => `${k} ${tool === 'callgrind' ? fmt(v) : v}`).join(', ');
        log(`${tool} ${name}: ${fmt(perConn)} per connection${steady !== undefined ? `, ${fmt(steady)} without JIT compiling` : ''} (idle ${fmt(idle.total / (idleMs / 1000))}/s = ${idleSharePct.toFixed(1)} % of the count, subtracted; ${(busyMs / 1000).toFixed(1)} s for ${n}) ${fmtDetail}`);
      } catch (err) {
        log(`${tool} ${name}: ${err.message.split('\n')[0]}`);
        results.push({ tool, path: name, error: err.message });
      } finally {
        await pt.stop();
      }
    }
  }
  await iperf.stop();
  await redis.stop();
  rmSync(work, { recursive: true, force: true });
  const out = { kind: 'conncost', date: new Date().toISOString(), n, warmup, clients, idleS, load: os.loadavg().map((x) => +x.toFixed(2)), results };
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify(out, null, 1));
  console.log(`\nper connection (${n} connections, -c ${clients}):`);
  for (const r of results) {
    const steady = r.steady !== undefined ? `  (${fmt(r.steady)} without JIT compiling: GC ${fmt(r.detail.gc)}, other ${fmt(r.detail.rest)})` : '';
    console.log(`  ${r.tool.padEnd(10)} ${r.path.padEnd(14)} ${(r.node ?? '').padEnd(9)} ${r.error ? 'error' : fmt(r.perConn)}${steady}`);
  }
}

function fmt(x) {
  return x >= 1e4 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
