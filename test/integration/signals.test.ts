// Signals, with the real CLI on the private namespace's loopback: SIGHUP reloads what the
// ambassador reads from files (it used to kill the process silently, exit 129), and one stop
// request delivered twice at once (`timeout` signals the process and then its group) is not a
// "second signal": the drain goes on. A second request later still exits at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AmbProc, echoServer, freePort, isolated, sleep } from '../robustness/kit.js';

const LO = ['--interface', '127.0.0.1'];

test('SIGHUP re-reads the credentials file and looks up --static names again; the process keeps running', { skip: isolated }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'amb-hup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const auth = join(dir, 'auth');
  writeFileSync(auth, 'first-secret\n');
  const port = await freePort();
  const amb = new AmbProc([...LO, '--connect', `redis=${port},auth-file=${auth}`, '--static', 'redis=localhost:6399']);
  t.after(() => amb.stop());
  await amb.waitLog((l) => l.msg === 'listening');
  amb.signal('SIGHUP');
  const first = await amb.waitLog((l) => l.msg === 'reloaded');
  assert.deepEqual(first.credentials, [`redis (127.0.0.1:${port}): re-read`]);
  assert.equal(first.sourcesRefreshed, 1);
  assert.ok(amb.find((l) => l.msg.startsWith('reloading')), amb.out);
  // A broken file: said so, the previous credentials stay in use, the process stays up.
  writeFileSync(auth, '\n');
  const n = amb.logs().length;
  amb.signal('SIGHUP');
  await waitUntil(() => amb.logs().slice(n).some((l) => l.msg === 'reloaded'));
  const second = amb.logs().slice(n).find((l) => l.msg === 'reloaded')!;
  assert.deepEqual(second.credentials, [`redis (127.0.0.1:${port}): invalid: the previous credentials are kept`]);
  assert.ok(amb.running, 'still running after two SIGHUPs');
  assert.ok(!amb.out.includes('first-secret'), 'no secret in the log');
});

test('one SIGTERM delivered twice at once drains as one; a second SIGTERM later exits at once', { skip: isolated }, async (t) => {
  const up = await echoServer();
  t.after(() => up.close());
  const port = await freePort();
  const args = [...LO, '--connect', `echo=${port}`, '--static', `echo=127.0.0.1:${up.port}`, '--drain-timeout', '20s'];
  const amb = new AmbProc(args);
  t.after(() => amb.stop());
  await amb.waitLog((l) => l.msg === 'endpoint up');
  const held = await heldConnection(port);
  // As `timeout` does: the process, then its process group (here: twice to the process).
  amb.signal('SIGTERM');
  amb.signal('SIGTERM');
  await amb.waitLog((l) => l.msg.startsWith('shutting down'));
  // Still draining: the held connection works, and no "second signal" was taken.
  held.socket.write('b\n');
  await waitUntil(() => held.echoed === 'a\nb\n');
  assert.ok(amb.running);
  assert.ok(!amb.find((l) => l.msg === 'second signal: exiting now'), amb.out);
  held.socket.end();
  await amb.exited;
  assert.equal(amb.exit?.code, 0, amb.out + amb.err);
  assert.ok(amb.find((l) => l.msg === 'stopped'));

  // A second request (a moment later) still means "now".
  const again = new AmbProc(args);
  t.after(() => again.stop());
  await again.waitLog((l) => l.msg === 'endpoint up');
  const held2 = await heldConnection(port);
  t.after(() => held2.socket.destroy());
  again.signal('SIGTERM');
  await again.waitLog((l) => l.msg.startsWith('shutting down'));
  await sleep(400);
  again.signal('SIGTERM');
  await again.exited;
  assert.equal(again.exit?.code, 1, again.out);
  assert.ok(again.find((l) => l.msg === 'second signal: exiting now'));
});

/** A connection through the listener, piped to the echo server (one line went there and back). */
async function heldConnection(port: number): Promise<{ socket: net.Socket; readonly echoed: string }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('utf8');
  const held = { socket, echoed: '' };
  socket.on('data', (d: string) => (held.echoed += d));
  socket.on('error', () => {});
  socket.write('a\n');
  await waitUntil(() => held.echoed === 'a\n');
  return held;
}

async function waitUntil(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out');
    await sleep(10);
  }
}
