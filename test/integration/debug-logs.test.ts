// --log-level debug and trace say what happens (the README's example used to add nothing): what
// discovery saw, which endpoint each client got after how many attempts, and at trace every
// check and every connection's end. At info none of it is there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AmbProc, echoOnce, echoServer, freePort, isolated } from '../robustness/kit.js';

const LO = ['--interface', '127.0.0.1'];

test('--log-level debug and trace: discovery, picks, checks, connections; info: none of it', { skip: isolated }, async (t) => {
  const up = await echoServer();
  t.after(() => up.close());
  const adv = new AmbProc([...LO, '--hostname', 'dbg-svc', '--advertise', `dbg=127.0.0.1:${up.port}`, '--log-level', 'trace']);
  t.after(() => adv.stop());
  await adv.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced');
  const [p1, p2] = [await freePort(), await freePort()];
  const debug = new AmbProc([...LO, '--hostname', 'dbg-app', '--connect', `dbg=${p1}`, '--log-level', 'debug']);
  const info = new AmbProc([...LO, '--hostname', 'dbg-app2', '--connect', `dbg=${p2}`]);
  t.after(() => Promise.all([debug.stop(), info.stop()]));
  await Promise.all([debug, info].map((a) => a.waitLog((l) => l.msg === 'endpoint up')));
  await echoOnce(p1);
  await echoOnce(p2);
  const connected = await debug.waitLog((l) => l.msg === 'client connected to endpoint');
  assert.equal(connected.level, 20);
  assert.equal(connected.endpoint, 'dbg@dbg-svc');
  assert.equal(connected.attempts, 1);
  assert.equal(typeof connected.client, 'string');
  const msgs = new Set(debug.logs().filter((l) => l.level === 20).map((l) => l.msg));
  for (const m of ['configuration', 'mDNS instance up', 'endpoint added']) assert.ok(msgs.has(m), `debug has '${m}': ${[...msgs].join(' | ')}`);
  assert.ok(!debug.logs().some((l) => l.level === 10), 'no trace line at debug');
  // The advertiser at trace: its target checks.
  await adv.waitLog((l) => l.msg === 'target check' && l.ok === true && l.level === 10);
  // At info: not one debug or trace line.
  assert.deepEqual(info.logs().filter((l) => l.level < 30).map((l) => l.msg), []);
});
