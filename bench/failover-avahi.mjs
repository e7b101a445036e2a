#!/usr/bin/env node
// Failover and discovery timing with Avahi (issue 7, section 2: the comparison with a TTL-based
// browser). Same lab as bench/failover.mjs: 3 network namespaces on one bridge, a real
// avahi-daemon on each (private D-Bus, see test/lib/avahi.ts), `_redis._tcp` published with
// avahi-publish-service on a (and b), and on c a continuous `avahi-browse -r -p _redis._tcp`
// whose lines are timestamped when they arrive ('+' new, '=' resolved, '-' removed):
//   discovery       avahi-publish-service start on a (daemon running) → first '=' for it at c
//   discoveryCold   avahi-daemon start on a with a static service file → first '=' at c
//   sigterm         SIGTERM to avahi-publish-service (goodbye) → '-' at c
//   daemonSigterm   SIGTERM to avahi-daemon (cold runs; goodbyes) → '-' at c
//   kill9           kill -9 of a's avahi-daemon and publisher → '-' at c, or not within the bound
//   linkcut         b's cable cut (bridge port down) → '-' at c, or not within the bound
// kill9 and linkcut run once, concurrently (each its own instance: redis-a, redis-b), bounded by
// --bound-s (130 s: Avahi's SRV TTL is 120 s). Meanwhile a one-shot `avahi-browse -rpt` on c
// every few seconds shows whether a new client would still resolve the dead instances.
// Needs `npx tsc -p tsconfig.test.json` (uses the test lab from .build/) and avahi-daemon,
// avahi-utils, dbus.
//
//   node bench/failover-avahi.mjs [--quick] [--rounds N] [--cold N] [--bound-s 130]
//                                 [--out bench/results/failover-avahi.json]
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { median, sh } from './lib/proc.mjs';
import { benchArgs } from './lib/args.mjs';
import { importTestLab } from './lib/test-lab.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

enterPrivateNetns(fileURLToPath(import.meta.url), 'bench failover-avahi', { MDNS_AMBASSADOR_TEST_ISOLATED: '1' });

const [{ Lab }, { startAvahi, canUseAvahi, parseAvahiBrowse }] =
  await importTestLab('bench failover-avahi', 'lib/netns.js', 'lib/avahi.js');
const why = canUseAvahi();
if (why) {
  console.error(`bench failover-avahi: ${why}`);
  process.exit(2);
}

const { argv, opt, quick } = benchArgs();
const rounds = Number(opt('rounds', quick ? 2 : 5));
const coldRounds = Number(opt('cold', quick ? 1 : 2));
const boundS = Number(opt('bound-s', 130));
const outFile = resolve(root, opt('out', 'bench/results/failover-avahi.json'));
// Avahi announces a new record 3 times (≈ 0, 1 and 3 s after probing); failures are injected
// once that is over, so c's cache holds records from the last announcement only.
const settleMs = 4000;
const probeEveryMs = 3000;
const log = (...a) => console.error(`[failover-avahi ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const ms = (x) => (x === undefined || x === null || !Number.isFinite(x) ? null : Math.round(x));

// Everything below is bounded; this is the last resort (the lab cleans up on exit).
const deadlineS = 2 * 60 + boundS + 30;
setTimeout(() => {
  console.error(`bench failover-avahi: overall bound of ${deadlineS} s reached, giving up`);
  process.exit(3);
}, deadlineS * 1000).unref();

/** Calls onLine(line, t, stream) for every complete output line, t taken when it arrived. */
function onLines(proc, onLine) {
  for (const [stream, s] of [['stdout', proc.child.stdout], ['stderr', proc.child.stderr]]) {
    let buf = '';
    s.on('data', (d) => {
      const t = now();
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        onLine(line, t, stream);
      }
    });
  }
}

/** Timestamped events with bounded waits. */
class Events {
  list = [];
  waiters = new Set();
  push(e) {
    this.list.push(e);
    for (const w of [...this.waiters]) w(e);
  }
  /** First event at or after `since` matching `pred`, or undefined after timeoutMs. */
  wait(pred, { since = -Infinity, timeoutMs }) {
    const hit = this.list.find((e) => e.t >= since && pred(e));
    if (hit) return Promise.resolve(hit);
    return new Promise((res) => {
      const done = (v) => {
        clearTimeout(timer);
        this.waiters.delete(w);
        res(v);
      };
      const w = (e) => e.t >= since && pred(e) && done(e);
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.waiters.add(w);
    });
  }
}

const versions = {
  avahiDaemon: sh('avahi-daemon', ['--version']),
  packages: sh('dpkg-query', ['-W', '-f', '${Package} ${Version}; ', 'avahi-daemon', 'avahi-utils']).replace(/;\s*$/, ''),
  kernel: sh('uname', ['-r']),
};
const date = new Date().toISOString();
const results = { discovery: [], discoveryCold: [], sigterm: [], daemonSigterm: [], kill9: undefined, linkcut: undefined, probes: [] };
const t00 = Date.now();

const lab = await Lab.create({ hosts: ['a', 'b', 'c'], prefix: 'bfav' });
try {
  const [a, b, c] = ['a', 'b', 'c'].map((h) => lab.host(h));
  const [avA, avB, avC] = await Promise.all([a, b, c].map((h) => startAvahi(h)));
  log(`avahi-daemon up on a, b, c (${versions.avahiDaemon}); pids ${[avA, avB, avC].map((d) => d.daemon.pid).join(', ')}`);

  // The TTL-based browser on c, running throughout.
  const browse = new Events();
  const browser = avC.spawn('avahi-browse', ['-r', '-p', '_redis._tcp']);
  onLines(browser, (line, t, stream) => {
    if (stream !== 'stdout') return /Got SIGTERM/.test(line) || log(`avahi-browse on c: ${line}`);
    const [row] = parseAvahiBrowse(line);
    if (row) browse.push({ t, event: row.event, name: row.name, address: row.address, port: row.port });
  });
  await sleep(2000); // let the browser register with the daemon (parsable mode prints nothing before the first service)
  if (!browser.running) throw new Error(`avahi-browse on c exited: ${browser.output}`);

  const publish = (d, name, port) => {
    const p = d.spawn('avahi-publish-service', [name, '_redis._tcp', String(port)]);
    const ev = new Events();
    onLines(p, (line, t) => ev.push({ t, line }));
    return { p, ev };
  };
  const waitBrowse = (event, name, since, timeoutMs) => browse.wait((e) => e.event === event && e.name === name, { since, timeoutMs });
  /** After settling: SIGTERM `proc` (publisher or daemon) and time the '-' of `name` at c, bounded. */
  const sigtermToRemoval = async (proc, name, stopMs) => {
    await sleep(settleMs);
    const t1 = now();
    proc.kill('SIGTERM');
    const rm = await waitBrowse('-', name, t1, 10_000);
    const exit = await proc.stop(stopMs);
    return { name, removedMs: ms(rm?.t - t1), withinMs: 10_000, exit: exit.signal ?? exit.code };
  };

  // --- discovery (daemon running) and sigterm, one instance name per repetition.
  for (let i = 1; i <= rounds; i++) {
    const name = `redis-a-${i}`;
    const t0 = now();
    const { p, ev } = publish(avA, name, 7001);
    const [est, add, res] = await Promise.all([
      ev.wait((e) => /Established under name/.test(e.line), { timeoutMs: 15_000 }),
      waitBrowse('+', name, t0, 15_000),
      waitBrowse('=', name, t0, 15_000),
    ]);
    const row = { name, establishedMs: ms(est?.t - t0), newMs: ms(add?.t - t0), resolvedMs: ms(res?.t - t0), address: res ? `${res.address}:${res.port}` : null };
    results.discovery.push(row);
    log(`discovery ${i}: publisher start → established ${row.establishedMs} ms, '+' at c ${row.newMs} ms, '=' at c ${row.resolvedMs} ms (${row.address})`);
    if (!res) {
      await p.stop(1000);
      continue;
    }
    const srow = await sigtermToRemoval(p, name, 1000);
    results.sigterm.push(srow);
    log(`sigterm ${i}: '-' at c after ${srow.removedMs ?? 'no removal within 10 s'} ms (publisher exit ${srow.exit})`);
    await sleep(1000);
  }

  // --- kill9 (a) and linkcut (b), concurrently, one repetition.
  {
    const pa = publish(avA, 'redis-a', 7001);
    const pb = publish(avB, 'redis-b', 7002);
    const t0 = now();
    const [ra, rb] = await Promise.all([waitBrowse('=', 'redis-a', t0, 15_000), waitBrowse('=', 'redis-b', t0, 15_000)]);
    if (!ra || !rb) throw new Error(`redis-a/redis-b not resolved at c within 15 s: ${browser.stdout.slice(-2000)}`);
    await sleep(settleMs);
    const comm = sh('cat', [`/proc/${avA.daemon.pid}/comm`]);
    if (comm !== 'avahi-daemon') throw new Error(`pid ${avA.daemon.pid} is ${comm}, not avahi-daemon`);

    const tKill = now();
    avA.daemon.kill('SIGKILL');
    pa.p.kill('SIGKILL');
    const tCut = now();
    await b.linkDown();
    log(`kill -9 of avahi-daemon (pid ${avA.daemon.pid}) and avahi-publish-service on a; b's cable cut; waiting up to ${boundS} s for '-' at c`);

    // One-shot resolves at c meanwhile: would a new client still get the dead instances?
    let waiting = true;
    const probing = (async () => {
      while (waiting) {
        const tp = now();
        const r = await avC.exec('avahi-browse', ['-r', '-p', '-t', '_redis._tcp'], 12_000);
        const rows = parseAvahiBrowse(r.stdout);
        const failed = [...r.stderr.matchAll(/Failed to resolve service '([^']*)'/g)].map((m) => m[1]);
        const st = (n) => (rows.some((x) => x.event === '=' && x.name === n) ? 'resolved' : failed.includes(n) ? 'failed' : rows.some((x) => x.name === n) ? 'listed' : 'absent');
        results.probes.push({ atKillMs: ms(tp - tKill), atCutMs: ms(tp - tCut), tookMs: ms(now() - tp), a: st('redis-a'), b: st('redis-b'), timedOut: r.timedOut });
        const left = probeEveryMs - (now() - tp);
        if (waiting && left > 0) await sleep(left);
      }
    })();
    const [rmA, rmB] = await Promise.all([waitBrowse('-', 'redis-a', tKill, boundS * 1000), waitBrowse('-', 'redis-b', tCut, boundS * 1000)]);
    waiting = false;
    await probing;
    await pa.p.stop(500);
    await avA.daemon.exited;

    const stale = (key, t) => {
      const ps = results.probes;
      const lastOk = ps.filter((x) => x[key] === 'resolved').at(-1);
      const firstNot = ps.find((x) => x[key] !== 'resolved' && (!lastOk || x[t] > lastOk[t]));
      return { lastResolvedMs: lastOk ? lastOk[t] : null, firstNotResolvedMs: firstNot ? firstNot[t] : null, firstNotResolvedState: firstNot?.[key] ?? null };
    };
    results.kill9 = {
      name: 'redis-a',
      removedMs: ms(rmA?.t - tKill),
      boundMs: boundS * 1000,
      repetitions: 1,
      injectedAfterResolvedMs: ms(tKill - ra.t),
      ...stale('a', 'atKillMs'),
    };
    results.linkcut = {
      name: 'redis-b',
      removedMs: ms(rmB?.t - tCut),
      boundMs: boundS * 1000,
      repetitions: 1,
      injectedAfterResolvedMs: ms(tCut - rb.t),
      ...stale('b', 'atCutMs'),
    };
    for (const k of ['kill9', 'linkcut']) {
      const r = results[k];
      log(`${k}: '-' at c ${r.removedMs === null ? `not within ${boundS} s` : `after ${r.removedMs} ms`}; a fresh resolve at c still succeeded at +${r.lastResolvedMs} ms, first not resolved at +${r.firstNotResolvedMs} ms (${r.firstNotResolvedState})`);
    }
    void pb;
  }

  // --- discovery from a cold daemon: avahi-daemon start on a (its D-Bus still up) with a static
  // service file → '=' at c; then SIGTERM to the daemon → '-' at c.
  const conf = join(avA.dir, 'avahi-daemon.conf');
  for (let i = 1; i <= coldRounds; i++) {
    const name = `redis-a-cold${i}`;
    const dir = join(a.dir, `avahi-services-${i}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'redis.service'), `<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<service-group>
  <name>${name}</name>
  <service><type>_redis._tcp</type><port>7001</port></service>
</service-group>
`);
    // as startAvahi (test/lib/avahi.ts), with our service directory bind-mounted
    const script = 'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/avahi-daemon && ' +
      'mount --bind "$1" /etc/avahi/services && ' +
      'exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f "$0"';
    const ev = new Events();
    const t0 = now();
    const d = a.spawn('unshare', ['-m', '--propagation', 'private', '--', 'sh', '-c', script, conf, dir], { env: avA.env, name: '[a] avahi-daemon (cold)' });
    onLines(d, (line, t) => ev.push({ t, line }));
    const [up, est, add, res] = await Promise.all([
      ev.wait((e) => /Server startup complete/.test(e.line), { timeoutMs: 20_000 }),
      ev.wait((e) => /successfully established/.test(e.line), { timeoutMs: 20_000 }),
      waitBrowse('+', name, t0, 20_000),
      waitBrowse('=', name, t0, 20_000),
    ]);
    const row = { name, startupCompleteMs: ms(up?.t - t0), establishedMs: ms(est?.t - t0), newMs: ms(add?.t - t0), resolvedMs: ms(res?.t - t0) };
    results.discoveryCold.push(row);
    log(`cold ${i}: avahi-daemon start → startup complete (host name probed) ${row.startupCompleteMs} ms, service established ${row.establishedMs} ms, '+' at c ${row.newMs} ms, '=' at c ${row.resolvedMs} ms`);
    if (!res) {
      log(`cold ${i}: daemon output: ${d.output.slice(-1500)}`);
      await d.stop(2000);
      continue;
    }
    const drow = await sigtermToRemoval(d, name, 3000);
    results.daemonSigterm.push(drow);
    log(`cold ${i}: avahi-daemon SIGTERM → '-' at c after ${drow.removedMs ?? 'no removal within 10 s'} ms (daemon exit ${drow.exit})`);
    await sleep(1500);
  }
  await browser.stop(1000);
} finally {
  await lab.destroy();
}

const vals = (rows, k) => rows.map((r) => r[k]).filter((x) => Number.isFinite(x));
const stat = (rows, k) => {
  const v = vals(rows, k);
  return { n: v.length, of: rows.length, median: v.length ? median(v) : null, min: v.length ? Math.min(...v) : null, max: v.length ? Math.max(...v) : null };
};
const summary = {
  discovery: { resolved: stat(results.discovery, 'resolvedMs'), established: stat(results.discovery, 'establishedMs') },
  discoveryCold: { resolved: stat(results.discoveryCold, 'resolvedMs'), startupComplete: stat(results.discoveryCold, 'startupCompleteMs'), established: stat(results.discoveryCold, 'establishedMs') },
  sigterm: { removed: stat(results.sigterm, 'removedMs') },
  daemonSigterm: { removed: stat(results.daemonSigterm, 'removedMs') },
};
const notes = [
  'kill9 and linkcut: 1 repetition each, run concurrently (a killed while b\'s cable is cut), each bounded at ' + boundS + ' s.',
  'TTLs Avahi 0.8 sends (seen in a capture of this lab\'s traffic; not re-checked by this script): PTR and TXT 4500 s, SRV and A 120 s; 3 announcements (≈ 0, 1, 3 s after probing); one goodbye (TTL 0) on unpublish. A cache keeps a goodbye record 1 s before removing it (RFC 6762 §10.1).',
  'avahi-browse lists (and removes) services by their PTR record and frees its resolver after the first \'=\'; it is not told when a cached SRV expires.',
  'Passive failure observation (RFC 6762 §10.5) in Avahi only counts queries from other hosts; in this lab only c browses _redis._tcp, so nothing flushes the PTR early.',
  'probes: one-shot `avahi-browse -r -p -t _redis._tcp` on c every ' + probeEveryMs / 1000 + ' s during kill9/linkcut: resolved = a new client would still get the dead instance (SRV, TXT, A from c\'s cache); failed = resolver timed out (records expired, nobody answers).',
];

const md = [];
md.push(`Avahi ${versions.avahiDaemon.replace(/^avahi-daemon /, '')} (${versions.packages}), ${date}; ${rounds} repetition(s) of discovery and SIGTERM, ${coldRounds} cold start(s), kill -9 and link cut once each (concurrently, bound ${boundS} s).`);
md.push('');
const f = (s) => (s.median === null ? '–' : `${s.median} ms (${s.min}–${s.max}, n = ${s.n}${s.n < s.of ? ` of ${s.of}` : ''})`);
md.push(`- discovery, publisher start → '=' at c: ${f(summary.discovery.resolved)}`);
md.push(`- discovery, avahi-daemon start → '=' at c: ${f(summary.discoveryCold.resolved)}`);
md.push(`- SIGTERM to avahi-publish-service → '-' at c: ${f(summary.sigterm.removed)}; to avahi-daemon: ${f(summary.daemonSigterm.removed)}`);
for (const k of ['kill9', 'linkcut']) {
  const r = results[k];
  if (!r) continue;
  md.push(`- ${k} → '-' at c: ${r.removedMs === null ? `not within ${boundS} s` : `${r.removedMs} ms`}; fresh resolve at c: last success +${r.lastResolvedMs ?? '–'} ms, first failure +${r.firstNotResolvedMs ?? '–'} ms`);
}
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify({
  kind: 'failover-avahi', date, durationS: Math.round((Date.now() - t00) / 1000), versions,
  settings: { rounds, coldRounds, boundS, settleMs, probeEveryMs, quick },
  results, summary, notes, markdown: md.join('\n'),
}, null, 1));
console.log(md.join('\n'));
