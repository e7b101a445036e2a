#!/usr/bin/env node
// Loops and limits (issue 20), measured on loopback in a private network namespace:
//   A. the self-loop of the issue (--connect redis=P --advertise redis=P) and one client: exit, or
//      connections accepted and file descriptors over 4 s;
//   B. a loop no check catches (two relays with fixed relay-ports pointed at each other) and one
//      client: how far the chain grows before a circuit breaker stops it, and how long that takes;
//   C. refusal latency past max-connections (connect → RESP error) next to a served connection
//      (connect → first echoed byte), sequential, median and p99.
//
//   sudo node bench/loops.mjs [--cli dist/cli/bin.js] [--baseline OTHER/dist/cli/bin.js] [--n 500]
//
// Every loop is bounded (4 s of sampling, 20 s per chain, --n connections). Wall-clock figures:
// run on an idle machine for absolute numbers; the comparisons are within one run.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { benchArgs } from './lib/args.mjs';

const here = dirname(fileURLToPath(import.meta.url));
enterPrivateNetns(fileURLToPath(import.meta.url), 'bench loops');
const { opt } = benchArgs(process.argv.slice(2));
const cli = resolve(opt('cli', resolve(here, '../dist/cli/bin.js')));
const baseline = opt('baseline') ? resolve(opt('baseline')) : undefined;
const N = Number(opt('n', '500'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let nextPort = 20000;
const port = () => nextPort++;

function start(bin, args) {
  const p = spawn(process.execPath, [bin, '--log-format', 'json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.out = '';
  p.err = '';
  p.stdout.setEncoding('utf8').on('data', (d) => (p.out += d));
  p.stderr.setEncoding('utf8').on('data', (d) => (p.err += d));
  p.done = new Promise((r) => p.once('close', (code) => r(code)));
  return p;
}
const fds = (p) => { try { return readdirSync(`/proc/${p.pid}/fd`).length; } catch { return NaN; } };
const stop = async (p) => { if (p.exitCode === null) { p.kill('SIGKILL'); await p.done; } };

function metrics(adminPort) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: adminPort, path: '/metrics', timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => {
        const out = {};
        for (const line of body.split('\n')) {
          const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
          if (m) out[m[1]] = (out[m[1]] ?? 0) + Number(m[3]);
        }
        resolve(out);
      });
    });
    req.on('error', () => resolve({}));
    req.on('timeout', () => req.destroy());
  });
}

/** Connects, sends `data`, resolves with { ms, got } once closed (or after timeoutMs). */
function oneClient(p, data = 'PING\r\n', timeoutMs = 20_000) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ port: p, host: '127.0.0.1' });
    let got = '';
    const t = setTimeout(() => { s.destroy(); resolve({ ms: performance.now() - t0, got, timeout: true }); }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(data));
    s.on('data', (d) => (got += d));
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(t); resolve({ ms: performance.now() - t0, got }); });
  });
}

async function selfLoop(bin, label) {
  const [p, admin] = [port(), port()];
  const amb = start(bin, ['--interface', '127.0.0.1', '--connect', `redis=${p}`, '--advertise', `redis=${p}`, '--admin', String(admin)]);
  const early = await Promise.race([amb.done.then((code) => ({ code })), sleep(3000).then(() => undefined)]);
  if (early) {
    console.log(`A ${label}: exit ${early.code} at start: ${amb.err.trim()}`);
    return;
  }
  const samples = [];
  const client = oneClient(p, 'PING\r\n', 4000);
  for (let t = 250; t <= 4000; t += 250) {
    await sleep(250);
    const m = await metrics(admin);
    samples.push(`${(t / 1000).toFixed(2)} s: ${m.ambassador_connections_accepted_total ?? '?'} accepted, ${fds(amb)} fds`);
  }
  const c = await client;
  const emfile = (amb.out.match(/EMFILE/g) ?? []).length;
  console.log(`A ${label}: running; client got ${JSON.stringify(c.got)}${c.timeout ? ' (no answer in 4 s)' : ''}; EMFILE in ${emfile} log lines\n    ${samples.filter((_, i) => i % 4 === 3).join('\n    ')}`);
  await stop(amb);
}

async function relayLoop(bin, label) {
  const [r1, r2, admin] = [port(), port(), port()];
  const p1 = start(bin, ['--interface', '127.0.0.1', '--hostname', 'one', '--advertise', `x=127.0.0.1:${r2},relay-port=${r1}`, '--admin', String(admin)]);
  const p2 = start(bin, ['--interface', '127.0.0.1', '--hostname', 'two', '--advertise', `y=127.0.0.1:${r1},relay-port=${r2}`]);
  await sleep(2500);
  const fds0 = fds(p1);
  let peak = fds0;
  let sampling = true;
  const sampler = (async () => { while (sampling) { peak = Math.max(peak, fds(p1)); await sleep(5); } })();
  const c = await oneClient(r1, 'x', 20_000);
  sampling = false;
  await sampler;
  const m = await metrics(admin);
  const refusedLine = p1.out.split('\n').find((l) => l.includes('relay refusing clients'));
  console.log(`B ${label}: one client of relay 1 closed after ${c.ms.toFixed(0)} ms${c.timeout ? ' (timeout)' : ''}; relay 1 accepted ${m.ambassador_relay_connections_accepted_total ?? '?'}, refused ${m.ambassador_relay_connections_refused_total ?? 'n/a'}; p1 fds ${fds0} → peak ${peak} → ${fds(p1)}; alive ${p1.exitCode === null && p2.exitCode === null}${refusedLine ? `; log: ${JSON.parse(refusedLine).msg}` : ''}`);
  await stop(p1);
  await stop(p2);
}

function pct(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

async function refusalLatency(bin, label) {
  const echo = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
  await new Promise((r) => echo.listen(0, '127.0.0.1', r));
  const up = echo.address().port;
  const [limited, free] = [port(), port()];
  const amb = start(bin, ['--connect', `echo=${limited},protocol=redis,max-connections=50`, '--static', `echo=127.0.0.1:${up}`,
    '--connect', `free=${free}`, '--static', `free=127.0.0.1:${up}`, '--log-level', 'warn']);
  await sleep(1500);
  const held = [];
  for (let i = 0; i < 50; i++) {
    const s = net.connect({ port: limited, host: '127.0.0.1' });
    s.on('error', () => {});
    await new Promise((r) => { s.once('data', r); s.on('connect', () => s.write('x')); });
    held.push(s);
  }
  const refused = [];
  for (let i = 0; i < N; i++) refused.push((await oneClient(limited, '', 5000)).ms);
  const served = [];
  for (let i = 0; i < N; i++) {
    served.push(await new Promise((resolve) => {
      const t0 = performance.now();
      const s = net.connect({ port: free, host: '127.0.0.1' });
      s.on('connect', () => s.write('x'));
      s.once('data', () => { resolve(performance.now() - t0); s.destroy(); });
      s.on('error', () => resolve(NaN));
    }));
  }
  const f = (xs) => `median ${pct(xs, 0.5).toFixed(3)} ms, p99 ${pct(xs, 0.99).toFixed(3)} ms`;
  console.log(`C ${label}: refused past max-connections (connect → RESP error, closed): ${f(refused)}; served on another listener (connect → first echoed byte): ${f(served)}; ${N} each`);
  // A flood: 10 × 500 clients at once past the limit.
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${amb.pid}/status`, 'utf8'))[1]);
  const [fds0, rss0] = [fds(amb), rss()];
  let peakFds = fds0;
  let peakRss = rss0;
  let replies = 0;
  for (let round = 0; round < 10; round++) {
    const batch = await Promise.all(Array.from({ length: 500 }, () => oneClient(limited, '', 5000)));
    replies += batch.filter((r) => r.got.startsWith('-ERR')).length;
    peakFds = Math.max(peakFds, fds(amb));
    peakRss = Math.max(peakRss, rss());
  }
  console.log(`C ${label}: flood of 10 × 500 clients at once past max-connections=50: ${replies} RESP errors, the rest closed; fds ${fds0} → peak ${peakFds} → ${fds(amb)}; RSS ${(rss0 / 1024).toFixed(1)} → peak ${(peakRss / 1024).toFixed(1)} MB`);
  for (const s of held) s.destroy();
  await stop(amb);
  echo.close();
}

console.log(`bench loops: node ${process.version}, fd limit ${process.env.BENCH_FD ?? 'as inherited'}`);
if (baseline) await selfLoop(baseline, 'baseline');
await selfLoop(cli, 'this build');
if (baseline) await relayLoop(baseline, 'baseline');
await relayLoop(cli, 'this build');
await refusalLatency(cli, 'this build');
