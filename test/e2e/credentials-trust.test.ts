// Credentials never go to a peer whose identity was not proven, on one LAN segment:
//   srv    a genuine redis (requirepass) behind `ambassador --advertise redis=7001`
//   rogue  a plain TCP listener that records every byte, announced by `ambassador --advertise redis=7002`
//   cli    `ambassador --connect redis=6379,auth-file=…` in several configurations
// Without TLS, credentials for an mDNS-discovered service are refused at start; endpoints the
// operator named get them; --trusted-lan keeps the old behaviour with a warning (log and /peers).
// The mutual-TLS case (a rogue announcer gets no byte) is test/e2e/mtls-mesh.test.ts.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, type Host, type LabProcess, canUseNetns, haveCommand, redisCli, startRedis } from '../lib/netns.js';
import { type Amb, startAdvertiser, startAmbassador, startConnector } from './ambassador-kit.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') && haveCommand('redis-cli') ? undefined : 'redis-server/redis-cli not installed');

const SECRET = 's3cret-pass-18';
const FAST = ['--health-interval', '500'];

// Accepts anything, answers nothing, prints the running total of bytes received.
const RECORDER = String.raw`
const net = require('node:net');
let total = 0, seen = '';
net.createServer((s) => {
  s.on('data', (d) => { total += d.length; seen += d.toString('latin1'); console.log('BYTES ' + total + ' ' + JSON.stringify(seen.slice(-60))); });
  s.on('error', () => {});
}).listen(Number(process.argv[1]), '0.0.0.0', () => console.log('listening'));
`;

describe('credentials and unauthenticated announcers', { skip }, () => {
  let lab: Lab;
  let rogue: LabProcess;
  let authFile: string;
  const ambs: Amb[] = [];

  const rogueBytes = () => rogue.stdout.split('\n').filter((l) => l.startsWith('BYTES')).join('\n');

  before(async () => {
    lab = await Lab.create({ hosts: ['srv', 'rogue', 'cli'] });
    const [srv, rg] = lab.hosts as [Host, Host, Host];
    authFile = join(lab.tmpdir, 'redis.auth');
    writeFileSync(authFile, `${SECRET}\n`, { mode: 0o600 });
    const r = await startRedis(srv, { port: 7001, password: SECRET });
    assert.equal((await redisCli(srv, ['-p', '7001', '--no-auth-warning', '-a', r.password!, 'set', 'whoami', 'genuine'])).reply, 'OK');
    rogue = rg.spawn(process.execPath, ['-e', RECORDER, '7002'], { name: '[rogue] byte recorder' });
    await rogue.waitForLine(/^listening$/);
    const [a, b] = await Promise.all([
      startAdvertiser(srv, ['--advertise', 'redis=7001,txt.env=production', ...FAST]),
      startAdvertiser(rg, ['--advertise', 'redis=7002', ...FAST]),
    ]);
    ambs.push(a.amb, b.amb);
  });
  after(async () => {
    await lab?.destroy();
  });

  test('auth-file on an mDNS-discovered service without TLS: refused at start, one line, exit 2', async () => {
    const amb = startAmbassador(lab.host('cli'), ['--connect', `redis=6379,auth-file=${authFile}`, ...FAST]);
    const status = await amb.proc.exited;
    assert.equal(status.code, 2, amb.proc.output);
    const lines = amb.proc.stderr.trim().split('\n');
    assert.equal(lines.length, 1, amb.proc.stderr);
    assert.match(lines[0]!, /^ambassador: error: --connect redis=6379,auth-file=.*: refusing to send credentials to whoever announces 'redis' over mDNS/);
    assert.match(lines[0]!, /--tls-cert\/--tls-key\/--tls-ca.*--static\/--srv.*--trusted-lan/);
    assert.equal(amb.proc.stdout, '', 'nothing started: no listener, no multicast');
    assert.equal(rogueBytes(), '');
  });

  test('endpoints the operator named get the credentials; the announcing stranger gets nothing', async () => {
    const srvIp = lab.host('srv').ip;
    const cli = await startConnector(lab.host('cli'), ['--connect', `redis=6379,auth-file=${authFile}`, '--static', `redis=${srvIp}:7001`, ...FAST]);
    ambs.push(cli);
    try {
      for (let i = 0; i < 20; i++) assert.equal((await redisCli(lab.host('cli'), ['get', 'whoami'])).reply, 'genuine', `request ${i}`);
      // The stranger announces again (a fresh announcement after the connector started).
      const rg = lab.host('rogue');
      await ambs[1]!.stop();
      ambs[1] = (await startAdvertiser(rg, ['--advertise', 'redis=7002', ...FAST])).amb;
      for (let i = 0; i < 10; i++) assert.equal((await redisCli(lab.host('cli'), ['get', 'whoami'])).reply, 'genuine', `request ${i} after re-announcement`);
      assert.equal(rogueBytes(), '', 'not one byte reached the stranger');
    } finally {
      await cli.stop();
    }
  });

  test('--trusted-lan: works as before, with a warning at start and in /peers', async () => {
    // The where. filter keeps the stranger out here only because it does not bother to announce env=production.
    const cli = await startConnector(lab.host('cli'), ['--connect', `redis=6379,auth-file=${authFile},where.env=production`,
      '--trusted-lan', '--admin', '127.0.0.1:9090', ...FAST]);
    ambs.push(cli);
    try {
      await cli.waitLog({ msg: 'endpoint up', address: `${lab.host('srv').ip}:7001` });
      for (let i = 0; i < 6; i++) assert.equal((await redisCli(lab.host('cli'), ['get', 'whoami'])).reply, 'genuine', `request ${i}`);
      const warn = await cli.waitLog({ msg: /credentials for 'redis' go to any host on the LAN that announces _redis\._tcp/ });
      assert.equal(warn.level, 40, 'a warning');
      await cli.waitLog({ msg: /where\.env=production selects instances by TXT.*not access control/ });
      const peers = JSON.parse(await lab.host('cli').run(process.execPath, ['-e',
        'fetch("http://127.0.0.1:9090/peers").then(r=>r.text()).then(t=>process.stdout.write(t))'])) as {
        clusters: Array<{ credentials: string; warnings: string[] }>;
      };
      assert.deepEqual(peers.clusters.map((c) => c.credentials), ['trusted-lan']);
      assert.deepEqual(peers.clusters.map((c) => c.warnings.length), [2]);
      assert.ok(!JSON.stringify(peers).includes(SECRET));
      assert.ok(!cli.proc.output.includes(SECRET), 'the secret is never logged');
    } finally {
      await cli.stop();
    }
  });
});
