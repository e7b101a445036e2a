// Bad configuration and environment: the rows test/integration/cli-errors.test.ts does
// not have. Each must give one line `ambassador: error: …` naming the problem, exit status 2,
// no stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AmbProc, CLI, isolated, sleep } from './kit.js';

function run(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args, '--log-level', 'silent'], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertOneLine(args: string[], re: RegExp) {
  const r = run(args);
  assert.equal(r.code, 2, `exit code for ${args.join(' ')}: ${r.code} ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, /^ambassador: error: /);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(r.stderr, /\bat .+:\d+:\d+/, 'no stack trace');
  console.log(`# ${args.join(' ')} → ${lines[0]}`);
}

const dir = mkdtempSync(join(tmpdir(), 'amb-badcfg-'));
const ok = join(dir, 'ok.pem');
writeFileSync(ok, 'placeholder\n');
const junk = join(dir, 'junk.pem');
writeFileSync(junk, 'not a PEM file\n');
const dangling = join(dir, 'dangling.pem');
symlinkSync(join(dir, 'missing-target.pem'), dangling);
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));

const rows: Array<[string, string[], RegExp]> = [
  ['duplicate listener (same address spelled differently)', ['--connect', 'a=127.0.0.1:7100', '--connect', 'b=localhost:7100'], /127\.0\.0\.1:7100 is already used by --connect a=/],
  ['duplicate advertisement', ['--advertise', 'redis=6379', '--advertise', 'redis=6379'], /--advertise redis=6379: given twice/],
  ['--admin on a --connect address', ['--connect', 'a=7101', '--admin', '7101'], /--admin 7101: .*already used/],
  // As root, chmod 000 is still readable: a directory and a dangling symlink are unreadable for everyone.
  ['cert is a directory', ['--advertise', 'a=1', '--tls-cert', dir, '--tls-key', ok, '--tls-ca', ok], /--tls-cert: cannot read .*EISDIR/],
  ['cert is a dangling symlink', ['--advertise', 'a=1', '--tls-cert', dangling, '--tls-key', ok, '--tls-ca', ok], /--tls-cert: cannot read .*no such file/],
  ['cert is not PEM', ['--advertise', 'a=1', '--tls-cert', junk, '--tls-key', junk, '--tls-ca', junk], /tls.*(PEM|certificate)/i],
  ['only one TLS file', ['--advertise', 'a=1', '--tls-cert', ok], /needs all three/],
  ['negative timeout', ['--connect', 'a=7102', '--idle-timeout', '-5'], /--idle-timeout: '-5' is not a duration/],
  ['not a duration', ['--connect', 'a=7102', '--health-interval', 'abc'], /--health-interval: 'abc' is not a duration \(milliseconds, or with a unit: 500ms, 2s, 1m\)/],
  ['not a TTL', ['--advertise', 'a=1', '--ttl', 'abc'], /--ttl: 'abc' must be whole seconds/],
  ['bad TTL', ['--advertise', 'a=1', '--ttl', '0'], /--ttl/],
  ['bad host name', ['--advertise', 'a=1', '--hostname', 'a.b'], /--hostname/],
];

for (const [name, args, re] of rows) test(`bad config: ${name}`, () => assertOneLine(args, re));

test('bad environment: --admin port already in use by another process', async () => {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  try {
    assertOneLine(['--connect', 'a=7103', '--static', 'a=127.0.0.1:1', '--admin', String(port)], new RegExp(`--admin: .*127\\.0\\.0\\.1:${port}.*in use`));
  } finally {
    srv.close();
  }
});

// Inside the runner's private namespace only lo exists: we may add links there (never elsewhere).
const root = isolated || (process.env.MDNS_AMBASSADOR_TEST_ROOT !== '1' ? 'needs root in the private namespace' : false);

// Live networks: no usable interface, or one named that is not there yet, is no
// start-up error any more: the ambassador says so in one warning line and waits.
test('no multicast interface at all (loopback-only host): the ambassador keeps running and says it waits', { skip: isolated, timeout: 20_000 }, async () => {
  // A target that accepts: the advertisement is ready to go and waits for the network.
  const target = createServer((s) => s.destroy());
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  const amb = new AmbProc(['--advertise', `redis=${(target.address() as { port: number }).port}`]);
  try {
    const w = await amb.waitLog((l) => /no usable network interface: waiting/.test(l.msg), 10_000, 'waiting warning');
    assert.equal(w.level, 40, 'a warning');
    await amb.waitLog((l) => l.msg === 'advertisement' && l.reason === 'waiting for a network interface', 10_000, 'the advertisement waits');
    await sleep(1500);
    assert.ok(amb.running, 'still running');
    assert.equal(amb.logs().filter((l) => /no usable network interface/.test(l.msg)).length, 1, 'said once');
  } finally {
    amb.child.kill('SIGTERM');
    const st = await amb.exited;
    target.close();
    assert.equal(st.code, 0, 'a clean stop, also while waiting');
  }
});

test('--interface naming a link that is down, or not there yet: waited for, then used when it comes up', { skip: root, timeout: 30_000 }, async () => {
  const a = `rb${process.pid % 10000}a`;
  const b = `rb${process.pid % 10000}b`;
  const ip = (...args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });
  const add = ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
  if (add.status !== 0) return void console.log(`# cannot create a veth pair here: ${add.stderr.trim()}`);
  const target = createServer((s) => s.destroy());
  target.listen(0, '0.0.0.0');
  await once(target, 'listening');
  const port = (target.address() as { port: number }).port;
  const amb = new AmbProc(['--advertise', `redis=${port}`, '--interface', b, '--hostname', 'waiter']);
  try {
    ip('addr', 'add', '10.77.0.1/24', 'dev', b); // b has an address but stays down (its peer is down)
    const w = await amb.waitLog((l) => l.msg.includes(`interface '${b}' is not there (yet): waiting for it`), 10_000, 'waiting for b');
    assert.equal(w.level, 40);
    await amb.waitLog((l) => /no usable network interface/.test(l.msg), 5000, 'and says it has none');
    await sleep(1000);
    assert.ok(amb.running);
    ip('link', 'set', a, 'up');
    ip('link', 'set', b, 'up');
    const inUse = await amb.waitLog((l) => l.msg === 'mDNS interfaces in use', 10_000, 'b in use');
    assert.match(JSON.stringify(inUse.interfaces), new RegExp(`${b} 10\\.77\\.0\\.1`));
    await amb.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced', 10_000, 'announced on b');
    console.log(`# --interface ${b}: waited while down, in use ${inUse.time - w.time} ms after the warning, announced there`);
  } finally {
    amb.child.kill('SIGTERM');
    await amb.exited;
    target.close();
    ip('link', 'del', a);
  }
});
