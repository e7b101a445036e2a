#!/usr/bin/env node
// `npm run bench`: every benchmark of issue 7 that is implemented, bounded in time, then the
// report (bench/RESULTS.md + bench/results/*.svg).
//
//   node bench/run.mjs [--quick] [--rounds N] [--only datapath,failover,failover-avahi,mesh,postgres[,live-network,health-load,lossy]]
//                      [--results DIR] [--md FILE] [-- extra datapath args]
//
// Needs root (private network namespaces) and: redis-server, redis-benchmark, haproxy, socat,
// iperf3, taskset (Debian: redis-server redis-tools haproxy socat iperf3 util-linux); the
// failover-avahi and mesh parts also avahi-daemon, avahi-utils, dbus (and tcpdump for mesh); the
// postgres part PostgreSQL 15 and pgbench (postgresql-15, postgresql-client-15).
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sh } from './lib/proc.mjs';
import { benchArgs } from './lib/args.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const dd = argv.indexOf('--');
const own = dd >= 0 ? argv.slice(0, dd) : argv;
const passThrough = dd >= 0 ? argv.slice(dd + 1) : [];
const { opt, quick } = benchArgs(own);
// Where the raw results and the report go (default: the committed ones).
const resultsDir = resolve(opt('results', resolve(here, 'results')));
const mdFile = resolve(opt('md', resolve(here, 'RESULTS.md')));
const only = opt('only', 'datapath,failover,failover-avahi,mesh,postgres').split(',');

const need = { 'redis-server': 'redis-server', 'redis-benchmark': 'redis-tools', haproxy: 'haproxy', socat: 'socat', iperf3: 'iperf3', taskset: 'util-linux', unshare: 'util-linux' };
const missing = Object.entries(need).filter(([cmd]) => !sh('sh', ['-c', `command -v ${cmd} || true`]));
if (missing.length) {
  console.error(`bench: missing commands: ${missing.map(([c, p]) => `${c} (apt-get install ${p})`).join(', ')}`);
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error('bench: must run as root (it creates private network namespaces)');
  process.exit(2);
}

const common = [...(quick ? ['--quick'] : []), ...(opt('rounds') ? ['--rounds', opt('rounds')] : [])];
const t0 = Date.now();
let status = 0;
for (const part of only) {
  const script = resolve(here, `${part}.mjs`);
  console.error(`\n=== bench ${part} ===`);
  if (['failover', 'failover-avahi', 'mesh', 'live-network', 'health-load', 'lossy', 'postgres'].includes(part)) {
    // The failover and mesh parts drive the test lab (test/lib/netns.ts, test/lib/avahi.ts) from .build/.
    const b = spawnSync('npx', ['tsc', '-p', 'tsconfig.test.json'], { cwd: resolve(here, '..'), stdio: 'inherit' });
    if (b.status !== 0) {
      console.error(`bench ${part}: tsc -p tsconfig.test.json failed`);
      status = 1;
      continue;
    }
  }
  // Each part bounds its own runs; this is the outer bound per part.
  // failover-avahi waits up to 130 s for Avahi to drop a dead service whatever --quick says.
  const minutes = { datapath: quick ? 4 : 9, failover: quick ? 2 : 3, 'failover-avahi': quick ? 5 : 6, mesh: quick ? 3 : 8, 'live-network': quick ? 3 : 6, 'health-load': quick ? 4 : 10, lossy: quick ? 2 : 4, postgres: quick ? 3 : 8 }[part] ?? 5;
  const out = ['--out', resolve(resultsDir, `${part}.json`)];
  const r = spawnSync(process.execPath, [script, ...common, ...out, ...(part === 'datapath' ? passThrough : [])], {
    stdio: 'inherit',
    timeout: minutes * 60_000,
    killSignal: 'SIGTERM',
  });
  if (r.status !== 0) {
    console.error(`bench ${part}: failed (${r.error?.message ?? `status ${r.status}`})`);
    status = 1;
  }
}
spawnSync(process.execPath, [resolve(here, 'report.mjs'), '--results', resultsDir, '--md', mdFile], { stdio: 'inherit' });
console.error(`bench: ${Math.round((Date.now() - t0) / 1000)} s`);
process.exit(status);
