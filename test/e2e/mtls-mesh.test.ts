// Mutual TLS between ambassadors on an unsafe LAN, end to end. Certificates are made here with
// openssl: a CA, the genuine server's and the client's certificates, and a rogue self-signed one.
//   srv    redis (requirepass) behind `ambassador --advertise redis=7001,relay-port=7443 --tls-*`
//   rogue  a TLS server with a self-signed certificate that counts every byte it gets,
//          announced as redis with TXT tls=1 by a plain `ambassador --advertise redis=7100,txt.tls=1`
//   cli    `ambassador --connect redis=6379,auth-file=…,tls-name=redis --tls-*`
//   plain  `ambassador --connect redis=6379,protocol=redis` without TLS
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, type Host, type LabProcess, canUseNetns, haveCommand, redisCli, startRedis, waitFor } from '../lib/netns.js';
import { type Amb, runLoop, startAdvertiser, startConnector } from './ambassador-kit.js';
import { haveOpenssl, makeCa, selfSigned, type TestCa } from '../../src/testing/test-ca.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') && haveCommand('redis-cli') ? undefined : 'redis-server/redis-cli not installed')
  ?? (haveOpenssl ? undefined : 'openssl not installed');

const REDIS_PW = 'mtls-redis-Secret-83ac';
const FAST = ['--health-interval', '500'];

// Terminates TLS with whatever certificate it is given, asks for no client certificate, and
// reports every connection (raw bytes received) and every decrypted byte.
const ROGUE = String.raw`
const net = require('node:net'), tls = require('node:tls'), fs = require('node:fs');
const [cert, key, port] = process.argv.slice(1);
const inner = tls.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (s) => {
  console.log('SECURE');
  s.on('data', (d) => console.log('DATA ' + d.length + ' ' + JSON.stringify(d.toString('latin1').slice(0, 40))));
  s.on('error', () => {});
});
inner.on('tlsClientError', () => {});
inner.listen(0, '127.0.0.1', () => {
  // The announced port: counts every raw byte, then hands the stream to the TLS server.
  net.createServer((raw) => {
    const from = raw.remoteAddress;
    let n = 0;
    const up = net.connect(inner.address().port, '127.0.0.1');
    raw.on('data', (d) => { n += d.length; up.write(d); });
    up.on('data', (d) => raw.write(d));
    const end = () => { raw.destroy(); up.destroy(); };
    raw.on('error', end); up.on('error', end); raw.on('end', end); up.on('end', end);
    raw.on('close', () => { up.destroy(); console.log('RAW ' + from + ' ' + n); });
  }).listen(Number(port), '0.0.0.0', () => console.log('listening'));
});
`;

// Connects to the relay with a given certificate, sends a PING and prints what comes back.
const PROBE = String.raw`
const tls = require('node:tls'), fs = require('node:fs');
const [host, port, cert, key, ca] = process.argv.slice(1);
const s = tls.connect({ host, port: Number(port), cert: fs.readFileSync(cert), key: fs.readFileSync(key), ca: fs.readFileSync(ca),
  checkServerIdentity: () => undefined });
let got = '';
s.on('secureConnect', () => { console.log('SERIAL ' + s.getPeerCertificate().serialNumber); s.write('PING\r\n'); });
s.on('data', (d) => { got += d; });
s.on('error', (e) => console.log('ERROR ' + (e.code || e.message)));
s.on('close', () => { console.log('GOT ' + JSON.stringify(got)); process.exit(0); });
setTimeout(() => { console.log('GOT ' + JSON.stringify(got)); process.exit(0); }, 3000);
`;

describe('mutual TLS between ambassadors', { skip }, () => {
  let lab: Lab;
  let ca: TestCa;
  let srvAmb: Amb;
  let cliAmb: Amb;
  let plainAmb: Amb;
  let rogue: LabProcess;
  const live = { cert: '', key: '' };

  const rogueLines = (re: RegExp) => rogue.stdout.split('\n').filter((l) => re.test(l));

  before(async () => {
    lab = await Lab.create({ hosts: ['srv', 'rogue', 'cli', 'plain'] });
    const [srv, rg, cli, plain] = lab.hosts as [Host, Host, Host, Host];
    ca = makeCa(join(lab.tmpdir, 'pki'));
    const srvCert = ca.issue('srv', { sans: ['redis', 'srv'], serial: 100 });
    live.cert = join(lab.tmpdir, 'pki', 'live-srv.crt');
    live.key = join(lab.tmpdir, 'pki', 'live-srv.key');
    copyFileSync(srvCert.cert, live.cert);
    copyFileSync(srvCert.key, live.key);
    const cliCert = ca.issue('cli', { sans: ['cli'] });
    const rogueCert = selfSigned(join(lab.tmpdir, 'pki'), 'rogue', 'redis');
    const authFile = join(lab.tmpdir, 'redis.auth');
    writeFileSync(authFile, `${REDIS_PW}\n`, { mode: 0o600 });

    const r = await startRedis(srv, { port: 7001, bind: '127.0.0.1', password: REDIS_PW });
    assert.equal((await redisCli(srv, ['-p', '7001', '--no-auth-warning', '-a', r.password!, 'set', 'whoami', 'genuine'])).reply, 'OK');
    rogue = rg.spawn(process.execPath, ['-e', ROGUE, rogueCert.cert, rogueCert.key, '7100'], { name: '[rogue] tls byte counter' });
    await rogue.waitForLine(/^listening$/);

    const tlsArgs = (c: { cert: string; key: string }) => ['--tls-cert', c.cert, '--tls-key', c.key, '--tls-ca', ca.cert];
    const [s, rgAdv] = await Promise.all([
      startAdvertiser(srv, ['--advertise', 'redis=7001,relay-port=7443', ...tlsArgs(live), ...FAST]),
      startAdvertiser(rg, ['--advertise', 'redis=7100,txt.tls=1', ...FAST]),
    ]);
    srvAmb = s.amb;
    void rgAdv;
    cliAmb = await startConnector(cli, ['--connect', `redis=6379,auth-file=${authFile},tls-name=redis`, ...tlsArgs(cliCert), ...FAST]);
    plainAmb = await startConnector(plain, ['--connect', 'redis=6379,protocol=redis', '--wait-for-endpoint', '1000', ...FAST]);
    for (const a of [cliAmb, plainAmb]) {
      await a.waitLog({ msg: 'endpoint up', address: `${srv.ip}:7443` });
      await a.waitLog({ msg: 'endpoint up', address: `${rg.ip}:7100` });
    }
  });
  after(async () => {
    await lab?.destroy();
  });

  test('the genuine endpoint serves every request; the rogue gets no application byte', async () => {
    const cli = lab.host('cli');
    for (let i = 0; i < 30; i++) assert.equal((await redisCli(cli, ['get', 'whoami'])).reply, 'genuine', `request ${i}`);
    const failed = await cliAmb.waitLog({ msg: /TLS handshake with endpoint failed/ });
    assert.match(String(failed.code), /SELF_SIGNED|UNABLE_TO_VERIFY/);
    assert.equal(failed.address, `${lab.host('rogue').ip}:7100`);
    const fromCli = new RegExp(`^RAW ${lab.host('cli').ip.replace(/\./g, '\\.')} [1-9]`);
    await waitFor(() => rogueLines(fromCli).length > 0, { timeoutMs: 3000, message: 'the rogue was tried (a TLS ClientHello)' });
    assert.deepEqual(rogueLines(/^(SECURE|DATA)/), [], 'no TLS session and no decrypted byte at the rogue');
    const tried = rogueLines(fromCli).map((l) => l.split(' ')[2]);
    console.log(`# rogue: tried by the connector ${tried.length} time(s), got only handshake bytes (${tried.join(', ')} bytes each), no session, nothing decrypted`);
  });

  test('a connector without TLS refuses the tls=1 endpoints with a clear error instead of sending plaintext', async () => {
    const plain = lab.host('plain');
    const r = await redisCli(plain, ['get', 'whoami']);
    assert.match(r.stdout + r.stderr, /ERR ambassador: no endpoint for 'redis' took the connection \(\d attempt\(s\), last: ETLSREQUIRED\)/);
    const line = await plainAmb.waitLog({ msg: /requires mutual TLS \(TXT tls=1\).*refusing to send it plaintext/ });
    assert.equal(line.service, 'redis');
    // nothing went out: neither the genuine relay nor the rogue saw a connection from plain
    assert.equal(srvAmb.findAll({ msg: /TLS client refused/, remote: new RegExp(`^${plain.ip}:`) } as never).length, 0);
    // (its TCP health checks connect and close: zero bytes)
    const fromPlain = rogueLines(new RegExp(`^RAW ${plain.ip.replace(/\./g, '\\.')} `));
    assert.deepEqual(fromPlain.filter((l) => !l.endsWith(' 0')), [], 'not a byte from the plaintext connector');
  });

  test('a client with a self-signed certificate gets nothing from the genuine relay', async () => {
    const rg = lab.host('rogue');
    const pki = join(lab.tmpdir, 'pki');
    const out = await rg.run(process.execPath, ['-e', PROBE, lab.host('srv').ip, '7443', join(pki, 'rogue.crt'), join(pki, 'rogue.key'), ca.cert]);
    assert.doesNotMatch(out, /PONG|NOAUTH/);
    assert.match(out, /GOT ""/);
    const refused = await srvAmb.waitLog({ msg: /TLS client refused/, remote: new RegExp(`^${rg.ip.replace(/\./g, '\\.')}:`) });
    assert.match(String(refused.code), /CERT|VERIFY|SIGNATURE|ISSUER/);
    const others = srvAmb.findAll({ msg: /TLS client refused/ }).filter((l) => !String(l.remote).startsWith(`${rg.ip}:`));
    assert.deepEqual(others.map((l) => `${l.remote} ${l.code}`), [], 'only the rogue client was refused');
  });

  test('server certificate rotation mid-run: no new connection is dropped', async () => {
    const cli = lab.host('cli');
    const serial = async () => {
      const pki = join(lab.tmpdir, 'pki');
      const out = await cli.run(process.execPath, ['-e', PROBE, lab.host('srv').ip, '7443', join(pki, 'cli.crt'), join(pki, 'cli.key'), ca.cert]);
      return parseInt(/SERIAL (\w+)/.exec(out)?.[1] ?? 'NaN', 16);
    };
    assert.equal(await serial(), 100);
    // Stopped below once 50 connections went through after the change; the count and the deadline
    // only bound it (a loaded machine makes fewer connections a second).
    const loop = runLoop(cli, { count: 2000, intervalMs: 5, deadlineMs: 90_000, timeoutMs: 5000 });
    await loop.waitCount(30);
    const next = ca.issue('srv', { sans: ['redis', 'srv'], serial: 200, file: 'srv-200' });
    const since = Date.now();
    // As a certificate manager does: new files next to the live ones, then renamed over them.
    copyFileSync(next.key, `${live.key}.new`);
    copyFileSync(next.cert, `${live.cert}.new`);
    renameSync(`${live.key}.new`, live.key);
    renameSync(`${live.cert}.new`, live.cert);
    await srvAmb.waitLog({ msg: /TLS certificate files changed/ }, { since, timeoutMs: 10_000 });
    assert.equal(await serial(), 200);
    const at = loop.conns().length;
    await loop.waitCount(at + 50);
    loop.proc.kill('SIGTERM');
    await loop.proc.exited;
    const rs = loop.conns();
    const failed = rs.filter((c) => !c.ok);
    console.log(`# rotation: ${rs.length} connections across the certificate change, ${failed.length} failed, served by ${JSON.stringify(loop.summary().byWho)}`);
    assert.deepEqual(failed.map((f) => f.err), []);
    assert.ok(rs.every((c) => c.who === 'genuine'));
  });
});
