// Redis credentials injection against a real redis-server on 127.0.0.1 (ephemeral ports; skipped
// when redis-server is not installed).
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../../cluster/cluster.js';
import { readBytes, sleep, spec, startServer, waitFor } from '../../testing/tcp-kit.js';
import { ConnectListener } from '../listener.js';
import { anyAnnouncer, type CredentialGate } from './credential-gate.js';
import { RedisProtocol } from './redis.js';

const have = (cmd: string) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' }).status === 0;
const skip = have('redis-server') && have('redis-cli') ? undefined : 'redis-server/redis-cli not installed';
const dir = mkdtempSync(join(tmpdir(), 'amb-redis-hs-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function cli(args: string[], timeoutMs = 5000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('redis-cli', args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: (stdout + stderr).trim() });
    });
  });
}

async function redis(t: TestContext, extra: string[] = []): Promise<number> {
  const port = await freePort();
  const p: ChildProcess = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '',
    '--loglevel', 'warning', ...extra,
  ], { stdio: 'ignore' });
  t.after(() => void p.kill('SIGKILL'));
  const until = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return port;
    if (Date.now() > until) throw new Error('redis-server did not start');
    await sleep(20);
  }
}

let fileSeq = 0;
function authFile(content: string): string {
  const f = join(dir, `auth-${++fileSeq}`);
  writeFileSync(f, content, { mode: 0o600 });
  return f;
}

async function proxy(t: TestContext, ports: number[], opts: { authFile?: string; db?: number; reloadIntervalMs?: number } = {}) {
  const protocol = new RedisProtocol(opts);
  await protocol.start();
  const cluster = new Cluster('redis');
  cluster.setEndpoints('static', ports.map((p, i) => spec(`r${i}`, p)));
  const listener = new ConnectListener({
    cluster, port: 0, handshake: protocol.handshake, errorReply: (m) => protocol.errorReply(m), noEndpointWaitMs: 500,
  });
  const events: string[] = [];
  listener.on('connect-failed', (_c, ep, code) => events.push(`failed ${ep.id} ${code}`));
  listener.on('client-closed-no-endpoint', (_c, reason, n) => events.push(`closed ${reason} ${n}`));
  listener.on('upstream-connected', (_c, ep) => events.push(`connected ${ep.id}`));
  const port = (await listener.listen()).port;
  t.after(async () => {
    protocol.stop();
    await listener.close();
    cluster.close();
  });
  return { protocol, cluster, listener, port: String(port), events };
}

test('requirepass: redis-cli works through the connector without sending AUTH', { skip }, async (t) => {
  const rp = await redis(t, ['--requirepass', 'pw-one']);
  assert.match((await cli(['-p', String(rp), 'ping'])).out, /NOAUTH/, 'the server really wants a password');
  const { port, protocol } = await proxy(t, [rp], { authFile: authFile('pw-one\n') });
  assert.equal((await cli(['-p', port, 'set', 'k', 'v'])).out, 'OK');
  assert.equal((await cli(['-p', port, 'get', 'k'])).out, 'v');
  assert.equal(protocol.stats.ok, 2);
});

test('ACL user and SELECT db: the connection is that user, on that database', { skip }, async (t) => {
  const rp = await redis(t, ['--user', 'app', 'on', '>app-pw', '~*', '&*', '+@all', '--user', 'default', 'off']);
  const { port } = await proxy(t, [rp], { authFile: authFile('app app-pw'), db: 3 });
  assert.equal((await cli(['-p', port, 'acl', 'whoami'])).out, 'app');
  assert.equal((await cli(['-p', port, 'set', 'where', 'db3'])).out, 'OK');
  assert.equal((await cli(['-p', String(rp), '--user', 'app', '--pass', 'app-pw', '--no-auth-warning', '-n', '3', 'get', 'where'])).out, 'db3');
  assert.equal((await cli(['-p', String(rp), '--user', 'app', '--pass', 'app-pw', '--no-auth-warning', '-n', '0', 'exists', 'where'])).out, '0');
});

test('wrong password: redis-cli prints a RESP error, no other endpoint is tried, nothing ejected, no secret shown', { skip }, async (t) => {
  const a = await redis(t, ['--requirepass', 'right-pw']);
  const b = await redis(t, ['--requirepass', 'right-pw']);
  const { port, protocol, events, cluster } = await proxy(t, [a, b], { authFile: authFile('wrong-pw-xyz') });
  for (let i = 0; i < 3; i++) {
    const r = await cli(['-p', port, 'ping']);
    assert.match(r.out, /ERR ambassador: upstream authentication failed \(WRONGPASS/);
    assert.doesNotMatch(r.out, /wrong-pw-xyz|right-pw/);
  }
  assert.equal(events.filter((e) => e.startsWith('closed rejected 1')).length, 3, events.join(', '));
  assert.equal(events.filter((e) => e.startsWith('failed')).length, 3, 'one AUTH per client, not one per endpoint');
  assert.equal(protocol.stats.failedByCode.WRONGPASS, 3);
  assert.equal(cluster.healthy().length, 2, 'credentials refused does not eject the endpoint');
});

test('ACL user with a wrong password, and a user not allowed to SELECT', { skip }, async (t) => {
  const rp = await redis(t, ['--user', 'app', 'on', '>app-pw', '~*', '+@all', '-select']);
  const bad = await proxy(t, [rp], { authFile: authFile('app nope') });
  assert.match((await cli(['-p', bad.port, 'ping'])).out, /WRONGPASS/);
  const noSelect = await proxy(t, [rp], { authFile: authFile('app app-pw'), db: 2 });
  const r = await cli(['-p', noSelect.port, 'ping']);
  assert.match(r.out, /ERR ambassador: upstream refused SELECT 2 \(NOPERM/);
});

test('a Redis without a password: clear error, not a hang', { skip }, async (t) => {
  const rp = await redis(t);
  const { port, protocol } = await proxy(t, [rp], { authFile: authFile('some-pw') });
  const started = Date.now();
  const r = await cli(['-p', port, 'ping']);
  assert.match(r.out, /no password configured, but the auth-file gives one/);
  assert.ok(Date.now() - started < 2000);
  assert.equal(protocol.stats.failedByCode.NOPASS, 1);
});

test('pipelined client bytes sent during the handshake arrive after it, in order', { skip }, async (t) => {
  const rp = await redis(t, ['--requirepass', 'pw']);
  const { port } = await proxy(t, [rp], { authFile: authFile('pw'), db: 5 });
  const s = net.connect(Number(port), '127.0.0.1');
  t.after(() => void s.destroy());
  const n = 2000;
  // Written at once, while the proxy is still connecting and authenticating upstream.
  s.write('DEL ctr\r\n' + 'INCR ctr\r\n'.repeat(n) + 'GET ctr\r\n');
  let expected = ':0\r\n';
  for (let i = 1; i <= n; i++) expected += `:${i}\r\n`;
  expected += `$${String(n).length}\r\n${n}\r\n`;
  const got = await readBytes(s, expected.length);
  assert.equal(got.toString(), expected);
});

/**
 * A stranger on the LAN: announces the service (source 'mdns', plain TCP, no certificate) and
 * records every byte it receives. Next to it, a genuine Redis the operator named (--static).
 */
async function strangerAndGenuine(t: TestContext, gate?: CredentialGate, withGenuine = true) {
  const received: Buffer[] = [];
  const stranger = await startServer({ onSocket: (sock) => sock.on('data', (d: Buffer) => received.push(d)) });
  t.after(() => stranger.close());
  const protocol = new RedisProtocol({ authFile: authFile('s3cret-pass'), ...(gate ? { credentialGate: gate } : {}) });
  await protocol.start();
  const cluster = new Cluster('redis');
  cluster.setEndpoints('mdns', [spec('stranger', stranger.port, { source: 'mdns' })]);
  if (withGenuine) cluster.setEndpoints('static', [spec('genuine', await redis(t, ['--requirepass', 's3cret-pass']))]);
  const listener = new ConnectListener({
    cluster, port: 0, handshake: protocol.handshake, errorReply: (m) => protocol.errorReply(m), noEndpointWaitMs: 300, connectTimeoutMs: 1000, handshakeTimeoutMs: 500,
  });
  const port = String((await listener.listen()).port);
  t.after(async () => {
    protocol.stop();
    await listener.close();
    cluster.close();
  });
  return { port, protocol, cluster, secretBytesAtStranger: () => Buffer.concat(received).toString('latin1') };
}

test('credentials never reach an endpoint whose identity is unproven (an mDNS announcer over plain TCP)', { skip }, async (t) => {
  const { port, protocol, cluster, secretBytesAtStranger } = await strangerAndGenuine(t);
  // Round-robin puts the stranger first for half of the clients: every one must still be served.
  for (let i = 0; i < 12; i++) assert.equal((await cli(['-p', port, 'ping'])).out, 'PONG', `client ${i}`);
  assert.equal(secretBytesAtStranger(), '', 'not one byte (no AUTH, no client command) reached the stranger');
  assert.ok((protocol.stats.failedByCode.EUNTRUSTED ?? 0) >= 1, 'the stranger was picked and refused');
  assert.equal(cluster.healthy().length, 2, 'an unproven endpoint is not blamed: it is simply not given the secret');
});

test('with only an unproven endpoint, the client gets a RESP error that says why, and the stranger nothing', { skip }, async (t) => {
  const { port, secretBytesAtStranger } = await strangerAndGenuine(t, undefined, false);
  const r = await cli(['-p', port, 'ping']);
  assert.match(r.out, /ERR ambassador: .*not sending credentials to stranger: its identity is not proven/);
  assert.doesNotMatch(r.out, /s3cret-pass/);
  assert.equal(secretBytesAtStranger(), '');
});

test('--trusted-lan (anyAnnouncer): the operator accepted the risk, credentials go to announcers as before', { skip }, async (t) => {
  const { port, secretBytesAtStranger } = await strangerAndGenuine(t, anyAnnouncer);
  for (let i = 0; i < 4; i++) assert.equal((await cli(['-p', port, 'ping'])).out, 'PONG', `client ${i}`);
  assert.match(secretBytesAtStranger(), /AUTH.*s3cret-pass/s, 'the documented risk of the opt-in');
});

test('transient errors and non-Redis endpoints fail over to the next endpoint and count towards ejection', { skip }, async (t) => {
  const loading = await startServer({ onSocket: (sock) => sock.once('data', () => sock.write('-LOADING Redis is loading the dataset in memory\r\n')) });
  t.after(() => loading.close());
  const http = await startServer({ onSocket: (sock) => sock.once('data', () => sock.write('HTTP/1.1 400 Bad Request\r\n\r\n')) });
  t.after(() => http.close());
  const rp = await redis(t, ['--requirepass', 'pw']);
  const { port, events, cluster } = await proxy(t, [loading.port, http.port, rp], { authFile: authFile('pw') });
  for (let i = 0; i < 3; i++) assert.equal((await cli(['-p', port, 'ping'])).out, 'PONG');
  assert.ok(events.some((e) => e === 'failed r0 LOADING'), events.join(', '));
  assert.ok(events.some((e) => e === 'failed r1 EPROTO'), events.join(', '));
  // two failures in a row eject (default outlier settings)
  await waitFor(() => cluster.healthy().length === 1, 3000, 'broken endpoints ejected');
});

test('auth-file rotation: the new password is used without a restart; a broken file keeps the old one', { skip }, async (t) => {
  const rp = await redis(t, ['--requirepass', 'old-pw']);
  const file = authFile('old-pw');
  const { port, protocol } = await proxy(t, [rp], { authFile: file, reloadIntervalMs: 50 });
  assert.equal((await cli(['-p', port, 'ping'])).out, 'PONG');
  assert.equal((await cli(['-p', String(rp), '-a', 'old-pw', '--no-auth-warning', 'config', 'set', 'requirepass', 'new-pw'])).out, 'OK');
  const errors: string[] = [];
  protocol.on('credentials-error', (m: string) => errors.push(m));
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, 'new-pw\n');
  renameSync(tmp, file); // atomic replacement, like a secret manager does
  await waitFor(() => protocol.stats.reloads >= 1, 3000, 'reload');
  assert.equal((await cli(['-p', port, 'ping'])).out, 'PONG');
  writeFileSync(file, 'a\nb\nc\n');
  await waitFor(() => protocol.stats.reloadErrors >= 1, 3000, 'reload error');
  assert.match(errors[0]!, /3 lines.*keeping the previous credentials/);
  assert.equal((await cli(['-p', port, 'ping'])).out, 'PONG', 'previous credentials kept');
});

// A real client's workload (plain and pipelined) through the AUTH-injecting connector. Its speed
// is measured by bench/datapath.mjs, not here: a unit test asserts what it does, not how fast.
test('redis-benchmark through the connector: AUTH injected on every connection, plain and pipelined', { skip: skip ?? (have('redis-benchmark') ? undefined : 'no redis-benchmark') }, async (t) => {
  const rp = await redis(t, ['--requirepass', 'bench-pw']);
  const { port } = await proxy(t, [rp], { authFile: authFile('bench-pw') });
  const run = (args: string[]) => new Promise<string>((resolve, reject) => {
    execFile('redis-benchmark', ['-p', port, '-q', ...args], { timeout: 60_000 }, (err, out) => (err ? reject(err) : resolve(out)));
  });
  const plain = await run(['-n', '2000', '-c', '20', '-t', 'set,get']);
  const piped = await run(['-n', '5000', '-c', '20', '-P', '16', '-t', 'set,get']);
  for (const out of [plain, piped]) {
    assert.match(out, /SET: [\d.]+ requests per second/);
    assert.match(out, /GET: [\d.]+ requests per second/);
    assert.doesNotMatch(out, /NOAUTH|ERR|error/i, out);
  }
});
