// `ambassador demo` is a newcomer's first command: it must run to the end, exit 0 and tell the
// story (discovery, balancing, failover, recovery). Runs in the test runner's private network
// namespace (multicast on loopback only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../../dist/cli/bin.js', import.meta.url));
const isolated = process.env.MDNS_AMBASSADOR_TEST_ISOLATED === '1' || process.env.AMBASSADOR_TEST_ISOLATED === '1';
const skip = isolated ? false : 'needs the private network namespace of the test runner (multicast on loopback only)';

function demo(args: string[]) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [cli, 'demo', ...args], { encoding: 'utf8', timeout: 60_000 });
  console.log(`# demo ${args.join(' ')} took ${Date.now() - t0} ms`);
  return r;
}

test('demo over mDNS on loopback: discovery, balancing, failover, recovery, exit 0', { skip }, () => {
  const r = demo(['--requests', '10']);
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  const out = r.stdout;
  for (const re of [
    /kv@demo-kv-1 announced: _kv\._tcp\.local → 127\.0\.0\.1:\d+/,
    /kv@demo-kv-2 announced/,
    /✓ endpoint up: kv@demo-kv-1 at 127\.0\.0\.1:\d+ \(mdns, TXT replica=kv-1\)/,
    /✓ endpoint up: kv@demo-kv-2 at 127\.0\.0\.1:\d+ \(mdns/,
    /✓ balancing: 10\/10 ok, served by kv-1 5, kv-2 5/,
    /kv-1 is down/,
    /withdrawn with a goodbye packet/,
    /✓ failover: 10\/10 ok/,
    /✓ back to two replicas: 10\/10 ok, served by kv-1 \d+, kv-2 \d+/,
    /requests 30: ok 30, failed 0/,
    /none failed/,
    /ambassador_connections_established_total\{cluster="kv",listener="[^"]+",endpoint="kv@demo-kv-1"\} \d+/,
  ]) assert.match(out, re);
  assert.doesNotMatch(out, /✗/);
  assert.equal(r.stderr, '', 'nothing on stderr');
});

test('demo --static: the same story without multicast', { skip }, () => {
  const r = demo(['--static', '--requests', '6']);
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /--static kv=127\.0\.0\.1:\d+\+127\.0\.0\.1:\d+/);
  assert.match(r.stdout, /✓ balancing: 6\/6 ok, served by kv-1 3, kv-2 3/);
  assert.match(r.stdout, /✓ failover: 6\/6 ok/);
  assert.match(r.stdout, /✓ back to two replicas: 6\/6 ok/);
  assert.doesNotMatch(r.stdout, /announced/);
  // A static endpoint's label is its address: said once.
  assert.match(r.stdout, /✓ endpoint up: 127\.0\.0\.1:\d+ \(static\)/);
  assert.doesNotMatch(r.stdout, /endpoint up: (\S+) at \1/);
});

test('demo --keep stays up for other clients until SIGINT, then exits 0', { skip }, async () => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const child = spawn(process.execPath, [cli, 'demo', '--keep', '--requests', '4', '--port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 30_000;
    while (!out.includes('keeps running') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, /keeps running \(--keep\)/, out);
    assert.match(out, new RegExp(`redis-cli -p ${port}`));
    // The status page: its address printed before the failover, served while the mesh runs.
    const page = /Its status page, live in a browser: (http:\/\/127\.0\.0\.1:\d+\/) \(open it now to watch the failover\)/.exec(out);
    assert.ok(page, out);
    assert.ok(out.indexOf(page[0]) < out.indexOf('kv-1 stops'), 'printed before the failover');
    const res = await fetch(page[1]!);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /<title>ambassador/);
    // A client of our own, with the Redis protocol, through the demo's connecting ambassador.
    const reply = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n'));
      let got = '';
      s.on('data', (d) => {
        got += d;
        if (got.split('\r\n').length >= 4) {
          s.destroy();
          resolve(got);
        }
      });
      s.on('error', reject);
      setTimeout(() => reject(new Error(`no reply: ${JSON.stringify(got)}`)), 5000);
    });
    assert.equal(reply, '+OK\r\n$2\r\nv1\r\n');
    child.kill('SIGINT');
    assert.equal(await exited, 0, out);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
