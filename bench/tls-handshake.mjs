#!/usr/bin/env node
// Cost of mutual TLS on the ambassador-to-ambassador hop, on 127.0.0.1 only (no traffic leaves
// the machine; nothing multicast). Needs `npm run build` and the openssl command.
//
//   node bench/tls-handshake.mjs [--n 300]
//
// For N sequential connections each (bounded), prints median / p90 / p99 of:
//   connect      plain TCP connect to the relay vs a mutual TLS 1.3 handshake (P-256 certificates)
//   first reply  a new client connection through connector → relay → echo target, until the first
//                echoed byte, without and with TLS between connector and relay
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const dist = new URL('../dist/', import.meta.url);
const { TlsMaterial } = await import(new URL('proxy/tls.js', dist));
const { RelayListener } = await import(new URL('proxy/relay.js', dist));
const { ConnectListener } = await import(new URL('proxy/listener.js', dist));
const { Cluster } = await import(new URL('cluster/cluster.js', dist));
/** Resolves once `s` is usable: connected, and for a TLS socket its handshake done. */
function ready(s) {
  return new Promise((resolve, reject) => {
    s.once(s.encrypted === true ? 'secureConnect' : 'connect', () => resolve(s));
    s.once('error', reject);
  });
}

const argv = process.argv.slice(2);
const N = Math.min(5000, Number(argv[argv.indexOf('--n') + 1] ?? 0) || 300);

const dir = mkdtempSync(join(tmpdir(), 'amb-tls-bench-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const ssl = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
ssl('req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=bench CA');
for (const n of ['server', 'client']) {
  writeFileSync(join(dir, `${n}.ext`), `subjectAltName=DNS:${n}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  ssl('req', '-new', ...EC, '-keyout', `${n}.key`, '-out', `${n}.csr`, '-subj', `/CN=${n}`);
  ssl('x509', '-req', '-in', `${n}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '7', '-out', `${n}.crt`, '-days', '1', '-extfile', `${n}.ext`);
}
const f = (n) => ({ cert: join(dir, `${n}.crt`), key: join(dir, `${n}.key`), ca: join(dir, 'ca.crt') });
const server = await TlsMaterial.load(f('server'));
const client = await TlsMaterial.load(f('client'));

const echo = net.createServer((s) => s.pipe(s));
await new Promise((r) => echo.listen(0, '127.0.0.1', r));
const target = { host: '127.0.0.1', port: echo.address().port };
const plainRelay = new RelayListener({ target, host: '127.0.0.1' });
const tlsRelay = new RelayListener({ target, host: '127.0.0.1', createServer: server.createServer });
const plainPort = (await plainRelay.listen()).port;
const tlsPort = (await tlsRelay.listen()).port;

async function connector(port, createConnection) {
  const cluster = new Cluster('bench');
  cluster.setEndpoints('static', [{ id: 'r', source: 'static', host: '127.0.0.1', port, priority: 0, weight: 0, txt: {}, label: 'r' }]);
  const l = new ConnectListener({ cluster, port: 0, createConnection });
  return { l, cluster, port: (await l.listen()).port };
}
const cPlain = await connector(plainPort);
const cTls = await connector(tlsPort, client.createConnection());

const ep = (port) => ({ host: '127.0.0.1', port, txt: {}, label: 'r', key: 'r', address: `127.0.0.1:${port}` });
const createTls = client.createConnection();
function firstReply(port) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect(port, '127.0.0.1', () => s.write('x'));
    s.once('data', () => { resolve(performance.now() - t0); s.destroy(); });
    s.once('error', reject);
  });
}

const series = { 'connect: plain TCP': [], 'connect: mutual TLS 1.3': [], 'first reply: plain hop': [], 'first reply: mTLS hop': [] };
const deadline = Date.now() + 60_000;
for (let i = 0; i < N && Date.now() < deadline; i++) {
  let t0 = performance.now();
  (await ready(net.connect({ host: '127.0.0.1', port: plainPort }))).destroy();
  series['connect: plain TCP'].push(performance.now() - t0);
  t0 = performance.now();
  (await ready(createTls(ep(tlsPort)))).destroy();
  series['connect: mutual TLS 1.3'].push(performance.now() - t0);
  series['first reply: plain hop'].push(await firstReply(cPlain.port));
  series['first reply: mTLS hop'].push(await firstReply(cTls.port));
}

const q = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
console.log(`node ${process.version}, ${series['connect: plain TCP'].length} connections each, loopback`);
console.log('| measure | median ms | p90 ms | p99 ms |\n|---|---|---|---|');
for (const [name, xs] of Object.entries(series)) {
  console.log(`| ${name} | ${q(xs, 0.5).toFixed(3)} | ${q(xs, 0.9).toFixed(3)} | ${q(xs, 0.99).toFixed(3)} |`);
}
await Promise.all([cPlain.l.close(), cTls.l.close(), plainRelay.close(), tlsRelay.close()]);
cPlain.cluster.close();
cTls.cluster.close();
echo.close();
