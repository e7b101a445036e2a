// Loops and limits, with the real CLI on loopback (the runner's private namespace):
// - `--connect redis=P --advertise redis=P` is refused at start with one line and exit status 2;
// - the same loop made of two processes (an advertiser of the connector's own port) is refused at
//   run time: the connector never dials itself, its connections and fds stay flat;
// - the circuit breakers: more clients than max-connections → the excess refused at once with a
//   RESP error, the rest served, the metric, one log line per burst, fds bounded, another
//   listener of the process unaffected;
// - a loop no check catches (two relays pointed at each other) stays bounded by the breakers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { AmbProc, CLI, echoOnce, echoServer, freePort, httpGet, isolated, metrics, sleep, waitFor } from './kit.js';

const LO = ['--interface', '127.0.0.1'];

/** Connects and reads everything until the ambassador closes; resolves with it. */
function replyOf(port: number, send = 'PING\r\n', timeoutMs = 8000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let got = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no close within ${timeoutMs} ms (got ${JSON.stringify(got)})`)); }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(send));
    s.on('data', (d: string) => (got += d));
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(timer); resolve(got); });
  });
}

test('the self-loop of the issue (--connect redis=P --advertise redis=P) is refused at start: exit 2, one line', { skip: isolated }, async () => {
  const port = await freePort();
  for (const connect of [`redis=${port}`, `redis=0.0.0.0:${port}`]) {
    const r = spawnSync(process.execPath, [CLI, ...LO, '--connect', connect, '--advertise', `redis=${port}`], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(r.status, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`^ambassador: error: --advertise redis=${port}: the target 127\\.0\\.0\\.1:${port} is this ambassador's own --connect ${connect.replace(/\./g, '\\.')} listener: .*\\(a loop\\)`));
    assert.equal(r.stdout, '', 'nothing was started, nothing logged');
  }
  // And a --static endpoint that is the listener itself; --check finds both.
  const r = spawnSync(process.execPath, [CLI, '--connect', `redis=${port}`, '--static', `redis=localhost:${port}`, '--check'], { encoding: 'utf8', timeout: 15_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--static redis=localhost:\d+: localhost:\d+ is this ambassador's own --connect redis=\d+ listener/);
});

test('the same loop across two processes is refused at run time: no connection to itself, fds flat', { skip: isolated, timeout: 60_000 }, async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const conn = new AmbProc([...LO, '--hostname', 'conn', '--connect', `redis=${port},protocol=redis`, '--admin', String(admin), '--wait-for-endpoint', '500']);
  const adv = new AmbProc([...LO, '--hostname', 'adv', '--advertise', `redis=${port}`]);
  try {
    const refused = await conn.waitLog((l) => l.msg === 'endpoint refused', 15_000, 'the connector refuses its own listener');
    assert.match(String(refused.why), new RegExp(`127\\.0\\.0\\.1:${port} is this ambassador's own --connect redis=${port},protocol=redis listener: .*\\(a loop\\)`));
    const fds0 = conn.fds();
    const accepted0 = (await metrics(admin))[`ambassador_connections_accepted_total{cluster="redis",listener="127.0.0.1:${port}"}`] ?? 0;
    for (let i = 0; i < 5; i++) assert.match(await replyOf(port), /^-ERR ambassador: no endpoint for 'redis'/);
    const m = await metrics(admin);
    const accepted = m[`ambassador_connections_accepted_total{cluster="redis",listener="127.0.0.1:${port}"}`]!;
    // Five clients, plus the advertiser's health checks meanwhile (about two a second): a handful, not thousands.
    assert.ok(accepted - accepted0 < 5 + 20, `accepted ${accepted - accepted0}`);
    assert.equal(m.ambassador_connections_established_total ?? 0, 0, 'no connection was ever piped (to itself)');
    assert.ok(conn.fds() <= fds0 + 10, `fds ${fds0} → ${conn.fds()}`);
    assert.ok(conn.running && JSON.parse(await httpGet(admin, '/healthz')).ok);
    const peers = JSON.parse(await httpGet(admin, '/peers'));
    assert.equal(peers.clusters[0].endpoints.length, 0);
    assert.match(peers.clusters[0].refused[0].why, /a loop/);
  } finally {
    await Promise.all([conn.stop(), adv.stop()]);
  }
});

test('circuit breakers: past max-connections clients are refused at once (RESP error), the rest served; metric, one line per burst, fds bounded, other listeners unaffected', { skip: isolated, timeout: 60_000 }, async () => {
  const echo = await echoServer();
  const [port, other, admin] = [await freePort(), await freePort(), await freePort()];
  const LIMIT = 20;
  const amb = new AmbProc(['--connect', `echo=${port},protocol=redis,max-connections=${LIMIT}`, '--static', `echo=127.0.0.1:${echo.port}`,
    '--connect', `other=${other}`, '--static', `other=127.0.0.1:${echo.port}`, '--admin', String(admin)]);
  const held: net.Socket[] = [];
  try {
    await waitFor(() => metrics(admin).then(() => true), { timeoutMs: 10_000, intervalMs: 50, message: 'admin up' });
    await echoOnce(port);
    const fds0 = amb.fds();
    for (let i = 0; i < LIMIT; i++) {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.on('error', () => {});
      held.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('data', () => resolve());
        s.once('close', () => reject(new Error(`held connection ${i} closed`)));
        s.write('hello\n');
      });
    }
    // 200 more at once (bounded): each refused with the error, none reaches the service.
    const before = echo.sockets.size;
    const replies = await Promise.all(Array.from({ length: 200 }, () => replyOf(port, '')));
    for (const r of replies) assert.match(r, new RegExp(`^-ERR ambassador: too many clients for 'echo' \\(max-connections=${LIMIT}\\); try again later\\r\\n$`));
    assert.equal(echo.sockets.size, before);
    // A refused client's socket closes on our side once its FIN arrives, which may be just after
    // the client saw our close: bounded once those have arrived, not at the same instant.
    await waitFor(() => amb.fds() <= fds0 + 2 * LIMIT + 16, { timeoutMs: 5000, message: `fds back to at most ${fds0} + ${2 * LIMIT + 16} with ${LIMIT} held` });
    // Another listener of the same process serves meanwhile; the held ones still work.
    await echoOnce(other);
    for (const s of held.slice(0, 3)) {
      await new Promise<void>((resolve) => { s.once('data', () => resolve()); s.write('again\n'); });
    }
    const health = JSON.parse(await httpGet(admin, '/healthz'));
    assert.equal(health.ok, true);
    assert.deepEqual(health.refusing, [`echo 127.0.0.1:${port}`]);
    const m = await metrics(admin);
    assert.equal(m[`ambassador_connections_refused_total{cluster="echo",listener="127.0.0.1:${port}",limit="max-connections"}`], 200);
    assert.equal(m[`ambassador_connections_refused_total{cluster="other",listener="127.0.0.1:${other}",limit="max-connections"}`], 0);
    // One line when the burst started, one summary when it is over (a second without refusals).
    const end = await amb.waitLog((l) => /^stopped refusing clients/.test(l.msg), 10_000, 'burst summary');
    assert.equal(end.refused, 200);
    assert.equal(amb.logs().filter((l) => /refusing clients/.test(l.msg)).length, 2, amb.out);
    assert.deepEqual(JSON.parse(await httpGet(admin, '/healthz')).refusing, []);
    // Room again as soon as a held client leaves.
    held.pop()!.destroy();
    await waitFor(async () => (await echoOnce(port).then(() => true, () => false)), { timeoutMs: 5000, message: 'served again' });
  } finally {
    for (const s of held) s.destroy();
    await amb.stop();
    await echo.close();
  }
});

test('a loop no check catches (two relays pointed at each other) stays bounded by the breakers', { skip: isolated, timeout: 60_000 }, async () => {
  const [r1, r2, admin1] = [await freePort(), await freePort(), await freePort()];
  const LIMIT = 50;
  const p1 = new AmbProc([...LO, '--hostname', 'one', '--advertise', `x=127.0.0.1:${r2},relay-port=${r1},max-connections=${LIMIT}`, '--admin', String(admin1)]);
  const p2 = new AmbProc([...LO, '--hostname', 'two', '--advertise', `y=127.0.0.1:${r1},relay-port=${r2},max-connections=${LIMIT}`]);
  try {
    // Both relays bound (they are, before mDNS starts).
    await Promise.all([p1, p2].map((p) => p.waitLog((l) => l.msg === 'mDNS started', 10_000, 'started')));
    const fds0 = p1.fds();
    // A client of relay 1 goes to relay 2, back to relay 1, … until a relay is full; then the
    // chain closes back to the client.
    const clients = await Promise.all(Array.from({ length: 5 }, () => replyOf(r1, 'x', 15_000)));
    assert.deepEqual(clients, Array(5).fill(''));
    await sleep(500);
    assert.ok(p1.running && p2.running);
    const m = await metrics(admin1);
    assert.ok((m['ambassador_relay_connections_refused_total{service="x"}'] ?? 0) >= 1, JSON.stringify(m));
    await waitFor(() => p1.fds() <= fds0 + 10, { timeoutMs: 10_000, message: `fds back near ${fds0} (now ${p1.fds()})` });
    assert.ok(p1.logs().filter((l) => /relay (refusing|stopped refusing|still refusing)/.test(l.msg)).length <= 6, p1.out);
  } finally {
    await Promise.all([p1.stop(), p2.stop()]);
  }
});
