// What an operator sees, with the real CLI on the private namespace's
// loopback: per-listener metrics and log fields, log lines that do not mislead, a where. filter
// that matches nothing explained in the log and /peers, and `browse` output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { AmbProc, CLI, echoOnce, echoServer, freePort, httpGet, isolated, metrics, waitFor } from '../robustness/kit.js';

const LO = ['--interface', '127.0.0.1'];

test('two listeners for one service: separate series per listener, and logs that name the listener', { skip: isolated }, async (t) => {
  const up = await echoServer();
  t.after(() => up.close());
  const [p1, p2, admin] = [await freePort(), await freePort(), await freePort()];
  const amb = new AmbProc([...LO, '--connect', `echo=${p1}`, '--connect', `echo=${p2}`, '--static', `echo=127.0.0.1:${up.port}`, '--admin', String(admin)]);
  t.after(() => amb.stop());
  await amb.waitLog((l) => l.msg === 'endpoint up' && l.listen === `127.0.0.1:${p2}`, 10_000, 'second listener has its endpoint');
  for (let i = 0; i < 3; i++) await echoOnce(p1);
  await echoOnce(p2);
  const m = await metrics(admin);
  const l1 = `listener="127.0.0.1:${p1}"`;
  const l2 = `listener="127.0.0.1:${p2}"`;
  assert.equal(m[`ambassador_connections_accepted_total{cluster="echo",${l1}}`], 3);
  assert.equal(m[`ambassador_connections_accepted_total{cluster="echo",${l2}}`], 1);
  assert.equal(m[`ambassador_endpoints{cluster="echo",${l1},state="up"}`], 1);
  assert.equal(m[`ambassador_endpoints{cluster="echo",${l2},state="up"}`], 1);
  const ups = amb.logs().filter((l) => l.msg === 'endpoint up');
  assert.deepEqual(ups.map((l) => l.listen).sort(), [`127.0.0.1:${p1}`, `127.0.0.1:${p2}`].sort());
});

test('a normal shutdown logs no "endpoint down"', { skip: isolated }, async (t) => {
  const up = await echoServer();
  t.after(() => up.close());
  const port = await freePort();
  const amb = new AmbProc([...LO, '--connect', `echo=${port}`, '--static', `echo=127.0.0.1:${up.port}`]);
  await amb.waitLog((l) => l.msg === 'endpoint up');
  await amb.stop();
  assert.equal(amb.exit?.code, 0);
  assert.ok(amb.find((l) => l.msg === 'stopped'), amb.out);
  assert.equal(amb.logs().filter((l) => l.msg === 'endpoint down').length, 0, amb.out);
});

test('an advertised target whose name does not resolve says so', { skip: isolated }, async (t) => {
  const amb = new AmbProc([...LO, '--advertise', 'echo=no-such-host.invalid:6379']);
  t.after(() => amb.stop());
  const line = await amb.waitLog((l) => l.msg === 'advertisement' && l.state === 'waiting-for-target');
  assert.match(String(line.reason), /^target no-such-host\.invalid:6379 does not resolve/);
});

test('re-probing after the target comes back is logged once, not twice', { skip: isolated }, async (t) => {
  const port = await freePort();
  let up = await echoServer(port);
  const amb = new AmbProc([...LO, '--advertise', `echo=127.0.0.1:${port}`, '--health-interval', '200ms']);
  t.after(async () => {
    await amb.stop();
    await up.close();
  });
  await amb.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced');
  await up.close();
  await amb.waitLog((l) => l.msg === 'advertisement' && l.state === 'withdrawn');
  up = await echoServer(port);
  const n = amb.logs().length;
  await waitFor(() => amb.logs().slice(n).some((l) => l.msg === 'advertisement' && l.state === 'announced'), { timeoutMs: 10_000, message: 'announced again' });
  const probing = amb.logs().slice(n).filter((l) => l.msg === 'advertisement' && l.state === 'probing');
  assert.equal(probing.length, 1, JSON.stringify(probing));
});

test('a where. filter that matches nothing: the log, /peers and the closed client say why', { skip: isolated }, async (t) => {
  const up = await echoServer();
  t.after(() => up.close());
  const [port, admin] = [await freePort(), await freePort()];
  const adv = new AmbProc([...LO, '--hostname', 'svc', '--advertise', `echo=127.0.0.1:${up.port},txt.env=staging`]);
  t.after(() => adv.stop());
  await adv.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced');
  const con = new AmbProc([...LO, '--hostname', 'app', '--connect', `echo=${port},where.env=production`, '--admin', String(admin), '--wait-for-endpoint', '300ms']);
  t.after(() => con.stop());
  const ignored = await con.waitLog((l) => l.msg === 'instance ignored: it does not match the where. filter');
  assert.equal(ignored.why, 'where.env=production, its TXT has env=staging');
  const peers = JSON.parse(await httpGet(admin, '/peers')) as { clusters: Array<{ endpoints: unknown[]; filteredOut: Array<{ label: string; why: string }> }> };
  assert.equal(peers.clusters[0]!.endpoints.length, 0);
  assert.deepEqual(peers.clusters[0]!.filteredOut.map((f) => f.why), ['where.env=production, its TXT has env=staging']);
  await assert.rejects(echoOnce(port, 'ping\n', 3000));
  const closed = await con.waitLog((l) => String(l.msg).startsWith('client closed'));
  assert.match(closed.msg, /1 announced instance\(s\) do not match the where\. filter/);
  assert.equal(closed.listen, `127.0.0.1:${port}`);
});

test('wrong credentials: the closing line names the refused handshake, not a missing endpoint', { skip: isolated }, async (t) => {
  // A Redis-speaking stand-in that refuses every AUTH.
  const srv = net.createServer((s) => s.on('data', () => s.write('-WRONGPASS invalid username-password pair or user is disabled.\r\n')));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => srv.close());
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const file = join(mkdtempSync(join(tmpdir(), 'amb-view-')), 'auth');
  writeFileSync(file, 'not-the-password\n');
  const port = await freePort();
  const amb = new AmbProc([...LO, '--connect', `redis=${port},auth-file=${file}`, '--static', `redis=127.0.0.1:${(srv.address() as net.AddressInfo).port}`]);
  t.after(() => amb.stop());
  await amb.waitLog((l) => l.msg === 'endpoint up');
  await new Promise<void>((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => c.write('PING\r\n'));
    c.on('data', () => {});
    c.on('close', () => resolve());
    c.on('error', () => {});
  });
  const closed = await amb.waitLog((l) => String(l.msg).startsWith('client closed'));
  assert.match(closed.msg, /the upstream refused the handshake/);
  assert.ok(!amb.out.includes('not-the-password'));
});

test('browse: IPv6 addresses in brackets, secret-looking TXT redacted, and a word when nothing is found', { skip: isolated }, async (t) => {
  const up = await echoServer();
  t.after(() => up.close());
  const adv = new AmbProc([...LO, '--hostname', 'vault', '--advertise', `kv=127.0.0.1:${up.port},txt.password=hunter2,txt.env=dev`]);
  t.after(() => adv.stop());
  await adv.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced');
  const browse = (args: string[]) => spawnSync(process.execPath, [CLI, 'browse', ...LO, '--once', '--wait', '1.5s', ...args], { encoding: 'utf8', timeout: 20_000 });
  const found = browse(['kv']);
  assert.equal(found.status, 0, found.stderr);
  assert.match(found.stdout, new RegExp(`127\\.0\\.0\\.1:${up.port}`));
  assert.match(found.stdout, /password=\[redacted\]/);
  assert.match(found.stdout, /env=dev/);
  assert.doesNotMatch(found.stdout, /hunter2/);
  const json = browse(['kv', '--json']);
  assert.doesNotMatch(json.stdout, /hunter2/);
  const none = browse(['nothing-here']);
  assert.equal(none.status, 0);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^no 'nothing-here' service found within 1500 ms on lo \(127\.0\.0\.1\)\n$/);
  const { formatAddressPort: hostPort } = await import('../../src/base/address.js');
  assert.equal(hostPort('fe80::1%eth0', 6379), '[fe80::1%eth0]:6379');
  assert.equal(hostPort('10.0.0.5', 6379), '10.0.0.5:6379');
});
