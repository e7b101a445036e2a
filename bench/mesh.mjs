#!/usr/bin/env node
// Mesh scale (issue 7, section 3) on a network-namespace lab: N hosts, each with a small TCP
// service (socat on :7000) and one ambassador that advertises it as sI and connects to s(I+1)
// (and browses for a service "fresh" that appears later). Measures steady-state multicast
// packets and bytes per minute on the lab's bridge (tcpdump in the switch namespace), each
// ambassador's RSS and CPU, and the time for a new service ("fresh") to be seen by every
// ambassador. Then the same services with N avahi-daemons (avahi-publish-service sI, plus a
// continuous avahi-browse for s(I+1) on every host) for the packet count comparison.
//
//   node bench/mesh.mjs [--quick] [--n 10,50] [--capture-s 30] [--no-avahi] [--out FILE]
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { dirname, resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, treeRssKb, median, sh, sleep } from './lib/proc.mjs';
import { benchArgs } from './lib/args.mjs';
import { importTestLab } from './lib/test-lab.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

// --render FILE: rewrite the markdown of an existing result file (no lab, no root).
if (process.argv.includes('--render')) {
  const file = resolve(process.argv[process.argv.indexOf('--render') + 1]);
  const d = JSON.parse(readFileSync(file, 'utf8'));
  d.markdown = render(d.results, d.captureS, d.settleS ?? 20, d.date);
  writeFileSync(file, JSON.stringify(d, null, 1));
  console.log(d.markdown);
  process.exit(0);
}

enterPrivateNetns(fileURLToPath(import.meta.url), 'bench mesh', { MDNS_AMBASSADOR_TEST_ISOLATED: '1' });

const [{ Lab, waitFor }, { startAmbassador, CLI, Amb }, avahiLib] =
  await importTestLab('bench mesh', 'lib/netns.js', 'e2e/ambassador-kit.js', 'lib/avahi.js');

const { argv, opt, quick } = benchArgs();
const sizes = opt('n', quick ? '10' : '10,50').split(',').map(Number);
const captureS = Number(opt('capture-s', quick ? 15 : 30));
const settleS = Number(opt('settle-s', quick ? 5 : 20));
const withAvahi = !argv.includes('--no-avahi') && !avahiLib.canUseAvahi();
const outFile = resolve(root, opt('out', 'bench/results/mesh.json'));
const log = (...a) => console.error(`[mesh ${new Date().toISOString().slice(11, 19)}]`, ...a);

/**
 * Packets and bytes (on the wire) in a pcap file (Ethernet, IPv4/UDP), split into mDNS queries
 * and responses, with the most frequent first question names of the queries.
 */
function pcapCount(file) {
  const b = readFileSync(file);
  const out = { packets: 0, bytes: 0, queries: 0, responses: 0, questions: 0, queryNames: {} };
  if (b.length < 24) return out;
  const le = b.readUInt32LE(0) === 0xa1b2c3d4 || b.readUInt32LE(0) === 0xa1b23c4d;
  const u32 = (o) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  let off = 24;
  while (off + 16 <= b.length) {
    const incl = u32(off + 8);
    out.bytes += u32(off + 12);
    out.packets++;
    const pkt = b.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    if (pkt.length < 14 + 20 + 8 + 12 || pkt.readUInt16BE(12) !== 0x0800) continue;
    const dns = 14 + (pkt[14] & 0x0f) * 4 + 8;
    if (pkt.length < dns + 12) continue;
    if (pkt[dns + 2] & 0x80) {
      out.responses++;
      continue;
    }
    out.queries++;
    out.questions += pkt.readUInt16BE(dns + 4);
    const labels = [];
    for (let q = dns + 12; q < pkt.length && pkt[q] > 0 && pkt[q] < 64 && labels.length < 10; q += pkt[q] + 1) {
      labels.push(pkt.subarray(q + 1, q + 1 + pkt[q]).toString('latin1'));
    }
    const name = labels.join('.') || '?';
    out.queryNames[name] = (out.queryNames[name] ?? 0) + 1;
  }
  return out;
}

async function capture(lab, name) {
  const file = join(lab.tmpdir, `${name}.pcap`);
  const p = lab.spawnOnSwitch('tcpdump', ['-i', 'br0', '-n', '-U', '-w', file, 'udp port 5353']);
  await sleep(1000);
  return {
    async stop() {
      p.kill('SIGINT');
      await Promise.race([p.exited, sleep(3000)]);
      await p.stop(500);
      return pcapCount(file);
    },
  };
}

function hostsFor(n) {
  return Array.from({ length: n }, (_, i) => `h${i + 1}`);
}

async function meshAmbassador(n) {
  const t0 = Date.now();
  const lab = await Lab.create({ hosts: hostsFor(n), prefix: 'mesh' });
  log(`N=${n}: lab up in ${Date.now() - t0} ms`);
  try {
    const hosts = hostsFor(n).map((h) => lab.host(h));
    for (const h of hosts) h.spawn('socat', ['TCP-LISTEN:7000,fork,reuseaddr', 'EXEC:/bin/true']);
    const ambs = [];
    for (let i = 0; i < n; i++) {
      const next = `s${((i + 1) % n) + 1}`;
      ambs.push(startAmbassador(hosts[i], ['--advertise', `s${i + 1}=7000`, '--connect', `${next}=7100`, '--connect', 'fresh=7200']));
      if (i % 10 === 9) await sleep(500); // do not start 50 Node processes in the same instant
    }
    const tStart = Date.now();
    await waitFor(() => ambs.every((a, i) => a.find({ msg: 'endpoint up', service: `s${((i + 1) % n) + 1}` })), {
      timeoutMs: 60_000 + n * 1000,
      intervalMs: 200,
      message: `every ambassador sees its next service (N=${n})`,
    });
    const convergedMs = Date.now() - tStart;
    log(`N=${n}: every ambassador sees its service ${convergedMs} ms after the last start`);
    await sleep(settleS * 1000);
    const pids = ambs.map((a) => a.proc.pid);
    const cap = await capture(lab, 'amb');
    const cpu0 = pids.map(cpuSeconds);
    const w0 = Date.now();
    await sleep(captureS * 1000);
    const cpu1 = pids.map(cpuSeconds);
    const wallS = (Date.now() - w0) / 1000;
    const traffic = await cap.stop();
    const rssMb = pids.map((p) => treeRssKb(p) / 1024);
    const cpuPct = cpu1.map((c, i) => (100 * (c - cpu0[i])) / wallS);
    // A new service appears: how long until every ambassador has it as an endpoint?
    const tNew = Date.now();
    const fresh = hosts[0].spawn(process.execPath, [CLI, '--log-format', 'json', '--hostname', 'fresh-h1', '--interface', hosts[0].ifname, '--advertise', 'fresh=7000']);
    const freshAmb = new Amb(hosts[0], fresh, []);
    let freshAllMs = NaN;
    let freshMedianMs = NaN;
    try {
      await waitFor(() => ambs.every((a) => a.find({ msg: 'endpoint up', service: 'fresh' }, tNew)), { timeoutMs: 30_000, intervalMs: 100, message: 'fresh seen by all' });
      const times = ambs.map((a) => a.find({ msg: 'endpoint up', service: 'fresh' }, tNew).time - tNew);
      freshAllMs = Math.max(...times);
      freshMedianMs = median(times);
    } catch (e) {
      log(`N=${n}: ${e.message}`);
    }
    const announced = freshAmb.find({ msg: 'advertisement', state: 'announced' });
    const row = {
      n,
      convergedMs,
      captureS: wallS,
      ...perMinute(traffic, wallS),
      rssMbMedian: median(rssMb),
      rssMbMax: Math.max(...rssMb),
      cpuPctMedian: median(cpuPct),
      cpuPctMax: Math.max(...cpuPct),
      freshAnnouncedMs: announced ? announced.time - tNew : NaN,
      freshMedianMs,
      freshAllMs,
    };
    log(`N=${n} ambassador: ${row.packetsPerMin.toFixed(0)} packets/min, ${(row.bytesPerMin / 1024).toFixed(1)} KiB/min, RSS median ${row.rssMbMedian.toFixed(1)} MB (max ${row.rssMbMax.toFixed(1)}), CPU median ${row.cpuPctMedian.toFixed(2)} % (max ${row.cpuPctMax.toFixed(2)}), new service seen by all in ${freshAllMs} ms (announced at ${row.freshAnnouncedMs} ms)`);
    return row;
  } finally {
    await lab.destroy();
  }
}

async function meshAvahi(n) {
  const lab = await Lab.create({ hosts: hostsFor(n), prefix: 'meshav' });
  try {
    const hosts = hostsFor(n).map((h) => lab.host(h));
    const daemons = [];
    for (let i = 0; i < n; i += 10) daemons.push(...(await Promise.all(hosts.slice(i, i + 10).map((h) => avahiLib.startAvahi(h)))));
    for (let i = 0; i < n; i += 10) {
      await Promise.all(hosts.slice(i, i + 10).map((h, k) => avahiLib.avahiPublish(h, `s${i + k + 1}`, `_s${i + k + 1}._tcp`, 7000)));
    }
    // Each host also keeps browsing (and resolving) the service it would connect to, and "fresh"
    // (not published), as the ambassadors do.
    daemons.forEach((d, i) => d.spawn('avahi-browse', ['-p', '-r', `_s${((i + 1) % n) + 1}._tcp`]));
    daemons.forEach((d) => d.spawn('avahi-browse', ['-p', '-r', '_fresh._tcp']));
    await sleep(settleS * 1000);
    const cap = await capture(lab, 'avahi');
    const w0 = Date.now();
    const pids = daemons.map((d) => d.daemon.pid);
    const cpu0 = pids.map(cpuSeconds);
    await sleep(captureS * 1000);
    const cpu1 = pids.map(cpuSeconds);
    const wallS = (Date.now() - w0) / 1000;
    const traffic = await cap.stop();
    const rssMb = pids.map((p) => treeRssKb(p) / 1024);
    const row = {
      n,
      captureS: wallS,
      ...perMinute(traffic, wallS),
      rssMbMedian: median(rssMb),
      cpuPctMedian: median(cpu1.map((c, i) => (100 * (c - cpu0[i])) / wallS)),
    };
    log(`N=${n} avahi: ${row.packetsPerMin.toFixed(0)} packets/min, ${(row.bytesPerMin / 1024).toFixed(1)} KiB/min, avahi-daemon RSS median ${row.rssMbMedian.toFixed(1)} MB`);
    return row;
  } finally {
    await lab.destroy();
  }
}

const results = { ambassador: [], avahi: [] };
for (const n of sizes) {
  results.ambassador.push(await meshAmbassador(n));
  if (withAvahi) results.avahi.push(await meshAvahi(n).catch((e) => ({ n, error: e.message })));
}

const md = render(results, captureS, settleS, new Date().toISOString());
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify({ kind: 'mesh', date: new Date().toISOString(), captureS, settleS, results, markdown: md }, null, 1));
console.log(md);

/** The markdown block of RESULTS.md for a mesh run. */
/** A capture's counts as rates per minute, and its most asked names. */
function perMinute(traffic, wallS) {
  const rate = (n) => (n * 60) / wallS;
  return {
    packetsPerMin: rate(traffic.packets),
    bytesPerMin: rate(traffic.bytes),
    queriesPerMin: rate(traffic.queries),
    questionsPerMin: rate(traffic.questions),
    responsesPerMin: rate(traffic.responses),
    topQueries: Object.entries(traffic.queryNames).sort((x, y) => y[1] - x[1]).slice(0, 20),
  };
}

function render(results, captureS, settleS, date) {
  const f = (x, d = 0) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));
  const md = [];
  md.push(`Lab: N network namespaces on one bridge; each host runs a TCP service on :7000 and \`ambassador --advertise sI=7000 --connect s(I+1)=7100 --connect fresh=7200\` (default settings, JSON logs at info). Steady state: capture of UDP 5353 on the bridge for ${captureS} s, starting ${settleS} s after every ambassador saw its next service. Avahi: one avahi-daemon per host publishing sI (avahi-publish-service), with continuous \`avahi-browse -r _s(I+1)._tcp\` and \`avahi-browse -r _fresh._tcp\` (the questions the ambassadors keep asking), captured after the same settling time. ${date}.`);
  md.push('');
  md.push('| N | mesh | multicast packets/min (all queries) | questions/min | KiB/min | RSS per process MB (median / max) | CPU per process % (median / max) | new service seen by all (median / last) | all saw their next service after start |');
  md.push('|---:|---|---:|---:|---:|---|---|---|---:|');
  for (const r of results.ambassador) {
    md.push(`| ${r.n} | ambassador | ${f(r.packetsPerMin)} | ${f(r.questionsPerMin)} | ${f(r.bytesPerMin / 1024, 1)} | ${f(r.rssMbMedian, 1)} / ${f(r.rssMbMax, 1)} | ${f(r.cpuPctMedian, 2)} / ${f(r.cpuPctMax, 2)} | ${f(r.freshMedianMs)} / ${f(r.freshAllMs)} ms | ${f(r.convergedMs)} ms |`);
    const a = results.avahi.find((x) => x.n === r.n);
    if (a && !a.error) md.push(`| ${a.n} | avahi-daemon | ${f(a.packetsPerMin)} | ${f(a.questionsPerMin)} | ${f(a.bytesPerMin / 1024, 1)} | ${f(a.rssMbMedian, 1)} | ${f(a.cpuPctMedian, 2)} | – | – |`);
    else if (a) md.push(`| ${a.n} | avahi-daemon | failed: ${a.error.split('\n')[0]} | | | | | | |`);
  }
  return md.join('\n');
}
