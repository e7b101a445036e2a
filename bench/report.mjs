#!/usr/bin/env node
// Turns bench/results/*.json into the generated sections of bench/RESULTS.md and an SVG plot.
// Only the text between `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` markers is
// replaced; every other part of RESULTS.md (hand-written analysis, other engineers' sections)
// is kept as it is.
//
//   node bench/report.mjs [--results bench/results] [--md bench/RESULTS.md]
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
const resultsDir = resolve(root, opt('results', 'bench/results'));
const mdFile = resolve(root, opt('md', 'bench/RESULTS.md'));

const f = (x, d = 0) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));
const fr = (x) => (x === undefined || !Number.isFinite(x) ? '–' : `${x.toFixed(2)}×`);
const fk = (x) => (x === undefined || !Number.isFinite(x) ? '–' : x >= 10_000 ? `${(x / 1000).toFixed(0)}k` : x >= 1000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0));
const us = (ms) => (ms === undefined || !Number.isFinite(ms) ? '–' : (ms * 1000).toFixed(0));
const sgn = (ms) => (ms === undefined || !Number.isFinite(ms) ? '–' : `${ms >= 0 ? '+' : ''}${(ms * 1000).toFixed(0)}`);

export function machineTable(m, date, extra = '') {
  return [
    `Machine: ${m.nproc} CPU (${m.cpu}), ${m.memGb} GB, Linux ${m.kernel}; load average at start ${m.load?.join(' ')}.`,
    `Versions: node ${m.node}; ${m.redis}; ${m.haproxy}; ${m.socat}; ${m.iperf3}.`,
    `Run: ${date}${extra}.`,
  ].join('  \n');
}

function datapathSection(d, svgRel) {
  const s = d.summary;
  const paths = d.paths;
  const L = [];
  L.push(machineTable(d.machine, d.date, `, ${d.rounds} interleaved round(s)${d.quick ? ' (--quick sizes)' : ''}, ${Math.round(d.durationS)} s`));
  L.push('');
  if (d.node && Object.keys(d.node).length) {
    L.push(`Node per path: ${Object.entries(d.node).map(([p, v]) => `${p} ${v}`).join(', ')}.  `);
  }
  L.push(`Sizes per run: -P 1: ${d.sizes.p1} requests per command; -P 16: ${d.sizes.p16}; -c 1: ${d.sizes.c1}; churn: ${d.sizes.churn}; iperf3: ${d.sizes.bulkS} s.`);
  L.push('Medians over rounds; ratios are per-round ratios (path ÷ reference in the same round), then the median. Latencies in µs. Proxy CPU is user+system time of the proxy process (and its children), RSS its peak.');
  L.push('');
  L.push(`![ops/s per path and ratio to HAProxy](${svgRel})`);
  L.push('');
  const thr = [
    ['p1', 'redis-benchmark -c 50 -P 1 -t get,set'],
    ['p16', 'redis-benchmark -c 50 -P 16 -t get,set'],
    ['churn', 'connection churn: redis-benchmark -c 50 -k 0 -t get (one connection per request)'],
  ].filter(([t]) => s[t]);
  for (const [t, title] of thr) {
    L.push(`### ${title}`);
    L.push('');
    L.push('| path | ops/s | × direct | × HAProxy | p50 µs | p99 µs | added p99 vs direct µs | proxy CPU µs/op | peak RSS MB |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const p of paths) {
      const r = s[t][p];
      if (!r || !r.n) continue;
      L.push(`| ${p} | ${f(r.ops)} | ${fr(r.vsDirect.ops)} | ${fr(r.vsHaproxy.ops)} | ${us(r.p50)} | ${us(r.p99)} | ${p === 'direct' ? '' : sgn(r.vsDirect.p99Minus)} | ${f(r.proxyCpuUsPerOp, 1)} | ${f(r.peakRssMb, 1)} |`);
    }
    L.push('');
  }
  for (const [t, title] of [
    ['c1', 'added latency, redis-benchmark -c 1 -t get (free scheduling on all CPUs)'],
    ['c1pin', 'added latency, redis-benchmark -c 1 -t get, client, server and proxy pinned to CPU 0 (taskset)'],
  ]) {
    if (!s[t]) continue;
    L.push(`### ${title}`);
    L.push('');
    L.push('| path | ops/s | p50 µs | p99 µs | added p50 µs | added p99 µs | added p99 vs HAProxy µs | proxy CPU µs/op |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const p of paths) {
      const r = s[t][p];
      if (!r || !r.n) continue;
      L.push(`| ${p} | ${f(r.ops)} | ${us(r.p50)} | ${us(r.p99)} | ${p === 'direct' ? '' : sgn(r.vsDirect.p50Minus)} | ${p === 'direct' ? '' : sgn(r.vsDirect.p99Minus)} | ${p === 'haproxy' || p === 'direct' ? '' : sgn(r.vsHaproxy.p99Minus)} | ${f(r.proxyCpuUsPerOp, 1)} |`);
    }
    L.push('');
  }
  for (const [t, title] of [
    ['bulk', `bulk throughput, iperf3 one stream ${d.sizes.bulkS} s, client → server (reads the accepted socket)`],
    ['bulkdown', `bulk throughput, iperf3 -R one stream ${d.sizes.bulkS} s, server → client (reads the connected socket)`],
  ]) {
    if (!s[t]) continue;
    L.push(`### ${title}`);
    L.push('');
    L.push('| path | Gbit/s | × direct | × HAProxy | proxy CPU s | peak RSS MB |');
    L.push('|---|---:|---:|---:|---:|---:|');
    for (const p of paths) {
      const r = s[t][p];
      if (!r || !r.n) continue;
      L.push(`| ${p} | ${f(r.gbps, 2)} | ${fr(r.vsDirect.gbps)} | ${fr(r.vsHaproxy.gbps)} | ${f(r.proxyCpuS, 2)} | ${f(r.peakRssMb, 1)} |`);
    }
    L.push('');
  }
  const errors = d.results.filter((r) => r.error);
  if (errors.length) {
    L.push(`Failed runs (${errors.length}): ` + errors.map((e) => `round ${e.round + 1} ${e.test} ${e.path}: ${e.error.split('\n')[0]}`).join('; '));
    L.push('');
  }
  return L.join('\n');
}

/** Grouped bars: one panel per test, one bar per path (height relative to the panel's best). */
export function datapathSvg(d) {
  const panels = [
    ['p1', 'ops/s -c 50 -P 1', 'ops'],
    ['p16', 'ops/s -c 50 -P 16', 'ops'],
    ['churn', 'conn/s (churn, -k 0)', 'ops'],
    ['c1pin', 'ops/s -c 1 (pinned)', 'ops'],
    ['bulk', 'Gbit/s iperf3', 'gbps'],
    ['bulkdown', 'Gbit/s iperf3 -R', 'gbps'],
  ].filter(([t]) => d.summary[t]);
  const paths = d.paths;
  const colors = ['#7f7f7f', '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
  const pw = 60 + paths.length * 46;
  const ph = 260;
  const W = panels.length * pw + 20;
  const H = ph + 90;
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const o = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  o.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  o.push(`<text x="10" y="16" font-size="13" font-weight="bold">Data path: medians of ${d.rounds} interleaved rounds (${esc(d.date.slice(0, 10))}); label under each bar: ratio to HAProxy</text>`);
  panels.forEach(([t, title, k], i) => {
    const x0 = 10 + i * pw;
    const top = 40;
    const base = top + ph - 60;
    const vals = paths.map((p) => d.summary[t][p]?.[k]);
    const max = Math.max(...vals.filter(Number.isFinite), 1e-9);
    o.push(`<text x="${x0 + pw / 2}" y="${top - 6}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`);
    o.push(`<line x1="${x0 + 20}" y1="${base}" x2="${x0 + pw - 10}" y2="${base}" stroke="#333"/>`);
    paths.forEach((p, j) => {
      const v = vals[j];
      if (!Number.isFinite(v)) return;
      const h = ((base - top - 14) * v) / max;
      const bx = x0 + 26 + j * 46;
      o.push(`<rect x="${bx}" y="${base - h}" width="34" height="${h}" fill="${colors[j % colors.length]}"><title>${esc(p)}: ${v}</title></rect>`);
      o.push(`<text x="${bx + 17}" y="${base - h - 3}" text-anchor="middle" font-size="10">${k === 'gbps' ? v.toFixed(1) : fk(v)}</text>`);
      const rel = d.summary[t][p]?.vsHaproxy?.[k];
      o.push(`<text x="${bx + 17}" y="${base + 13}" text-anchor="middle" font-size="10">${Number.isFinite(rel) ? rel.toFixed(2) + '×' : ''}</text>`);
    });
  });
  // legend
  paths.forEach((p, j) => {
    const lx = 10 + j * 130;
    o.push(`<rect x="${lx}" y="${H - 22}" width="12" height="12" fill="${colors[j % colors.length]}"/>`);
    o.push(`<text x="${lx + 16}" y="${H - 12}">${esc(p)}</text>`);
  });
  o.push('</svg>');
  return o.join('\n');
}

/** bench/conncost.mjs: instructions (callgrind) and system calls (strace) per connection. */
export function conncostSection(c) {
  const L = [];
  L.push(`\`bench/conncost.mjs\`, ${c.date}: ${c.n} connections counted per path (\`redis-benchmark -c ${c.clients} -k 0 -t get\`) after ${c.warmup} to warm up; idle work subtracted; load average at the end ${c.load?.join(' ')}.`);
  L.push('');
  const cg = c.results.filter((r) => r.tool === 'callgrind');
  if (cg.length) {
    L.push('| path | Node | instructions per connection | without JIT compiling | of which GC | other |');
    L.push('|---|---|---:|---:|---:|---:|');
    for (const r of cg) {
      if (r.error) L.push(`| ${r.path} | ${r.node ?? ''} | error | | | |`);
      else L.push(`| ${r.path} | ${r.node ?? ''} | ${fk(r.perConn)} | **${fk(r.steady ?? r.perConn)}** | ${fk(r.detail?.gc)} | ${fk(r.detail?.rest ?? r.perConn)} |`);
    }
    L.push('');
  }
  const st = c.results.filter((r) => r.tool === 'strace' && !r.error);
  if (st.length) {
    const names = [...new Set(st.flatMap((r) => Object.entries(r.detail).filter(([, v]) => v >= 0.5).map(([k]) => k)))].sort();
    L.push(`| path | Node | system calls per connection | ${names.join(' | ')} |`);
    L.push(`|---|---|---:|${names.map(() => '---:').join('|')}|`);
    for (const r of st) L.push(`| ${r.path} | ${r.node ?? ''} | **${f(r.perConn, 1)}** | ${names.map((k) => f(r.detail[k], 1)).join(' | ')} |`);
    L.push('');
  }
  return L.join('\n');
}

function replaceSection(md, name, body, { after } = {}) {
  const begin = `<!-- bench:${name}:begin (generated by bench/report.mjs; edits here are overwritten) -->`;
  const end = `<!-- bench:${name}:end -->`;
  const re = new RegExp(`<!-- bench:${name}:begin[^>]*-->[\\s\\S]*?<!-- bench:${name}:end -->`);
  const block = `${begin}\n${body.trim()}\n${end}`;
  if (re.test(md)) return md.replace(re, () => block);
  // A new block goes right after another generated block when asked to (and that one exists).
  const anchor = after ? `<!-- bench:${after}:end -->` : undefined;
  const at = anchor ? md.indexOf(anchor) : -1;
  if (at >= 0) return `${md.slice(0, at + anchor.length)}\n\n${block}${md.slice(at + anchor.length)}`;
  return `${md.trimEnd()}\n\n${block}\n`;
}

/**
 * The Avahi comparison (bench/failover-avahi.mjs) beside the ambassador's failover figures
 * (bench/failover.mjs); `amb` may be undefined (ambassador column then shows –).
 */
export function failoverAvahiSection(av, amb) {
  const med = (rows, k) => {
    const v = (rows ?? []).map((r) => r[k]).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
    if (!v.length) return undefined;
    const m = v.length >> 1;
    return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  };
  const msf = (x) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : `${Math.round(x)} ms`);
  const sf = (x) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : `${(x / 1000).toFixed(1)} s`);
  const st = (s) => (!s || s.median === null ? '–' : `**${msf(s.median)}**${s.n > 1 ? ` (${s.min}–${s.max} ms, n = ${s.n}${s.n < s.of ? ` of ${s.of}` : ''})` : s.of > 1 ? ` (n = 1 of ${s.of})` : ''}`);
  const ar = amb?.results;
  const s = av.summary;
  const r = av.results;
  const bound = av.settings.boundS;
  const dead = (x) => {
    if (!x) return '–';
    const removed = x.removedMs === null ? `**not removed within ${bound} s**` : `**${msf(x.removedMs)}**`;
    const key = x === r.kill9 ? 'atKillMs' : 'atCutMs';
    const took = (r.probes ?? []).find((p) => p[key] === x.firstNotResolvedMs)?.tookMs;
    const probe = x.lastResolvedMs === null && x.firstNotResolvedMs === null ? ''
      : `; a fresh resolve at c (\`avahi-browse -rpt\`, every ${av.settings.probeEveryMs / 1000} s) still returned it at +${sf(x.lastResolvedMs)}${x.firstNotResolvedMs === null ? ' and up to the bound' : `, ${x.firstNotResolvedState === 'failed' ? 'failed' : `was ${x.firstNotResolvedState}`} from +${sf(x.firstNotResolvedMs)}${x.firstNotResolvedState === 'failed' && Number.isFinite(took) ? ` (after ${sf(took)}: Avahi's resolver timeout)` : ''}`}`;
    return `${removed} (1 run)${probe}`;
  };
  const ambDisc = ar ? `${msf(med(ar.discovery, 'firstOkMs'))} to the first request (endpoint up at c ${msf(med(ar.discovery, 'endpointUpMs'))}; Node process start included)` : '–';
  const L = [];
  L.push(`Same lab as above with Avahi instead of ambassadors: avahi-daemon ${av.versions.avahiDaemon.replace(/^avahi-daemon /, '')} (${av.versions.packages}) on a, b and c (private D-Bus each, IPv4, default TTLs), \`avahi-publish-service NAME _redis._tcp PORT\` on a (and b); on c a continuous \`avahi-browse -r -p _redis._tcp\`, times taken when its lines arrive ('+' new, '=' resolved, '-' removed). ${av.settings.rounds} repetition(s) of discovery and SIGTERM, ${av.settings.coldRounds} cold daemon start(s); kill -9 (a) and link cut (b) once, concurrently, bounded at ${bound} s. ${av.date}${amb ? `; ambassador figures from bench/results/failover.json (${amb.date})` : ''}.`);
  L.push('');
  L.push('| scenario | ambassador median | Avahi + avahi-browse median / observed | note |');
  L.push('|---|---|---|---|');
  L.push(`| discovery: advertiser start → service usable at c | ${ambDisc} | avahi-publish-service start → '=' at c: ${st(s.discovery.resolved)} | daemon already running; the publisher reports "established" (probing done) at ${msf(s.discovery.established.median)} |`);
  L.push(`| discovery from a cold process | (same: the ambassador's figure includes its process start) | avahi-daemon start → '=' at c: ${st(s.discoveryCold.resolved)} | the daemon probes its host name first (startup complete at ${msf(s.discoveryCold.startupComplete.median)}), then the service (static service file) |`);
  L.push(`| SIGTERM → removed at c | ${ar ? msf(med(ar.sigterm, 'detectMs')) : '–'} | avahi-publish-service: ${st(s.sigterm.removed)}; avahi-daemon: ${st(s.daemonSigterm.removed)} | both send goodbyes; Avahi's cache keeps a goodbye record 1 s before removing it |`);
  L.push(`| kill -9 → removed at c | ${ar ? msf(med(ar.kill9, 'detectMs')) : '–'} | ${dead(r.kill9)} | Avahi: daemon and publisher on a killed ${r.kill9 ? sf(r.kill9.injectedAfterResolvedMs) : '–'} after '=' at c |`);
  L.push(`| link cut → removed at c | ${ar ? msf(med(ar.linkcut, 'detectMs')) : '–'} | ${dead(r.linkcut)} | Avahi: b's cable cut ${r.linkcut ? sf(r.linkcut.injectedAfterResolvedMs) : '–'} after '=' at c, while a was killed |`);
  L.push('');
  L.push(...(av.notes ?? []).map((n) => `- ${n}`));
  return L.join('\n');
}

function main() {
  let md = existsSync(mdFile) ? readFileSync(mdFile, 'utf8') : '# Benchmark results\n\nGenerated parts come from `npm run bench` (see docs/benchmarks.md); everything outside the generated blocks is written by hand.\n';
  const dp = join(resultsDir, 'datapath.json');
  if (existsSync(dp)) {
    const d = JSON.parse(readFileSync(dp, 'utf8'));
    const svg = join(resultsDir, 'datapath.svg');
    writeFileSync(svg, datapathSvg(d));
    md = replaceSection(md, 'datapath', datapathSection(d, relative(dirname(mdFile), svg)));
  }
  // Other data path runs (e.g. bench/results/datapath-issue13.json from --out): a block each.
  for (const file of readdirSync(resultsDir).filter((x) => /^datapath-[\w-]+\.json$/.test(x)).sort()) {
    const name = file.replace(/\.json$/, '');
    const d = JSON.parse(readFileSync(join(resultsDir, file), 'utf8'));
    const svg = join(resultsDir, `${name}.svg`);
    writeFileSync(svg, datapathSvg(d));
    md = replaceSection(md, name, datapathSection(d, relative(dirname(mdFile), svg)));
  }
  // conncost-callgrind.json, conncost-strace.json and other runs (--out bench/results/conncost-NAME.json): a block each.
  for (const file of readdirSync(resultsDir).filter((x) => /^conncost-[\w-]+\.json$/.test(x)).sort()) {
    const name = file.replace(/\.json$/, '');
    md = replaceSection(md, name, conncostSection(JSON.parse(readFileSync(join(resultsDir, file), 'utf8'))), { after: 'datapath' });
  }
  for (const extra of ['failover', 'mesh', 'health-load', 'lossy', 'postgres']) {
    const file = join(resultsDir, `${extra}.json`);
    if (!existsSync(file)) continue;
    const d = JSON.parse(readFileSync(file, 'utf8'));
    if (typeof d.markdown === 'string') md = replaceSection(md, extra, d.markdown);
  }
  const fav = join(resultsDir, 'failover-avahi.json');
  if (existsSync(fav)) {
    const av = JSON.parse(readFileSync(fav, 'utf8'));
    const fo = join(resultsDir, 'failover.json');
    const amb = existsSync(fo) ? JSON.parse(readFileSync(fo, 'utf8')) : undefined;
    md = replaceSection(md, 'failover-avahi', failoverAvahiSection(av, amb), { after: 'failover' });
  }
  writeFileSync(mdFile, md);
  console.error(`wrote ${relative(root, mdFile)}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
