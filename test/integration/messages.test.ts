// Messages that said the wrong thing while the behaviour was right: a peer's clean stop followed
// by a WARN that its ambassador "is gone", a --connect nobody announces blamed on the endpoints,
// check=redis said to "accept connections" when it answered PING.
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AmbProc, echoOnce, echoServer, freePort, isolated } from '../robustness/kit.js';

const LO = ['--interface', '127.0.0.1'];

test('a peer\'s clean stop: its host refusing probes afterwards is no WARN', { skip: isolated }, async (t) => {
  const up = await echoServer();
  t.after(() => up.close());
  const adv = new AmbProc([...LO, '--hostname', 'msg-svc', '--advertise', `quiet=127.0.0.1:${up.port}`]);
  t.after(() => adv.stop());
  const port = await freePort();
  const conn = new AmbProc([...LO, '--hostname', 'msg-app', '--connect', `quiet=${port}`, '--log-level', 'debug']);
  t.after(() => conn.stop());
  await conn.waitLog((l) => l.msg === 'endpoint up');
  await echoOnce(port);
  await adv.stop();
  assert.equal(adv.exit?.code, 0);
  // The connector's next host probe is refused (ICMP port unreachable): the verdict the old code
  // logged as a WARN, now a debug line because the goodbyes came first.
  const seen = await conn.waitLog((l) => l.msg === 'peer ambassador stopped after its goodbyes: its host refuses host probes now', 10_000);
  assert.equal(seen.level, 20);
  assert.deepEqual(conn.logs().filter((l) => l.level >= 40 && /is gone/.test(l.msg)).map((l) => l.msg), []);
  // The endpoint itself went down on the goodbye, as it should.
  assert.equal(conn.find((l) => l.msg === 'endpoint down')?.reason, 'goodbye');
});

test('--connect to a service nobody announces says so, and how to look', { skip: isolated }, async (t) => {
  const port = await freePort();
  const conn = new AmbProc([...LO, '--hostname', 'msg-nobody', '--connect', `nobody=${port}`, '--wait-for-endpoint', '200ms']);
  t.after(() => conn.stop());
  await conn.waitLog((l) => l.msg === 'listening');
  // The client is accepted, waits 200 ms for an endpoint and is closed.
  await assert.rejects(echoOnce(port, 'x\n', 5000), /closed after 0 bytes|ECONNRESET/);
  const line = await conn.waitLog((l) => typeof l.msg === 'string' && l.msg.startsWith('client closed'), 5000);
  assert.equal(line.level, 40);
  assert.match(line.msg, /^client closed: nobody announces _nobody\._tcp on the network \(waited 200 ms; 'ambassador browse' lists what is announced\)$/);
});

test('check=redis: the advertisement says the target answers PING', { skip: isolated }, async (t) => {
  const rport = await freePort();
  const redis = spawn('redis-server', ['--port', String(rport), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  t.after(() => { if (redis.exitCode === null) redis.kill('SIGKILL'); });
  const adv = new AmbProc([...LO, '--hostname', 'msg-redis', '--advertise', `pinged=127.0.0.1:${rport},check=redis`]);
  t.after(() => adv.stop());
  const probing = await adv.waitLog((l) => l.msg === 'advertisement' && l.state === 'probing', 10_000);
  assert.equal(probing.reason, 'target answers PING');
  await adv.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced', 10_000);
});
