// Summarise a V8 .cpuprofile: self time per function (top N) and total time per file.
import { readFileSync } from 'node:fs';
const [file, topArg] = process.argv.slice(2);
const top = Number(topArg ?? 30);
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = p.timeDeltas;
const count = new Map();
for (let i = 0; i < p.samples.length; i++) count.set(p.samples[i], (count.get(p.samples[i]) ?? 0) + (dt[i] ?? 0));
let total = 0;
const files = new Map();
for (const [id, us] of count) {
  const n = byId.get(id);
  const cf = n.callFrame;
  const key = `${cf.functionName || '(anon)'} ${cf.url.replace(/^.*\/(node_modules|dist|internal)\//, '$1/')}:${cf.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + us);
  const f = cf.url ? cf.url.replace(/^.*\/(node_modules\/[^/]+|dist|internal)\/.*$/, '$1') : cf.functionName;
  files.set(f, (files.get(f) ?? 0) + us);
  total += us;
}
const pct = (x) => ((100 * x) / total).toFixed(1).padStart(5) + '%';
console.log(`total ${(total / 1e6).toFixed(2)} s sampled`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(pct(v), k);
console.log('--- by file');
for (const [k, v] of [...files].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(pct(v), k);
