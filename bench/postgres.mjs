#!/usr/bin/env node
// PostgreSQL through the ambassador (protocol=postgres, auth-file) against the client logging in
// itself, on loopback inside a private network namespace, interleaved round by round:
//   churn   pgbench -C -S (a new connection per transaction)
//   held    pgbench -S on held connections: the pipe's cost per query
//   first   a new connection's first query (node-postgres: connect, SELECT 1, end), SCRAM and MD5
// over three paths: direct (the password in the client: with SCRAM the client runs PBKDF2),
// through (protocol=postgres with auth-file, no password in the client), and, for reference, hop
// (the same ambassador as a plain TCP hop, the client logging in itself): through − hop is what
// logging in for the client costs, hop − direct what any TCP proxy in between costs.
// Besides transactions per second (noisy on a shared machine), the CPU time each transaction
// costs everything involved is counted: pgbench (its children's times), PostgreSQL (the
// postmaster and its reaped backends) and, through, the ambassador. On a machine where the CPU is
// the limit, throughput goes as the inverse of that cost, so the cost ratio is the steadier figure.
// PostgreSQL 15 and pgbench from the machine, the test lab's PostgreSQL helper (.build/), the
// built CLI (dist/). Every run is bounded in time.
//
// --placement hosts models the deployment instead of sharing every CPU: PostgreSQL (postmaster
// and every backend) on the last CPU, "the database host"; pgbench and the proxies on the
// others, "the application's host", where an ambassador runs, beside its application. Without
// it (shared), everything competes for every CPU, the proxy's CPU comes out of PostgreSQL's.
//
//   node bench/postgres.mjs [--quick] [--rounds N] [--seconds S] [--clients C] [--placement shared|hosts]
//                           [--out bench/results/postgres.json]
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './lib/args.mjs';
import { median, run, sh, startProcess, waitPort } from './lib/proc.mjs';
import { importTestLab } from './lib/test-lab.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

enterPrivateNetns(fileURLToPath(import.meta.url), 'bench postgres', { MDNS_AMBASSADOR_TEST_ISOLATED: '1' });
sh('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=10000 65000']);
sh('sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1']);

const [{ canRunPostgres, startPostgres }] = await importTestLab('bench postgres', 'lib/postgres.js');
const why = canRunPostgres();
if (why) {
  console.error(`bench postgres: ${why}`);
  process.exit(2);
}
const pg = createRequire(import.meta.url)('pg');

const { opt, quick } = benchArgs();
const rounds = Number(opt('rounds', quick ? 2 : 5));
const seconds = Number(opt('seconds', quick ? 5 : 10));
const clients = Number(opt('clients', 4));
const firstN = quick ? 60 : 150;
const placement = opt('placement', 'shared');
if (!['shared', 'hosts'].includes(placement)) throw new Error(`--placement: shared or hosts, not ${placement}`);
const ncpu = os.cpus().length;
if (placement === 'hosts' && ncpu < 2) throw new Error('--placement hosts needs two CPUs');
const dbCpus = String(ncpu - 1);
const appCpus = ncpu === 2 ? '0' : `0-${ncpu - 2}`;
const outFile = resolve(root, opt('out', placement === 'hosts' ? 'bench/results/postgres-hosts.json' : 'bench/results/postgres.json'));
const log = (...a) => console.error(`[postgres ${new Date().toISOString().slice(11, 19)}]`, ...a);

const PW = 'bench-Scram-Secret';
const MD5_PW = 'bench-Md5-Secret';
const PG_PORT = 5432;
const VIA = 6432;
const VIA_MD5 = 6433;
const HOP = 6434;
const HOP_MD5 = 6435;
const HAPROXY = 6436;
const dir = mkdtempSync(join(os.tmpdir(), 'amb-pg-bench-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const server = await startPostgres(undefined, {
  port: PG_PORT,
  settings: { listen_addresses: '127.0.0.1', max_connections: '100' },
  users: [{ name: 'app', password: PW }, { name: 'legacy', password: MD5_PW, method: 'md5' }],
  databases: [{ name: 'bench', owner: 'app' }],
});
const amb = { pid: 0, stop: async () => {} };
const hap = { pid: 0, stop: async () => {} };
try {
  const env = {
    direct: { PGHOST: '127.0.0.1', PGPORT: String(PG_PORT), PGUSER: 'app', PGPASSWORD: PW, PGDATABASE: 'bench' },
    through: { PGHOST: '127.0.0.1', PGPORT: String(VIA), PGUSER: 'whoever', PGPASSWORD: '', PGDATABASE: 'bench' },
    hop: { PGHOST: '127.0.0.1', PGPORT: String(HOP), PGUSER: 'app', PGPASSWORD: PW, PGDATABASE: 'bench' },
    haproxy: { PGHOST: '127.0.0.1', PGPORT: String(HAPROXY), PGUSER: 'app', PGPASSWORD: PW, PGDATABASE: 'bench' },
  };
  const PATHS = Object.keys(env);
  const init = await run('pgbench', ['-i', '-s', '1', '-q'], { env: { ...process.env, ...env.direct }, timeoutMs: 120_000 });
  if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);

  writeFileSync(join(dir, 'app.auth'), `app ${PW}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'legacy.auth'), `legacy ${MD5_PW}\n`, { mode: 0o600 });
  // Defaults otherwise (server-tls=prefer: the server says no to TLS here, one round trip).
  const upstream = `127.0.0.1:${PG_PORT}`;
  const proc = startProcess(process.execPath, [join(root, 'dist/cli/bin.js'), '--log-level', 'warn',
    '--connect', `pg=${VIA},protocol=postgres,auth-file=${join(dir, 'app.auth')}`, '--static', `pg=${upstream}`,
    '--connect', `pgm=${VIA_MD5},protocol=postgres,auth-file=${join(dir, 'legacy.auth')}`, '--static', `pgm=${upstream}`,
    '--connect', `hop=${HOP}`, '--static', `hop=${upstream}`, '--connect', `hopm=${HOP_MD5}`, '--static', `hopm=${upstream}`]);
  Object.assign(amb, proc);
  for (const p of [VIA, VIA_MD5, HOP, HOP_MD5]) await waitPort(p);
  // A bare HAProxy as a plain TCP hop too: what the best-known proxy costs on the same path.
  writeFileSync(join(dir, 'haproxy.cfg'), `global\n  nbthread 1\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\nlisten pg\n  bind 127.0.0.1:${HAPROXY}\n  server p1 ${upstream}\n`);
  Object.assign(hap, startProcess('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]));
  await waitPort(HAPROXY);
  const proxyPid = { through: amb.pid, hop: amb.pid, haproxy: hap.pid };
  if (placement === 'hosts') {
    // every thread of each process; backends forked later inherit the postmaster's CPU
    const children = sh('sh', ['-c', `ps --ppid ${server.process.pid} -o pid= || true`]).split(/\s+/).filter(Boolean);
    for (const pid of [String(server.process.pid), ...children]) sh('taskset', ['-a', '-p', '-c', dbCpus, pid]);
    sh('taskset', ['-a', '-p', '-c', appCpus, String(amb.pid)]);
    sh('taskset', ['-a', '-p', '-c', appCpus, String(hap.pid)]);
    log(`placement: PostgreSQL on CPU ${dbCpus}, pgbench and the proxies on CPU ${appCpus}`);
  }

  // CPU time in ms from /proc/PID/stat (clock ticks of 10 ms): utime + stime, with `reaped` also
  // the times of its children that have exited (the postmaster's backends).
  const cpuMs = (pid, reaped = false) => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0)) * 10;
  };
  const backends = () => Number(sh('sh', ['-c', `ps --ppid ${server.process.pid} --no-headers | wc -l`]).trim());
  const idleBackends = backends();
  async function pgbench(path, args) {
    const pg0 = cpuMs(server.process.pid, true);
    const pid = proxyPid[path];
    const amb0 = pid ? cpuMs(pid) : 0;
    // `times` (a shell builtin) prints the shell's own times, then its children's: pgbench's.
    const pin = placement === 'hosts' ? `taskset -c ${appCpus} ` : '';
    const cmd = `${pin}pgbench -n -S -c ${clients} -j 2 -T ${seconds} ${args.join(' ')}; s=$?; times; exit $s`;
    const r = await run('sh', ['-c', cmd], { env: { ...process.env, ...env[path] }, timeoutMs: (seconds + 60) * 1000 });
    const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1]);
    const failed = Number(/number of failed transactions: (\d+)/.exec(r.stdout)?.[1] ?? 0);
    if (r.code !== 0 || !Number.isFinite(tps)) throw new Error(`pgbench ${path} ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
    const t = [...r.stdout.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60_000 + Number(m[2]) * 1000);
    const pgbenchMs = (t[2] ?? NaN) + (t[3] ?? NaN);
    // the backends of held connections end with pgbench: their times count once they are reaped
    for (let i = 0; i < 100 && backends() > idleBackends; i++) await new Promise((res) => setTimeout(res, 20));
    const tx = tps * seconds;
    const ambassador = pid ? (cpuMs(pid) - amb0) / tx : 0;
    return { tps, failed, cost: { pgbench: pgbenchMs / tx, postgres: (cpuMs(server.process.pid, true) - pg0) / tx, ambassador } };
  }
  /** connect, SELECT 1, end: ms each, sequential. */
  async function firstQuery(config, n) {
    const ms = [];
    const deadline = Date.now() + 60_000;
    for (let i = 0; i < n && Date.now() < deadline; i++) {
      const t0 = performance.now();
      const c = new pg.Client({ host: '127.0.0.1', database: 'bench', ...config });
      await c.connect();
      await c.query('select 1');
      ms.push(performance.now() - t0);
      await c.end();
    }
    return ms;
  }
  const firstConfigs = {
    'scram direct': { port: PG_PORT, user: 'app', password: PW },
    'scram through': { port: VIA, user: 'x' },
    'scram hop': { port: HOP, user: 'app', password: PW },
    'md5 direct': { port: PG_PORT, user: 'legacy', password: MD5_PW },
    'md5 through': { port: VIA_MD5, user: 'x' },
    'md5 hop': { port: HOP_MD5, user: 'legacy', password: MD5_PW },
  };
  const firstKeys = Object.keys(firstConfigs);

  const results = { first: Object.fromEntries(firstKeys.map((k) => [k, []])) };
  for (const test of ['churn', 'held']) results[test] = Object.fromEntries(PATHS.map((p) => [p, { tps: [], cost: [] }]));
  // warm-up (every path; the ambassador derives the SCRAM keys once)
  for (const k of firstKeys) await firstQuery(firstConfigs[k], 5);
  for (let r = 0; r < rounds; r++) {
    // Rotate which path goes first, so a drift of the shared machine's load hits each alike.
    const order = PATHS.map((_, i) => PATHS[(i + r) % PATHS.length]);
    for (const test of ['churn', 'held']) {
      for (const path of order) {
        const { tps, failed, cost } = await pgbench(path, test === 'churn' ? ['-C'] : []);
        if (failed > 0) throw new Error(`${test} ${path}: ${failed} failed transactions`);
        results[test][path].tps.push(tps);
        results[test][path].cost.push(cost);
        const total = cost.pgbench + cost.postgres + cost.ambassador;
        log(`round ${r + 1}/${rounds} ${test} ${path}: ${tps.toFixed(0)} tps, CPU ${(total * 1000).toFixed(0)} µs/tx (pgbench ${(cost.pgbench * 1000).toFixed(0)}, postgres ${(cost.postgres * 1000).toFixed(0)}, ambassador ${(cost.ambassador * 1000).toFixed(0)})`);
      }
    }
    const per = Math.ceil(firstN / rounds);
    for (const k of r % 2 === 0 ? firstKeys : [...firstKeys].reverse()) results.first[k].push(...(await firstQuery(firstConfigs[k], per)));
  }

  const total = (c) => c.pgbench + c.postgres + c.ambassador;
  const pct = (v, p) => {
    const s = [...v].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))];
  };
  const f1 = (x) => x.toFixed(1);
  const f2 = (x) => x.toFixed(2);
  const us = (x) => `${Math.round(x * 1000)} µs`;
  const span = (v) => `${f2(Math.min(...v))}–${f2(Math.max(...v))}`;
  // per round: tps ratio, and capacity ratio (direct's CPU per transaction over the path's)
  const perRound = (test, path) => results[test][path].tps.map((v, i) => ({
    tps: v / results[test].direct.tps[i],
    capacity: total(results[test].direct.cost[i]) / total(results[test][path].cost[i]),
  }));
  const summary = {};
  for (const test of ['churn', 'held']) {
    summary[test] = {};
    for (const path of PATHS) {
      const rr = perRound(test, path);
      summary[test][path] = {
        tps: median(results[test][path].tps),
        tpsRatio: median(rr.map((x) => x.tps)), tpsRatios: rr.map((x) => x.tps),
        capacity: median(rr.map((x) => x.capacity)), capacities: rr.map((x) => x.capacity),
        cost: Object.fromEntries(['pgbench', 'postgres', 'ambassador'].map((k) => [k, median(results[test][path].cost.map((c) => c[k]))])),
        costTotal: median(results[test][path].cost.map(total)),
      };
    }
  }
  summary.first = Object.fromEntries(firstKeys.map((k) => [k, { median: median(results.first[k]), p90: pct(results.first[k], 0.9), n: results.first[k].length }]));

  const pgv = sh('pgbench', ['--version']).trim();
  const L = [];
  const where = placement === 'hosts'
    ? `placement "hosts": PostgreSQL on CPU ${dbCpus} (the database host), pgbench and the proxies on CPU ${appCpus} (the application's host)`
    : 'placement "shared": every process on every CPU';
  L.push(`${pgv}, PostgreSQL 15 on 127.0.0.1 (fsync off), ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${where}, load average at the start ${os.loadavg()[0].toFixed(1)} (a machine shared with other work), Node ${process.version}; ${rounds} interleaved rounds of ${seconds} s, \`-c ${clients} -j 2 -S\`; ${new Date().toISOString().slice(0, 10)}. **direct**: the client logs in itself (SCRAM-SHA-256); **through**: \`--connect pg=…,protocol=postgres,auth-file=…\` with \`--static\`, defaults otherwise (\`server-tls=prefer\`: one SSLRequest round trip, the server declines), the client sends no password; **hop**: the same ambassador as a plain TCP hop (\`--connect hop=…\`), the client logging in itself (reference: what any proxy in between costs); **haproxy**: a bare HAProxy ${sh('haproxy', ['-v']).split('\n')[0].split(' ')[2]} as the same plain hop (\`mode tcp\`, one thread).`);
  L.push('');
  L.push('| run | path | tps (median) | tps ratio to direct, median (per round) | CPU per transaction (median): pgbench + postgres + proxy | capacity ratio, median (per round) | target |');
  L.push('|---|---|---:|---|---|---|---|');
  for (const [test, title, target] of [['churn', '`pgbench -C -S` (a new connection per transaction)', '≥ 0.9×'], ['held', '`pgbench -S` (held connections)', '≥ 0.95×']]) {
    for (const path of PATHS) {
      const sm = summary[test][path];
      const c = sm.cost;
      const ratios = path === 'direct' ? '–' : `**${f2(sm.tpsRatio)}×** (${span(sm.tpsRatios)})`;
      const caps = path === 'direct' ? '–' : `**${f2(sm.capacity)}×** (${span(sm.capacities)})`;
      L.push(`| ${path === 'direct' ? title : ''} | ${path} | ${f1(sm.tps)} | ${ratios} | ${us(sm.costTotal)}: ${us(c.pgbench)} + ${us(c.postgres)} + ${us(c.ambassador)} | ${caps} | ${path === 'through' ? target : ''} |`);
    }
  }
  L.push('');
  if (placement === 'hosts') L.push('Placement "hosts": the database host\'s CPU is the limit, so the tps ratio is the figure that counts; the capacity ratio below adds CPU of two hosts and says little here.', '');
  L.push('Capacity ratio: the CPU time a transaction costs everything involved (pgbench, PostgreSQL with its backends, the ambassador) directly, over what it costs on the path: the throughput ratio on a machine whose CPU is the limit, as this one is when the benchmark has it to itself. The tps ratios move with the load of the shared machine; the CPU counts much less.');
  L.push('');
  L.push('| first query of a new connection (node-postgres: connect, `SELECT 1`) | median | p90 | n |');
  L.push('|---|---:|---:|---:|');
  for (const k of firstKeys) L.push(`| ${k} | ${f2(summary.first[k].median)} ms | ${f2(summary.first[k].p90)} ms | ${summary.first[k].n} |`);
  const d = (a, b) => {
    const x = summary.first[a].median - summary.first[b].median;
    return `${x >= 0 ? '+' : ''}${f2(x)} ms`;
  };
  L.push('');
  L.push(`Extra latency of the first query through the ambassador: ${d('scram through', 'scram direct')} with SCRAM (the client's PBKDF2 is gone: the ambassador derives the keys once per server salt), ${d('md5 through', 'md5 direct')} with MD5; a plain hop adds ${d('scram hop', 'scram direct')} / ${d('md5 hop', 'md5 direct')}.`);
  const markdown = L.join('\n');
  console.log(markdown);
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify({ date: new Date().toISOString(), settings: { rounds, seconds, clients, placement }, results, summary, markdown }, null, 2)}\n`);
  log(`wrote ${outFile}`);
} finally {
  await amb.stop();
  await hap.stop();
  await server.stop();
}
