#!/usr/bin/env node
// What health checking costs the service and the network (issue 16), on a network-namespace lab
// with real redis-server: one redis behind `ambassador --advertise redis=7001` on host db, N idle
// `ambassador --connect redis=6379` on hosts c1..cN, for each N. Measured over a quiet window:
//   connections/s accepted by redis (INFO stats total_connections_received)
//   host probes/s received by the advertiser, bytes each (its /metrics; 0 for builds without them)
// Each build given with --cli NAME=PATH (repeatable; default: this tree's dist/cli/bin.js as "after"),
// e.g. a build of the previous version for "before". Builds run one after the other per N.
//
//   node bench/health-load.mjs [--connectors 5,20,50] [--seconds 10] [--cli before=/tmp/base/dist/cli/bin.js --cli after=dist/cli/bin.js]
//                              [--out bench/results/health-load.json]
import { enterPrivateNetns } from './lib/private-netns.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './lib/args.mjs';
import { importTestLab } from './lib/test-lab.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

enterPrivateNetns(fileURLToPath(import.meta.url), 'bench health-load', { MDNS_AMBASSADOR_TEST_ISOLATED: '1' });

const [{ Lab, startRedis }, { Amb, adminGet, metricSum, redisConnectionsReceived }] =
  await importTestLab('bench health-load', 'lib/netns.js', 'e2e/ambassador-kit.js');

const { argv, opt, quick } = benchArgs();
const counts = opt('connectors', quick ? '5,20' : '5,20,50').split(',').map(Number);
const seconds = Number(opt('seconds', quick ? 5 : 10));
const outFile = resolve(root, opt('out', 'bench/results/health-load.json'));
const clis = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] !== '--cli') continue;
  const [name, path] = argv[i + 1].split('=');
  clis.push({ name, path: resolve(path) });
}
if (clis.length === 0) clis.push({ name: 'after', path: resolve(root, 'dist/cli/bin.js') });
const log = (...a) => console.error(`[health-load ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function start(host, cli, args) {
  const full = [cli, '--log-format', 'json', '--hostname', host.name, '--interface', host.ifname, ...args];
  return new Amb(host, host.spawn(process.execPath, full, { name: `[${host.name}] ambassador ${args.join(' ')}` }), args);
}

const results = [];
for (const n of counts) {
  for (const { name, path } of clis) {
    const names = Array.from({ length: n }, (_, i) => `c${i + 1}`);
    const lab = await Lab.create({ hosts: ['db', ...names], prefix: 'hload' });
    try {
      const db = lab.host('db');
      const redis = await startRedis(db, { port: 7001 });
      const adv = start(db, path, ['--advertise', 'redis=7001', '--admin', '9901']);
      await adv.waitLog({ msg: 'advertisement', state: 'announced' }, { timeoutMs: 20_000 });
      const conns = [];
      for (let i = 0; i < names.length; i += 5) {
        const batch = names.slice(i, i + 5).map((h) => start(lab.host(h), path, ['--connect', 'redis=6379']));
        await Promise.all(batch.map((c) => c.waitLog({ msg: 'endpoint up' }, { timeoutMs: 30_000 })));
        conns.push(...batch);
      }
      await sleep(2000);
      const m0 = await adminGet(db, 9901, '/metrics');
      const r0 = await redisConnectionsReceived(redis);
      const t0 = Date.now();
      await sleep(seconds * 1000);
      const r1 = await redisConnectionsReceived(redis);
      const m1 = await adminGet(db, 9901, '/metrics');
      const secs = (Date.now() - t0) / 1000;
      const d = (k, labels) => metricSum(m1, k, labels) - metricSum(m0, k, labels);
      const probes = d('ambassador_host_probe_requests_received_total');
      const row = {
        build: name,
        connectors: n,
        seconds: Math.round(secs * 10) / 10,
        redisConnectionsPerSec: Math.round(((r1 - r0 - 1) / secs) * 10) / 10,
        advertiserOwnChecksPerSec: Math.round((d('ambassador_health_checks_total', { cluster: 'advertise:redis' }) / secs) * 10) / 10,
        probesReceivedPerSec: Math.round((probes / secs) * 10) / 10,
        probeRepliesPerSec: Math.round((d('ambassador_host_probe_replies_sent_total') / secs) * 10) / 10,
        probeBytes: probes ? Math.round(d('ambassador_host_probe_request_bytes_received_total') / probes) : 0,
        endpointDownEvents: conns.reduce((s, c) => s + c.findAll({ msg: 'endpoint down' }).length, 0),
      };
      results.push(row);
      log(JSON.stringify(row));
    } finally {
      await lab.destroy();
    }
  }
}

const md = [];
md.push(`One redis behind an advertising ambassador, N idle connecting ambassadors (one network namespace each), defaults (\`--health-interval 500\`), ${seconds} s window, ${new Date().toISOString()}.`);
md.push('');
md.push('| connectors | build | connections/s at redis | of which the advertiser\'s own checks | host probes/s received by the advertiser (bytes each, UDP payload) | probe replies/s |');
md.push('|---:|---|---:|---:|---:|---:|');
for (const r of results) {
  md.push(`| ${r.connectors} | ${r.build} | ${r.redisConnectionsPerSec} | ${r.advertiserOwnChecksPerSec} | ${r.probesReceivedPerSec}${r.probeBytes ? ` (${r.probeBytes} B)` : ''} | ${r.probeRepliesPerSec} |`);
}
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify({ kind: 'health-load', date: new Date().toISOString(), seconds, results, markdown: md.join('\n') }, null, 1));
console.log(md.join('\n'));
