// Bad input → one line on stderr naming the problem, a non-zero exit, never a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cli = fileURLToPath(new URL('../../../dist/cli/bin.js', import.meta.url));

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const cases: Array<[string, string[], RegExp]> = [
  ['unknown flag', ['--bogus'], /unknown option --bogus \(see ambassador --help\)/],
  ['misspelled flag', ['--conect', 'redis=6379'], /unknown option --conect \(did you mean --connect\?\)/],
  ['one dash for two', ['-redis=6379'], /'-redis=6379': options start with two dashes \(to announce or reach a service: --advertise redis=6379 or --connect redis=6379\)/],
  ['one dash, a flag', ['-connect', 'redis=6379'], /'-connect': options start with two dashes \(did you mean --connect\?\)/],
  ['service name too long (RFC 6335)', ['--connect', 'averyveryverylongname=6379'], /'averyveryverylongname' is not a service name \(at most 15 characters, RFC 6335\)/],
  ['service name all digits (RFC 6335)', ['--advertise', '1234=6379'], /'1234' is not a service name \(at least one letter, RFC 6335\)/],
  ['browse: a name run refuses', ['browse', 'my_redis'], /browse: 'my_redis' is not a service name/],
  ['browse: a bad duration shows the input', ['browse', '--once', '--wait', '2x'], /--wait: '2x' is not a duration/],
  ['bad port', ['--connect', 'redis=65536'], /out of range/],
  ['not a port', ['--advertise', 'redis=abc'], /not a port number/],
  ['duplicate listener', ['--connect', 'a=7000', '--connect', 'b=7000'], /already used/],
  ['missing auth file', ['--connect', 'redis=7000,auth-file=/no/such/file'], /cannot read '\/no\/such\/file'/],
  ['credentials for any announcer', ['--connect', `redis=7000,auth-file=${process.execPath}`], /refusing to send credentials to whoever announces 'redis' over mDNS.*--trusted-lan/],
  ['credentials for any announcer (--check)', ['--connect', `redis=7000,auth-file=${process.execPath}`, '--check'], /refusing to send credentials/],
  ['postgres credentials for any announcer', ['--connect', `pg=5432,protocol=postgres,auth-file=${process.execPath}`], /--connect pg=5432,protocol=postgres.*refusing to send credentials to whoever announces 'pg' over mDNS/],
  ['server TLS option without postgres', ['--connect', 'redis=7000,server-tls=require'], /server-tls is for protocol=postgres/],
  ['bad server-tls', ['--connect', 'pg=5432,protocol=postgres,server-tls=maybe'], /server-tls must be off, prefer, require/],
  ['unreadable server CA', ['--connect', 'pg=5432,protocol=postgres,server-ca=/no/ca.pem'], /server-ca: cannot read '\/no\/ca\.pem'/],
  ['server CA without a certificate', ['--connect', `pg=5432,protocol=postgres,server-ca=${process.execPath}`, '--static', 'pg=127.0.0.1:5433', '--check'], /server-ca '.*': no PEM certificate in it/],
  ['db with postgres', ['--connect', 'pg=5432,protocol=postgres,db=2'], /db is for protocol=redis/],
  ['unreadable cert', ['--advertise', 'a=1', '--tls-cert', '/no/cert', '--tls-key', '/no/key', '--tls-ca', '/no/ca'], /--tls-cert: cannot read/],
  ['unknown balancer', ['--connect', 'redis=7000,balance=best'], /unknown balance 'best'/],
  ['malformed interface', ['--advertise', 'redis=6379', '--interface', 'eth 0'], /--interface 'eth 0'/],
  ['malformed excluded interface', ['--advertise', 'redis=6379', '--exclude-interface', '300.1.1.1'], /--exclude-interface '300\.1\.1\.1'/],
  ['nothing to do', [], /nothing to do/],
  ['bad log level', ['--connect', 'a=7000', '--log-level', 'loud'], /log-level/],
  ['DNS server by name', ['--connect', 'redis=7000', '--srv', 'redis=_redis._tcp.svc', '--dns-server', 'dns.example.com'], /--dns-server 'dns\.example\.com': expected an IP address/],
  ['bad DNS server port', ['--connect', 'redis=7000', '--srv', 'redis=_redis._tcp.svc', '--dns-server', '[fd00::53]:99999'], /--dns-server '\[fd00::53\]:99999': port 99999 is out of range/],
];

for (const [name, args, re] of cases) {
  test(`bad input: ${name}`, () => {
    const r = run(args);
    assert.equal(r.code, 2, `exit code for ${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0]!, /^ambassador: error: /);
    assert.match(lines[0]!, re);
    assert.doesNotMatch(r.stderr, /\bat .+:\d+:\d+/, 'no stack trace');
  });
}

test('bad input: port already in use names the address', async () => {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  try {
    const r = run(['--connect', `redis=${port}`, '--static', `redis=127.0.0.1:1`, '--log-level', 'silent']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr.trim(), new RegExp(`^ambassador: error: .*127\\.0\\.0\\.1:${port}.*(EADDRINUSE|in use)`));
    assert.equal(r.stderr.trim().split('\n').length, 1);
  } finally {
    srv.close();
  }
});

test('environment variables configure like flags', () => {
  const r = run(['--check'], { AMBASSADOR_ADVERTISE: 'redis=6379 api=8080', AMBASSADOR_CONNECT: 'db=7000', AMBASSADOR_INTERFACE: '127.0.0.1' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /advertise redis=6379; advertise api=8080; connect db on 127\.0\.0\.1:7000/);
});

test('boolean environment variables: the usual spellings are read, anything else refused with one line', () => {
  const auth = join(mkdtempSync(join(tmpdir(), 'amb-env-')), 'auth');
  writeFileSync(auth, 'secret\n');
  for (const yes of ['yes', 'ON', '1', 'True']) {
    const r = run(['--connect', `redis=7000,auth-file=${auth}`, '--check'], { AMBASSADOR_TRUSTED_LAN: yes, AMBASSADOR_INTERFACE: '127.0.0.1' });
    assert.equal(r.code, 0, `AMBASSADOR_TRUSTED_LAN=${yes}: ${r.stderr}`);
  }
  for (const no of ['no', 'off', '0', 'FALSE']) {
    const r = run(['--connect', `redis=7000,auth-file=${auth}`, '--check'], { AMBASSADOR_TRUSTED_LAN: no, AMBASSADOR_INTERFACE: '127.0.0.1' });
    assert.equal(r.code, 2, `AMBASSADOR_TRUSTED_LAN=${no}`);
    assert.match(r.stderr, /refusing to send credentials/);
  }
  const r = run(['--connect', 'redis=7000', '--check'], { AMBASSADOR_KEEP_CONNECTIONS: 'maybe', AMBASSADOR_INTERFACE: '127.0.0.1' });
  assert.equal(r.code, 2);
  assert.equal(r.stderr, "ambassador: error: AMBASSADOR_KEEP_CONNECTIONS='maybe' is not a yes or a no (true/false, yes/no, on/off, 1/0)\n");
  const browse = run(['browse', '--once', '--wait', '1'], { AMBASSADOR_JSON: 'sure' });
  assert.equal(browse.code, 2);
  assert.match(browse.stderr, /^ambassador: error: AMBASSADOR_JSON='sure' is not a yes or a no/);
});

test('--help documents every flag', () => {
  const r = run(['--help']);
  assert.equal(r.code, 0);
  for (const flag of ['--advertise', '--connect', '--static', '--srv', '--interface', '--tls-cert', '--tls-key', '--tls-ca', '--admin', '--log-level', '--log-format', '--hostname', '--ttl']) {
    assert.ok(r.stdout.includes(flag), `--help mentions ${flag}`);
  }
});
