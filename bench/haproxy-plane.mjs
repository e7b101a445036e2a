#!/usr/bin/env node
// The HAProxy data plane's reaction time and footprint (--data-plane haproxy):
//
//   node bench/haproxy-plane.mjs [--switches 30] [--rest-s 30] [--out bench/results/haproxy-plane.json]
//
// 1. New endpoint → first connection through HAProxy: the plane of dist/ (the ambassador's own
//    code, in this process) drives a real HAProxy; a client process opens a new connection every
//    2 ms and says which redis answered. At T0 the cluster learns a new endpoint (another redis)
//    and loses the old one; measured: T0 → the batch of runtime API commands applied, and T0 → the
//    start of the first connection the new endpoint served. Repeated --switches times, each time
//    a new endpoint (a free slot filled, the old one retired and freed): no reload.
// 2. Footprint: RSS of the ambassador (`dist/cli/bin.js --data-plane haproxy`, one --connect
//    listener with a --static endpoint) and of its HAProxy, idle, and the CPU they use at rest
//    (health checks, HAProxy's statistics read every second), against the Node data plane.
// Runs in a private network namespace like datapath.mjs.
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawn } from 'node:child_process';
import { cpuSeconds, startProcess, run, sh, sleep, waitPort, tree, treeRssKb } from './lib/proc.mjs';
import { benchArgs } from './lib/args.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
enterPrivateNetns(fileURLToPath(import.meta.url), 'haproxy-plane');

const { opt } = benchArgs();
const switches = Number(opt('switches', 30));
const restS = Number(opt('rest-s', 30));
const outFile = resolve(root, opt('out', 'bench/results/haproxy-plane.json'));
const log = (...a) => console.error(`[haproxy-plane ${new Date().toISOString().slice(11, 19)}]`, ...a);
const dist = (p) => import(pathToFileURL(resolve(root, 'dist', p)).href);

const { Cluster } = await dist('cluster/cluster.js');
const { createLogger } = await dist('logging/logger.js');
const { findHaproxy } = await dist('proxy/haproxy/binary.js');
const { HaproxyPlane } = await dist('proxy/haproxy/plane.js');

const PORTS = { a: 7001, b: 7002, front: 6379 };
const servers = [];
for (const [name, port] of [['a', PORTS.a], ['b', PORTS.b]]) {
  const p = startProcess('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--loglevel', 'warning']);
  servers.push(p);
  await waitPort(port);
  await run('redis-cli', ['-p', String(port), 'set', 'whoami', name]);
}

// ---------- 1. new endpoint → first connection ----------
const binary = await findHaproxy();
const cluster = new Cluster('redis');
const plane = new HaproxyPlane({
  binary, log: createLogger('silent'), connectTimeoutMs: 3000, idleTimeoutMs: 0, queueTimeoutMs: 5000, noEndpointWaitMs: 5000,
  keepConnections: false, slots: 16,
});
plane.frontend({ cluster, service: 'redis', bind: '127.0.0.1', port: PORTS.front, balance: 'round-robin', limits: { maxConnections: 4096, maxPending: 1024, maxPerEndpoint: 4096 } });
await plane.start();
const spec = (id, port) => ({ id, source: 'static', host: '127.0.0.1', port, priority: 0, weight: 0, txt: {}, label: id });

// The client: a new connection every 2 ms, one GET whoami each; prints "startMs who".
const CLIENT = String.raw`
const net = require('node:net');
const port = Number(process.argv[1]);
const stop = Date.now() + Number(process.argv[2]);
(function next() {
  if (Date.now() > stop) return process.exit(0);
  const at = Date.now();
  const s = net.connect(port, '127.0.0.1');
  let buf = '';
  s.setNoDelay(true);
  s.on('connect', () => s.write('GET whoami\r\n'));
  s.on('data', (d) => { buf += d; const m = /\$\d+\r\n(\w+)\r\n/.exec(buf); if (m) { console.log(at + ' ' + m[1]); s.destroy(); setTimeout(next, 2); } });
  s.on('error', () => { console.log(at + ' error'); setTimeout(next, 2); });
})();
`;
let current = spec('a-0', PORTS.a);
cluster.setEndpoints('static', [current]);
await plane.settled();
const client = spawn(process.execPath, ['-e', CLIENT, String(PORTS.front), String(switches * 1500 + 10_000)], { stdio: ['ignore', 'pipe', 'inherit'] });
let lines = '';
client.stdout.on('data', (d) => (lines += d));
const replies = () => lines.split('\n').filter(Boolean).map((l) => { const [at, who] = l.split(' '); return { at: Number(at), who }; });
await sleep(500);
const samples = [];
for (let i = 1; i <= switches; i++) {
  const target = i % 2 === 1 ? 'b' : 'a';
  const next = spec(`${target}-${i}`, PORTS[target]);
  const applied = new Promise((r) => plane.once('applied', r));
  const t0 = Date.now();
  cluster.setEndpoints('static', [next]);
  await applied;
  const appliedMs = Date.now() - t0;
  let first;
  for (let k = 0; k < 500 && !first; k++) {
    await sleep(5);
    first = replies().find((r) => r.who === target && r.at >= t0 - 50);
  }
  if (!first) throw new Error(`no connection served by the new endpoint ${next.id}`);
  // A connection started before T0 and served by the new endpoint started earlier than the
  // change: the change reached it while it was being accepted. Count it from T0.
  samples.push({ appliedMs, firstMs: Math.max(0, first.at - t0) });
  current = next;
  await sleep(300);
}
client.kill('SIGKILL');
const errors = replies().filter((r) => r.who === 'error').length;
const stats = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return { median: s[Math.floor(s.length / 2)], p95: s[Math.floor(s.length * 0.95)], max: s[s.length - 1] };
};
const reaction = { switches, appliedMs: stats(samples.map((s) => s.appliedMs)), firstConnectionMs: stats(samples.map((s) => s.firstMs)), reloads: plane.reloads, clientErrors: errors, connections: replies().length };
log(`new endpoint → runtime API applied: ${JSON.stringify(reaction.appliedMs)} ms; → first connection it served: ${JSON.stringify(reaction.firstConnectionMs)} ms; reloads ${plane.reloads}, ${errors} client errors in ${reaction.connections} connections`);
await plane.stop(0);

// ---------- 2. footprint, idle ----------
async function idleRss(args) {
  const p = startProcess(process.execPath, [resolve(root, 'dist/cli/bin.js'), '--connect', `redis=${PORTS.front}`, '--static', `redis=127.0.0.1:${PORTS.a}`, '--log-level', 'warn', ...args]);
  await waitPort(PORTS.front).catch((e) => { throw new Error(`${e.message}\n${p.out()}`); });
  await sleep(3000);
  const pids = tree(p.pid);
  const total = treeRssKb(p.pid) / 1024;
  const own = Number(/VmRSS:\s+(\d+)/.exec(sh('cat', [`/proc/${p.pid}/status`]))?.[1] ?? 0) / 1024;
  const c0 = cpuSeconds(p.pid);
  await sleep(restS * 1000);
  const cpuMsPerS = ((cpuSeconds(p.pid) - c0) * 1000) / restS;
  await p.stop();
  return { totalMb: +total.toFixed(1), ambassadorMb: +own.toFixed(1), childrenMb: +(total - own).toFixed(1), processes: pids.length, cpuMsPerSecondAtRest: +cpuMsPerS.toFixed(2) };
}
const footprint = { node: await idleRss([]), haproxy: await idleRss(['--data-plane', 'haproxy']) };
log(`idle RSS: Node data plane ${JSON.stringify(footprint.node)}; HAProxy data plane ${JSON.stringify(footprint.haproxy)}`);

for (const s of servers) await s.stop();
const out = { kind: 'haproxy-plane', date: new Date().toISOString(), haproxy: binary.version, node: process.version, reaction, samples, footprint };
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify(out, null, 1));
log(`→ ${outFile}`);
