// Credentials injection and environments end to end. Two Redis servers share one LAN segment:
// production (requirepass) and staging (an ACL user), each behind `ambassador --advertise
// redis=PORT,txt.env=…`. Two application hosts run `ambassador --connect
// redis=6379,where.env=…,auth-file=…` with their own credentials; redis-cli there sends no AUTH.
// Each reaches only its own environment; wrong credentials give a RESP error; the secrets appear
// in no log line, no /peers or /metrics output and no process command line.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, type Host, canUseNetns, haveCommand, redisCli, startRedis } from '../lib/netns.js';
import { type Amb, startAdvertiser, startConnector } from './ambassador-kit.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') && haveCommand('redis-cli') ? undefined : 'redis-server/redis-cli not installed');

const PROD_PW = 'prod-Secret-7f3a91';
const STAG_USER = 'stagapp';
const STAG_PW = 'stag-Secret-c4e2d8';
const STAG_DEFAULT_PW = 'stag-default-9b1e07';
const SECRETS = [PROD_PW, STAG_PW, STAG_DEFAULT_PW];
const FAST = ['--health-interval', '500'];

describe('credentials injection and environments', { skip }, () => {
  let lab: Lab;
  let cprod: Amb;
  let cstag: Amb;
  const ambs: Amb[] = [];
  let prodFile: string;

  const who = async (h: Host, port = 6379) => (await redisCli(h, ['-p', String(port), 'get', 'whoami'])).stdout.trim();

  before(async () => {
    lab = await Lab.create({ hosts: ['prod', 'stag', 'cprod', 'cstag'] });
    const [prod, stag, cp, cs] = lab.hosts as [Host, Host, Host, Host];
    const [rp, rs] = await Promise.all([
      startRedis(prod, { port: 7001, password: PROD_PW }),
      startRedis(stag, { port: 7002, password: STAG_DEFAULT_PW,
        args: ['--user', STAG_USER, 'on', `>${STAG_PW}`, '~*', '&*', '+@all'] }),
    ]);
    assert.equal((await redisCli(prod, ['-p', '7001', '--no-auth-warning', '-a', rp.password!, 'set', 'whoami', 'production'])).reply, 'OK');
    assert.equal((await redisCli(stag, ['-p', '7002', '--no-auth-warning', '-a', rs.password!, 'set', 'whoami', 'staging'])).reply, 'OK');
    prodFile = join(lab.tmpdir, 'prod.auth');
    const stagFile = join(lab.tmpdir, 'stag.auth');
    writeFileSync(prodFile, `${PROD_PW}\n`, { mode: 0o600 });
    writeFileSync(stagFile, `${STAG_USER} ${STAG_PW}\n`, { mode: 0o600 });
    writeFileSync(join(lab.tmpdir, 'wrong.auth'), `${STAG_PW}\n`, { mode: 0o600 });
    const [ap, as] = await Promise.all([
      startAdvertiser(prod, ['--advertise', 'redis=7001,txt.env=production', ...FAST]),
      startAdvertiser(stag, ['--advertise', 'redis=7002,txt.env=staging', ...FAST]),
    ]);
    // One LAN shared by both environments, without TLS: the operator accepts that any announcer
    // could get the credentials (--trusted-lan); test/e2e/credentials-trust.test.ts covers the refusal.
    cprod = await startConnector(cp, ['--trusted-lan', '--connect', `redis=6379,where.env=production,auth-file=${prodFile}`,
      // the same environment with the other environment's password: must be refused
      '--connect', `redis=6380,where.env=production,auth-file=${join(lab.tmpdir, 'wrong.auth')}`,
      '--admin', '127.0.0.1:9090', ...FAST]);
    cstag = await startConnector(cs, ['--trusted-lan', '--connect', `redis=6379,where.env=staging,auth-file=${stagFile},db=0`, ...FAST]);
    ambs.push(ap.amb, as.amb, cprod, cstag);
    await cprod.waitLog({ msg: 'endpoint up', address: `${prod.ip}:7001` });
    await cstag.waitLog({ msg: 'endpoint up' });
  });
  after(async () => {
    await lab?.destroy();
  });

  test('each connector reaches only its own environment, with no AUTH from the client', async () => {
    const [cp, cs] = [lab.host('cprod'), lab.host('cstag')];
    for (let i = 0; i < 10; i++) {
      assert.equal(await who(cp), 'production');
      assert.equal(await who(cs), 'staging');
    }
    assert.equal((await redisCli(cs, ['acl', 'whoami'])).reply, STAG_USER, 'staging connection is the ACL user');
    assert.equal((await redisCli(cp, ['acl', 'whoami'])).reply, 'default');
    // the other environment's endpoint is not even in the cluster
    assert.equal(cprod.findAll({ msg: 'endpoint up', address: `${lab.host('stag').ip}:7002` }).length, 0);
    assert.equal(cstag.findAll({ msg: 'endpoint up', address: `${lab.host('prod').ip}:7001` }).length, 0);
  });

  test('wrong credentials: redis-cli prints the RESP error, a clear log line, no hang', async () => {
    const cp = lab.host('cprod');
    const t0 = Date.now();
    const r = await redisCli(cp, ['-p', '6380', 'get', 'whoami']);
    assert.ok(Date.now() - t0 < 3000, 'answered at once');
    assert.match(r.stdout + r.stderr, /ERR ambassador: upstream authentication failed \(WRONGPASS/);
    const line = await cprod.waitLog({ code: 'WRONGPASS' });
    assert.equal(line.service, 'redis');
    assert.match(line.msg, /upstream authentication failed/);
    // still healthy for the right credentials
    assert.equal(await who(cp), 'production');
  });

  test('redis-benchmark through the credentials-injecting connector', { skip: haveCommand('redis-benchmark') ? undefined : 'no redis-benchmark' }, async () => {
    const out = await lab.host('cprod').run('redis-benchmark', ['-p', '6379', '-q', '-n', '5000', '-c', '10', '-t', 'set,get'], { timeoutMs: 60_000 });
    const rps = [...out.matchAll(/^(\w+): ([\d.]+) requests per second/gm)].map((m) => `${m[1]} ${m[2]}`);
    console.log(`# redis-benchmark through connector with AUTH injection (netns): ${rps.join(', ')}`);
    assert.equal(rps.length, 2, out);
  });

  test('password rotation in the auth-file without restarting the connector', async () => {
    const [prod, cp] = [lab.host('prod'), lab.host('cprod')];
    const NEW_PW = 'prod-Rotated-51d0aa';
    SECRETS.push(NEW_PW);
    // Redis ≥ 6 keeps both passwords for a rolling change: add the new one, switch the file, drop the old.
    assert.equal((await redisCli(prod, ['-p', '7001', '--no-auth-warning', '-a', PROD_PW, 'acl', 'setuser', 'default', `>${NEW_PW}`])).reply, 'OK');
    const since = Date.now();
    writeFileSync(prodFile, `${NEW_PW}\n`);
    await cprod.waitLog({ msg: /credentials file changed/ }, { since });
    assert.equal((await redisCli(prod, ['-p', '7001', '--no-auth-warning', '-a', NEW_PW, 'acl', 'setuser', 'default', `<${PROD_PW}`])).reply, 'OK');
    assert.equal(await who(cp), 'production');
  });

  test('no secret in logs, /peers, /metrics or process command lines', async () => {
    const cp = lab.host('cprod');
    const peers = await cp.run(process.execPath, ['-e', 'fetch("http://127.0.0.1:9090/peers").then(r=>r.text()).then(t=>process.stdout.write(t))']);
    const metrics = await cp.run(process.execPath, ['-e', 'fetch("http://127.0.0.1:9090/metrics").then(r=>r.text()).then(t=>process.stdout.write(t))']);
    assert.match(peers, /redis/);
    const texts: Array<[string, string]> = [['/peers', peers], ['/metrics', metrics]];
    for (const a of ambs) {
      texts.push([`log of ${a.host.name}`, a.proc.output]);
      texts.push([`cmdline of ${a.host.name}`, readFileSync(`/proc/${a.proc.pid}/cmdline`, 'utf8')]);
    }
    for (const [where, text] of texts) {
      for (const s of SECRETS) assert.ok(!text.includes(s), `secret found in ${where}`);
    }
  });
});
