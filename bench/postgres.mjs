#!/usr/bin/env node
// PostgreSQL through the ambassador (protocol=postgres, auth-file) against the client logging in
// itself, on loopback inside a private network namespace, interleaved round by round:
//   churn   pgbench -C -S (a new connection per transaction): direct with the password in the
//           client (SCRAM: the client runs PBKDF2) vs through the ambassador with none
//   held    pgbench -S on held connections: the pipe's cost per query
//   first   a new connection's first query (node-postgres: connect, SELECT 1, end), SCRAM and MD5,
//           direct vs through: what the ambassador adds to a login
// PostgreSQL 15 and pgbench from the machine, the test lab's PostgreSQL helper (.build/), the
// built CLI (dist/). Every run is bounded in time.
//
//   node bench/postgres.mjs [--quick] [--rounds N] [--seconds S] [--clients C] [--out bench/results/postgres.json]
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
const outFile = resolve(root, opt('out', 'bench/results/postgres.json'));
const log = (...a) => console.error(`[postgres ${new Date().toISOString().slice(11, 19)}]`, ...a);

const PW = 'bench-Scram-Secret';
const MD5_PW = 'bench-Md5-Secret';
const PG_PORT = 5432;
const VIA = 6432;
const VIA_MD5 = 6433;
const dir = mkdtempSync(join(os.tmpdir(), 'amb-pg-bench-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const server = await startPostgres(undefined, {
  port: PG_PORT,
  settings: { listen_addresses: '127.0.0.1', max_connections: '100' },
  users: [{ name: 'app', password: PW }, { name: 'legacy', password: MD5_PW, method: 'md5' }],
  databases: [{ name: 'bench', owner: 'app' }],
});
const amb = { pid: 0, stop: async () => {} };
try {
  const direct = { PGHOST: '127.0.0.1', PGPORT: String(PG_PORT), PGUSER: 'app', PGPASSWORD: PW, PGDATABASE: 'bench' };
  const via = { PGHOST: '127.0.0.1', PGPORT: String(VIA), PGUSER: 'whoever', PGPASSWORD: '', PGDATABASE: 'bench' };
  const init = await run('pgbench', ['-i', '-s', '1', '-q'], { env: { ...process.env, ...direct }, timeoutMs: 120_000 });
  if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);

  writeFileSync(join(dir, 'app.auth'), `app ${PW}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'legacy.auth'), `legacy ${MD5_PW}\n`, { mode: 0o600 });
  // Defaults otherwise (server-tls=prefer: the server says no to TLS here, one round trip).
  const proc = startProcess(process.execPath, [join(root, 'dist/cli.js'), '--log-level', 'warn',
    '--connect', `pg=${VIA},protocol=postgres,auth-file=${join(dir, 'app.auth')}`, '--static', `pg=127.0.0.1:${PG_PORT}`,
    '--connect', `pgm=${VIA_MD5},protocol=postgres,auth-file=${join(dir, 'legacy.auth')}`, '--static', `pgm=127.0.0.1:${PG_PORT}`]);
  Object.assign(amb, proc);
  await waitPort(VIA);
  await waitPort(VIA_MD5);

  const cpuMs = (pid) => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, in clock ticks of 10 ms
  };
  async function pgbench(env, args) {
    const r = await run('pgbench', ['-n', '-S', '-c', String(clients), '-j', '2', '-T', String(seconds), ...args],
      { env: { ...process.env, ...env }, timeoutMs: (seconds + 60) * 1000 });
    const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1]);
    const failed = Number(/number of failed transactions: (\d+)/.exec(r.stdout)?.[1] ?? 0);
    if (r.code !== 0 || !Number.isFinite(tps)) throw new Error(`pgbench ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
    return { tps, failed };
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

  const results = { churn: { direct: [], via: [] }, held: { direct: [], via: [] }, first: {}, ambassadorCpuMsPerTx: { churn: [], held: [] } };
  const firstKeys = ['scram direct', 'scram via', 'md5 direct', 'md5 via'];
  for (const k of firstKeys) results.first[k] = [];
  // warm-up (both paths, SCRAM keys derived once in the ambassador)
  await firstQuery({ port: VIA, user: 'x' }, 5);
  await firstQuery({ port: PG_PORT, user: 'app', password: PW }, 5);
  for (let r = 0; r < rounds; r++) {
    // Alternate which path goes first, so a drift of the shared machine's load hits both alike.
    const order = r % 2 === 0 ? ['direct', 'via'] : ['via', 'direct'];
    for (const test of ['churn', 'held']) {
      for (const path of order) {
        const before = path === 'via' ? cpuMs(amb.pid) : 0;
        const { tps, failed } = await pgbench(path === 'direct' ? direct : via, test === 'churn' ? ['-C'] : []);
        if (failed > 0) throw new Error(`${test} ${path}: ${failed} failed transactions`);
        results[test][path].push(tps);
        if (path === 'via') results.ambassadorCpuMsPerTx[test].push((cpuMs(amb.pid) - before) / (tps * seconds));
        log(`round ${r + 1}/${rounds} ${test} ${path}: ${tps.toFixed(0)} tps`);
      }
    }
    const per = Math.ceil(firstN / rounds);
    for (const k of r % 2 === 0 ? firstKeys : [...firstKeys].reverse()) {
      const config = {
        'scram direct': { port: PG_PORT, user: 'app', password: PW },
        'scram via': { port: VIA, user: 'x' },
        'md5 direct': { port: PG_PORT, user: 'legacy', password: MD5_PW },
        'md5 via': { port: VIA_MD5, user: 'x' },
      }[k];
      results.first[k].push(...(await firstQuery(config, per)));
    }
  }

  const ratio = (t) => results[t].via.map((v, i) => v / results[t].direct[i]);
  const pct = (v, p) => {
    const s = [...v].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))];
  };
  const f1 = (x) => x.toFixed(1);
  const f2 = (x) => x.toFixed(2);
  const span = (v) => `${f2(Math.min(...v))}–${f2(Math.max(...v))}`;
  const summary = {
    churn: { direct: median(results.churn.direct), via: median(results.churn.via), ratio: median(ratio('churn')), ratios: ratio('churn') },
    held: { direct: median(results.held.direct), via: median(results.held.via), ratio: median(ratio('held')), ratios: ratio('held') },
    first: Object.fromEntries(firstKeys.map((k) => [k, { median: median(results.first[k]), p90: pct(results.first[k], 0.9), n: results.first[k].length }])),
  };
  const pgv = sh('pgbench', ['--version']).trim();
  const L = [];
  L.push(`${pgv}, PostgreSQL 15 on 127.0.0.1 (fsync off), ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average at the start ${os.loadavg()[0].toFixed(1)} (a machine shared with other work), Node ${process.version}; ${rounds} interleaved rounds of ${seconds} s, \`-c ${clients} -j 2 -S\`; ${new Date().toISOString().slice(0, 10)}. Direct: the client logs in itself (SCRAM-SHA-256, or MD5); through: \`--connect pg=…,protocol=postgres,auth-file=…\` with \`--static\`, defaults otherwise (\`server-tls=prefer\`: one SSLRequest round trip, the server declines), the client sends no password.`);
  L.push('');
  L.push('| run | direct (tps, median) | through the ambassador | ratio, median (per round) | target |');
  L.push('|---|---:|---:|---|---|');
  L.push(`| \`pgbench -C -S\` (a new connection per transaction) | ${f1(summary.churn.direct)} | ${f1(summary.churn.via)} | **${f2(summary.churn.ratio)}×** (${span(summary.churn.ratios)}) | ≥ 0.9× |`);
  L.push(`| \`pgbench -S\` (held connections) | ${f1(summary.held.direct)} | ${f1(summary.held.via)} | **${f2(summary.held.ratio)}×** (${span(summary.held.ratios)}) | ≥ 0.95× |`);
  L.push('');
  L.push(`Ambassador CPU per transaction: ${f2(median(results.ambassadorCpuMsPerTx.churn) * 1000)} µs with a login each, ${f2(median(results.ambassadorCpuMsPerTx.held) * 1000)} µs per query on held connections.`);
  L.push('');
  L.push('| first query of a new connection (node-postgres: connect, `SELECT 1`) | median | p90 | n |');
  L.push('|---|---:|---:|---:|');
  for (const k of firstKeys) L.push(`| ${k.replace('via', 'through the ambassador')} | ${f2(summary.first[k].median)} ms | ${f2(summary.first[k].p90)} ms | ${summary.first[k].n} |`);
  const extraScram = summary.first['scram via'].median - summary.first['scram direct'].median;
  const extraMd5 = summary.first['md5 via'].median - summary.first['md5 direct'].median;
  L.push('');
  L.push(`Extra latency of the first query: ${extraScram >= 0 ? '+' : ''}${f2(extraScram)} ms with SCRAM (the client's own PBKDF2 is gone: the ambassador derives the keys once per server salt), ${extraMd5 >= 0 ? '+' : ''}${f2(extraMd5)} ms with MD5 (the hop itself: a second connect, the SSLRequest round trip, the greeting).`);
  const markdown = L.join('\n');
  console.log(markdown);
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify({ date: new Date().toISOString(), settings: { rounds, seconds, clients }, results, summary, markdown }, null, 2)}\n`);
  log(`wrote ${outFile}`);
} finally {
  await amb.stop();
  await server.stop();
}
