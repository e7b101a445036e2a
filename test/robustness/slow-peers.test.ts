// Slow and stuck peers, loopback TCP only.
//
// - A client that reads nothing while the upstream sends as fast as it can: back-pressure must
//   stop the ambassador from buffering (RSS bounded, the upstream blocked after a few MB).
// - An upstream that accepts but never answers: `--idle-timeout` closes the connection; without
//   it the connection stays open (the default is 0 = never, as before).
// - What the TCP health check can and cannot see: a frozen (SIGSTOPped) upstream process still
//   completes TCP handshakes in the kernel, so a connect-only check keeps it "up"; only the idle
//   timeout (or the client's own timeout) protects clients from it. A port with nothing listening
//   is marked down within two failed checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { AmbProc, collectGarbage, echoOnce, freePort, GC_ON_SIGUSR2, httpGet, sleep, waitFor } from './kit.js';

async function listening(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

async function connector(port: number, upstreamPort: number, extra: string[] = [], admin?: number): Promise<AmbProc> {
  const amb = new AmbProc(['--connect', `up=${port}`, '--static', `up=127.0.0.1:${upstreamPort}`, '--log-level', 'warn',
    ...(admin ? ['--admin', String(admin)] : []), ...extra], {}, GC_ON_SIGUSR2);
  await waitFor(() => new Promise<boolean>((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  }), { timeoutMs: 10_000, intervalMs: 50, message: 'connector listening' });
  return amb;
}

test('a client that reads nothing while the upstream floods: back-pressure keeps the ambassador small', { timeout: 60_000 }, async () => {
  let written = 0;
  let stopFlood = false;
  const chunk = Buffer.alloc(1 << 20, 0x61);
  const sockets = new Set<net.Socket>();
  const upstream = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    const pump = () => {
      // Bounded: stops after 5 s (stopFlood) or 2 GB.
      while (!stopFlood && written < 2 ** 31) {
        written += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
    };
    pump();
  });
  const upPort = await listening(upstream);
  const port = await freePort();
  const amb = await connector(port, upPort);
  let client: net.Socket | undefined;
  try {
    await collectGarbage(amb);
    const rss0 = amb.rssKb();
    client = net.connect({ port, host: '127.0.0.1' });
    await once(client, 'connect');
    client.pause(); // reads nothing, ever
    client.write('GIVE ME EVERYTHING\n');
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) {
      await sleep(500);
      samples.push(amb.rssKb());
    }
    stopFlood = true;
    const peak = Math.max(...samples);
    console.log(`# slow reader: upstream managed to write ${(written / 1048576).toFixed(1)} MB in 5 s (then blocked); ambassador RSS ${Math.round(rss0 / 1024)} MB → peak ${Math.round(peak / 1024)} MB`);
    assert.ok(written < 256 * 1048576, `the upstream was blocked by back-pressure (${(written / 1048576).toFixed(1)} MB)`);
    assert.ok(peak - rss0 < 64 * 1024, `ambassador RSS bounded (+${Math.round((peak - rss0) / 1024)} MB)`);
    // The client is not stuck: it can still read what is buffered.
    client.resume();
    const readable = await Promise.race([once(client, 'data').then(() => 'data'), once(client, 'close').then(() => 'closed'), sleep(3000).then(() => 'timeout')]);
    assert.equal(readable, 'data', 'the client can still read');
  } finally {
    stopFlood = true;
    client?.destroy();
    for (const s of sockets) s.destroy();
    await amb.stop();
    upstream.close();
  }
});

test('an upstream that accepts but never answers: --idle-timeout closes the connection; default keeps it', { timeout: 60_000 }, async () => {
  const held = new Set<net.Socket>();
  const stuck = net.createServer((s) => { held.add(s); s.on('error', () => {}); s.pause(); });
  const upPort = await listening(stuck);
  const [p1, p2] = [await freePort(), await freePort()];
  const withIdle = await connector(p1, upPort, ['--idle-timeout', '1000']);
  const withoutIdle = await connector(p2, upPort);
  try {
    const open = async (port: number) => {
      const c = net.connect({ port, host: '127.0.0.1' });
      c.on('error', () => {});
      await once(c, 'connect');
      c.write('PING\r\n');
      const t0 = Date.now();
      const closed = once(c, 'close').then(() => Date.now() - t0);
      return { c, closed };
    };
    const fds0 = withIdle.fds();
    const a = await open(p1);
    const b = await open(p2);
    const closedAfter = await Promise.race([a.closed, sleep(5000).then(() => -1)]);
    const bStillOpen = await Promise.race([b.closed.then(() => false), sleep(2500).then(() => true)]);
    console.log(`# stuck upstream: with --idle-timeout 1000 the connection closed after ${closedAfter} ms; without it still open after ${closedAfter + 2500} ms: ${bStillOpen}`);
    assert.ok(closedAfter >= 900 && closedAfter < 3000, `closed by the idle timeout (${closedAfter} ms)`);
    assert.ok(bStillOpen, 'without --idle-timeout nothing closes it (documented default)');
    b.c.destroy();
    // Both sides were closed by the ambassador (its fds are back where they were).
    await waitFor(() => withIdle.fds() <= fds0, { timeoutMs: 3000, message: `ambassador fds back to ${fds0}` });
  } finally {
    for (const s of held) s.destroy();
    await Promise.all([withIdle.stop(), withoutIdle.stop()]);
    stuck.close();
  }
});

test('what the TCP health check sees: a frozen upstream stays up, a closed port goes down', { timeout: 60_000 }, async () => {
  // A real upstream process we can freeze.
  const child = spawn(process.execPath, ['-e', "const s=require('net').createServer(c=>c.pipe(c)).listen(0,'127.0.0.1',()=>console.log(s.address().port))"], { stdio: ['ignore', 'pipe', 'inherit'] });
  const upPort = Number((await once(child.stdout!, 'data'))[0].toString().trim());
  const deadPort = await freePort();
  const [port, admin] = [await freePort(), await freePort()];
  const amb = new AmbProc(['--connect', `up=${port}`, '--static', `up=127.0.0.1:${upPort}+127.0.0.1:${deadPort}`, '--admin', String(admin),
    '--health-interval', '200', '--health-timeout', '200', '--idle-timeout', '1000', '--log-level', 'warn']);
  try {
    const state = async () => {
      const peers = JSON.parse(await httpGet(admin, '/peers')) as { clusters: Array<{ endpoints: Array<{ port: number; state: string; downReason: string | null }> }> };
      const eps = peers.clusters[0]!.endpoints;
      return { frozen: eps.find((e) => e.port === upPort)!, dead: eps.find((e) => e.port === deadPort)! };
    };
    await waitFor(async () => (await state()).dead.state === 'down', { timeoutMs: 5000, message: 'the closed port is marked down' });
    await echoOnce(port);
    process.kill(child.pid!, 'SIGSTOP');
    await sleep(2000); // ten health check rounds
    const s = await state();
    // A client through the connector to the frozen upstream: connect succeeds, no answer, the idle timeout ends it.
    const t0 = Date.now();
    let outcome = 'answered';
    try { await echoOnce(port, 'ping\n', 4000); } catch (e) { outcome = `${(e as Error).message} after ${Date.now() - t0} ms`; }
    console.log(`# health check vs stuck peers: frozen (SIGSTOP) upstream is '${s.frozen.state}' after 10 checks (kernel still accepts TCP); ` +
      `closed port is '${s.dead.state}' (${s.dead.downReason}); a request to the frozen one: ${outcome}`);
    assert.equal(s.dead.state, 'down');
    assert.equal(s.frozen.state, 'up', 'documented limitation: a connect-only check cannot see a frozen process');
    assert.match(outcome, /closed after 0 bytes/, 'the idle timeout closed the request to the frozen upstream');
  } finally {
    process.kill(child.pid!, 'SIGCONT');
    child.kill('SIGKILL');
    await amb.stop();
  }
});
