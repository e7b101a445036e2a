// Credentials injection for PostgreSQL end to end. Three production PostgreSQL 15 servers and a
// staging one (scram-sha-256 and md5 users, no trust in pg_hba.conf), each behind `ambassador
// --advertise pg=5432,txt.env=…`; the application host runs `ambassador --connect
// pg=5432,protocol=postgres,where.env=…,auth-file=…`, and psql, node-postgres and hand-written
// packets connect to it with no password. Checked: the right database as the file's user, each
// environment its own, a refused login in PostgreSQL's words, a rotated file, psql's Ctrl-C
// cancelling pg_sleep on the server, sslmode=prefer, a replica killed (no failed connection), a
// replica shutting down (57P03: skipped), no endpoint (08006), the start-up refusal without TLS
// or --trusted-lan, fuzzed startup packets, and no secret anywhere.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { type Host, Lab, canUseNetns, waitFor } from '../lib/netns.js';
import { canRunPostgres, type PostgresServer, startPostgres } from '../lib/postgres.js';
import { type Amb, startAdvertiser, startAmbassador, startConnector } from './ambassador-kit.js';

const skip = canUseNetns() ?? canRunPostgres();

const PROD_PW = 'prod-Pg-Secret-5d2e81';
const ROTATED_PW = 'prod-Pg-Rotated-09c3f4';
const STAG_PW = 'stag-Pg-Secret-7a61b0';
const MD5_PW = 'legacy-Pg-Md5-44e1c2';
const SECRETS = [PROD_PW, ROTATED_PW, STAG_PW, MD5_PW];
const FAST = ['--health-interval', '500'];
const PG_PATH = createRequire(import.meta.url).resolve('pg');

// node-postgres in the application host: connects with no password, prints what it sees, then
// runs the SQL lines it reads on stdin until "end".
const NODE_CLIENT = String.raw`
const pg = require(process.argv[1]);
const c = new pg.Client({ host: '127.0.0.1', port: Number(process.argv[2]), user: 'nobody', database: 'appdb', application_name: 'e2e-node', connectionTimeoutMillis: 10000 });
const fail = (e) => { console.log('ERROR ' + e.code + ' ' + e.message); process.exit(1); };
c.connect().then(async () => {
  const r = await c.query("select current_user as u, current_database() as d, current_setting('application_name') as a, (select v from whoami) as w");
  console.log('CONNECTED ' + JSON.stringify(r.rows[0]));
  require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => {
    if (l === 'end') return void c.end().then(() => process.exit(0));
    c.query(l).then((r) => console.log('ROW ' + JSON.stringify(r.rows[0])), (e) => console.log('ERROR ' + e.code + ' ' + e.message));
  });
}, fail);
`;

// Fuzzed first packets (mutated StartupMessage, SSLRequest + startup, CancelRequest, noise),
// 20 connections at a time, bounded in count and time.
const FUZZER = String.raw`
const net = require('node:net');
let seed = 30; const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const startup = Buffer.from('0000002a00030000757365720075006461746162617365006170706462000000', 'hex');
startup.writeInt32BE(startup.length, 0);
const ssl = Buffer.from('0000000804d2162f', 'hex');
const cancel = Buffer.from('00000010' + '04d2162e' + '0000303900003039', 'hex');
const cases = [];
for (let i = 0; i < Number(process.argv[2]); i++) {
  const base = [startup, Buffer.concat([ssl, startup]), cancel, Buffer.alloc(64)][i % 4];
  const b = Buffer.from(base.subarray(0, 1 + Math.floor(rnd() * base.length)));
  for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
  cases.push(b);
}
(async () => {
  const deadline = Date.now() + 30000;
  for (let i = 0; i < cases.length && Date.now() < deadline; i += 20) {
    await Promise.all(cases.slice(i, i + 20).map((b) => new Promise((resolve) => {
      const s = net.connect(Number(process.argv[1]), '127.0.0.1', () => s.end(b));
      s.on('data', () => {}); s.on('error', resolve); s.on('close', resolve); s.setTimeout(3000, () => s.destroy());
    })));
  }
  console.log('FUZZED ' + cases.length);
})();
`;

describe('credentials injection for PostgreSQL', { skip }, () => {
  let lab: Lab;
  let app: Host;
  let conn: Amb;
  const servers = new Map<string, PostgresServer>();
  const ambs: Amb[] = [];
  let prodFile: string;

  /** psql in the application host, no password; `conninfo` extra key=value pairs. */
  const psql = (port: number, sql: string, conninfo = '') => app.exec('psql', ['-X', '-A', '-t', '-w', '-d', `host=127.0.0.1 port=${port} dbname=appdb connect_timeout=10 ${conninfo}`, '-c', sql],
    { timeoutMs: 20_000, env: { PGPASSWORD: '', PGUSER: '' } });
  const who = async (port = 5432): Promise<string> => {
    const r = await psql(port, "select current_user || ' ' || current_database() || ' ' || (select v from whoami)");
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  const pgOf = (name: string) => servers.get(name)!;

  before(async () => {
    lab = await Lab.create({ hosts: ['prod1', 'prod2', 'prod3', 'stag', 'app'] });
    app = lab.host('app');
    const roles = (user: string, pw: string) => ({
      users: [{ name: user, password: pw }, { name: 'legacy', password: MD5_PW, method: 'md5' as const }],
      databases: [{ name: 'appdb', owner: user }],
    });
    await Promise.all(['prod1', 'prod2', 'prod3', 'stag'].map(async (name) => {
      const user = name === 'stag' ? 'app_stag' : 'app';
      const s = await startPostgres(lab.host(name), roles(user, name === 'stag' ? STAG_PW : PROD_PW));
      await s.psql(`create table whoami(v text); insert into whoami values ('${name}'); grant select on whoami to public`, { db: 'appdb' });
      servers.set(name, s);
    }));
    const advertisers = await Promise.all(['prod1', 'prod2', 'prod3', 'stag'].map((name) =>
      startAdvertiser(lab.host(name), ['--advertise', `pg=5432,txt.env=${name === 'stag' ? 'staging' : 'production'}`, ...FAST], { timeoutMs: 30_000 })));
    ambs.push(...advertisers.map((a) => a.amb));
    prodFile = join(lab.tmpdir, 'prod.auth');
    writeFileSync(prodFile, `app ${PROD_PW}\n`, { mode: 0o600 });
    writeFileSync(join(lab.tmpdir, 'stag.auth'), `app_stag ${STAG_PW}\n`, { mode: 0o600 });
    writeFileSync(join(lab.tmpdir, 'wrong.auth'), `app ${STAG_PW}\n`, { mode: 0o600 });
    writeFileSync(join(lab.tmpdir, 'legacy.auth'), `legacy ${MD5_PW}\n`, { mode: 0o600 });
    const listener = (port: number, env: string, file: string) => ['--connect', `pg=${port},protocol=postgres,where.env=${env},auth-file=${join(lab.tmpdir, file)}`];
    // One LAN without TLS: the operator accepts that any announcer could get the credentials.
    conn = await startConnector(app, ['--trusted-lan', '--admin', '127.0.0.1:9090', ...FAST,
      ...listener(5432, 'production', 'prod.auth'), ...listener(5433, 'staging', 'stag.auth'),
      ...listener(5434, 'production', 'wrong.auth'), ...listener(5435, 'production', 'legacy.auth')]);
    ambs.push(conn);
    for (const name of ['prod1', 'prod2', 'prod3']) await conn.waitLog({ msg: 'endpoint up', listen: '127.0.0.1:5432', address: `${lab.host(name).ip}:5432` });
    await conn.waitLog({ msg: 'endpoint up', listen: '127.0.0.1:5433' });
  });
  after(async () => {
    await lab?.destroy();
  });

  test('psql with no password reaches the right database as the user of the file (SCRAM, and MD5)', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const [user, db, where] = (await who()).split(' ');
      assert.deepEqual([user, db], ['app', 'appdb']);
      seen.add(where!);
    }
    assert.deepEqual([...seen].sort(), ['prod1', 'prod2', 'prod3'], 'round-robin over the three replicas');
    assert.match(await who(5435), /^legacy appdb prod\d$/);
  });

  test('staging and production by where.env, each with its own file', async () => {
    assert.equal(await who(5433), 'app_stag appdb stag');
    assert.match(await who(5432), /^app appdb prod\d$/);
  });

  test('node-postgres with no password: its database and application_name are kept', async () => {
    const p = app.spawn(process.execPath, ['-e', NODE_CLIENT, PG_PATH, '5432'], { stdin: 'pipe', name: '[app] node-postgres' });
    const line = await p.waitForLine(/^(CONNECTED|ERROR) (.*)$/, { timeoutMs: 15_000 });
    assert.equal(line[1], 'CONNECTED', line[2]);
    const row = JSON.parse(line[2]!) as Record<string, string>;
    assert.deepEqual([row.u, row.d, row.a], ['app', 'appdb', 'e2e-node']);
    p.write('end\n');
    assert.equal((await p.exited).code, 0);
  });

  test('a wrong password: psql prints 28P01 in the ambassador\'s words; no other endpoint is tried', async () => {
    const since = Date.now();
    const t0 = Date.now();
    const r = await psql(5434, 'select 1');
    assert.ok(Date.now() - t0 < 5000, 'answered at once');
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /FATAL: {2}ambassador: upstream authentication failed \(28P01: password authentication failed for user "app"\)/);
    const line = await conn.waitLog({ code: '28P01', listen: '127.0.0.1:5434' }, { since });
    assert.match(line.msg, /upstream authentication failed/);
    await conn.waitLog({ msg: /client closed: the upstream refused the handshake/, listen: '127.0.0.1:5434' }, { since });
    assert.equal(conn.findAll({ msg: 'connect failed', listen: '127.0.0.1:5434' }, since).length, 1, 'one endpoint tried');
  });

  test('sslmode=prefer: the SSLRequest is answered N and the session works; sslmode=require is told there is no TLS here', async () => {
    const ok = await psql(5432, 'select current_user', 'sslmode=prefer');
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), 'app');
    const req = await psql(5432, 'select 1', 'sslmode=require');
    assert.notEqual(req.code, 0);
    assert.match(req.stderr, /server does not support SSL, but SSL was required/);
  });

  test('Ctrl-C in psql sends a CancelRequest that stops pg_sleep on the server that runs it', async () => {
    const sleeper = app.spawn('psql', ['-X', '-w', '-d', 'host=127.0.0.1 port=5432 dbname=appdb', '-c', 'select pg_sleep(60)'], { name: '[app] psql pg_sleep' });
    const active = async (): Promise<string | undefined> => {
      for (const name of ['prod1', 'prod2', 'prod3']) {
        const n = await pgOf(name).psql("select count(*) from pg_stat_activity where state = 'active' and query = 'select pg_sleep(60)'");
        if (n === '1') return name;
      }
      return undefined;
    };
    const where = await waitFor(active, { timeoutMs: 15_000, intervalMs: 50, message: 'pg_sleep running on a replica' });
    const t0 = Date.now();
    assert.ok(sleeper.kill('SIGINT'));
    const status = await sleeper.exited;
    const ms = Date.now() - t0;
    assert.match(sleeper.stderr, /canceling statement due to user request/);
    assert.equal(status.code, 1, sleeper.output);
    assert.ok(ms < 5000, `psql returned ${ms} ms after Ctrl-C`);
    assert.equal(await pgOf(where).psql("select count(*) from pg_stat_activity where query = 'select pg_sleep(60)' and state = 'active'"), '0');
    console.log(`# psql Ctrl-C → query cancelled on ${where} in ${ms} ms`);
  });

  test('the file rotated while connected: new connections use the new password, the open one goes on', async () => {
    const held = app.spawn(process.execPath, ['-e', NODE_CLIENT, PG_PATH, '5432'], { stdin: 'pipe', name: '[app] node-postgres held' });
    assert.match((await held.waitForLine(/^(CONNECTED|ERROR) /, { timeoutMs: 15_000 }))[0], /^CONNECTED/);
    for (const name of ['prod1', 'prod2', 'prod3']) await pgOf(name).psql(`alter role app password '${ROTATED_PW}'`);
    const stale = await psql(5432, 'select 1');
    assert.match(stale.stderr, /28P01/, 'the old file no longer logs in');
    const since = Date.now();
    writeFileSync(prodFile, `app ${ROTATED_PW}\n`);
    await conn.waitLog({ msg: /credentials file changed/, listen: '127.0.0.1:5432' }, { since });
    assert.match(await who(), /^app appdb prod\d$/);
    const mark = held.mark();
    held.write('select current_user as u\n');
    assert.match((await held.waitForLine(/^(ROW|ERROR) .*$/, { since: mark }))[0], /^ROW \{"u":"app"\}$/);
    held.write('end\n');
    assert.equal((await held.exited).code, 0);
  });

  test('an mDNS-discovered endpoint without TLS and without --trusted-lan: refused at start, as for Redis', async () => {
    const amb = startAmbassador(app, ['--connect', `pg=6000,protocol=postgres,auth-file=${prodFile}`, ...FAST]);
    const status = await amb.proc.exited;
    assert.equal(status.code, 2, amb.proc.output);
    assert.match(amb.proc.stderr.trim(), /^ambassador: error: --connect pg=6000,protocol=postgres,auth-file=.*: refusing to send credentials to whoever announces 'pg' over mDNS/);
    assert.equal(amb.proc.stderr.trim().split('\n').length, 1);
  });

  test('fuzzed startup packets never crash the process; it serves the next client', async () => {
    const out = await app.run(process.execPath, ['-e', FUZZER, '5433', '400'], { timeoutMs: 45_000 });
    assert.match(out, /FUZZED 400/);
    assert.ok(conn.proc.running, 'the connector is alive');
    assert.equal(await who(5433), 'app_stag appdb stag');
  });

  test('kill -9 of a replica: no new connection fails', async () => {
    // "new": a connection started after the kill (a session already open on prod1 dies with it).
    const loop = app.spawn('sh', ['-c', `for i in $(seq 1 24); do echo NEW; psql -X -A -t -w -d 'host=127.0.0.1 port=5432 dbname=appdb connect_timeout=10' -c 'select v from whoami' || echo FAIL; done; echo DONE`],
      { name: '[app] psql loop', env: { PGPASSWORD: '' } });
    await loop.waitForLine(/^prod\d$/, { timeoutMs: 15_000 });
    pgOf('prod1').kill9();
    const killedAt = loop.mark('stdout');
    await loop.waitForLine(/^DONE$/, { timeoutMs: 60_000 });
    const later = loop.stdout.slice(killedAt).split('\n');
    const started = later.slice(later.indexOf('NEW') + 1).filter((l) => l !== 'NEW' && l !== 'DONE' && l !== '');
    assert.ok(started.length >= 15, loop.stdout);
    assert.deepEqual(started.filter((l) => !/^prod[23]$/.test(l)), [], `failed or served by prod1 after the kill:\n${loop.output}`);
  });

  test('a replica shutting down (57P03) is skipped before the client sees anything', async () => {
    const prod2 = lab.host('prod2');
    // A session holds the smart shutdown open: new connections get 57P03 meanwhile.
    const holder = pgOf('prod2').spawnPsql('select pg_sleep(60)');
    await waitFor(async () => (await pgOf('prod2').psql("select count(*) from pg_stat_activity where query = 'select pg_sleep(60)'")) === '1',
      { timeoutMs: 10_000, intervalMs: 50, message: 'holding session' });
    const since = Date.now();
    assert.ok(pgOf('prod2').process.kill('SIGTERM'), 'smart shutdown');
    await waitFor(async () => (await lab.host('app').exec('psql', ['-X', '-w', '-d', `host=${prod2.ip} port=5432 dbname=appdb user=app password=x`, '-c', 'select 1'])).stderr.includes('shutting down'),
      { timeoutMs: 10_000, intervalMs: 50, message: 'prod2 refusing with 57P03' });
    for (let i = 0; i < 8; i++) assert.match(await who(), /^app appdb prod3$/, `connection ${i}`);
    const line = await conn.waitLog({ code: '57P03', listen: '127.0.0.1:5432' }, { since });
    assert.match(line.msg, /upstream cannot take the connection \(57P03: the database system is shutting down\)/);
    holder.kill('SIGTERM');
    await holder.exited;
  });

  test('no endpoint left: node-postgres gets an ErrorResponse of class 08, not a bare close', async () => {
    pgOf('prod3').kill9();
    await Promise.all(['prod1', 'prod2', 'prod3'].map((name) =>
      conn.waitLog({ msg: 'endpoint down', listen: '127.0.0.1:5432', address: `${lab.host(name).ip}:5432` }, { timeoutMs: 15_000 })));
    const p = app.spawn(process.execPath, ['-e', NODE_CLIENT, PG_PATH, '5432'], { stdin: 'pipe', name: '[app] node-postgres no endpoint' });
    const line = await p.waitForLine(/^(CONNECTED|ERROR) (\S+) (.*)$/, { timeoutMs: 20_000 });
    assert.equal(line[1], 'ERROR');
    assert.equal(line[2], '08006');
    assert.match(line[3]!, /^ambassador: no endpoint for 'pg'/);
  });

  test('handshake failures are counted by code; no secret in logs, /peers, /metrics or command lines', async () => {
    const get = (path: string) => app.run(process.execPath, ['-e', `fetch("http://127.0.0.1:9090${path}").then(r=>r.text()).then(t=>process.stdout.write(t))`]);
    const [peers, metrics] = await Promise.all([get('/peers'), get('/metrics')]);
    assert.match(metrics, /ambassador_handshake_failures_total\{cluster="pg",listener="127\.0\.0\.1:5434",endpoint="[^"]+",code="28P01"\} 1/);
    assert.match(metrics, /ambassador_handshake_failures_total\{cluster="pg",listener="127\.0\.0\.1:5432",endpoint="[^"]+",code="57P03"\} \d/);
    const texts: Array<[string, string]> = [['/peers', peers], ['/metrics', metrics]];
    for (const a of ambs) {
      texts.push([`log of ${a.host.name}`, a.proc.output]);
      texts.push([`cmdline of ${a.host.name}`, a.proc.running ? readFileSync(`/proc/${a.proc.pid}/cmdline`, 'utf8') : '']);
    }
    for (const [where, text] of texts) {
      for (const s of SECRETS) assert.ok(!text.includes(s), `secret found in ${where}`);
    }
  });
});

