// `--connect NAME=PORT` is for an application that connects to `localhost:PORT`: where `localhost`
// resolves to ::1 first, a client that tries one address only must still reach the listener.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AmbProc, echoOnce, echoServer, freePort, isolated } from '../robustness/kit.js';
import net from 'node:net';

const LO = ['--interface', '127.0.0.1'];

/** One line through port on `host`, echoed. */
function echoVia(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => s.write('ping\n'));
    s.setEncoding('utf8');
    let got = '';
    s.on('data', (d: string) => {
      got += d;
      if (got.endsWith('\n')) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
  });
}

test('the default listener takes both loopback addresses, 127.0.0.1 and ::1; an explicit bind only its own', { skip: isolated }, async (t) => {
  const up = await echoServer();
  t.after(() => up.close());
  const [port, v4only] = [await freePort(), await freePort()];
  const amb = new AmbProc([...LO, '--connect', `echo=${port}`, '--connect', `echo=127.0.0.1:${v4only}`, '--static', `echo=127.0.0.1:${up.port}`]);
  t.after(() => amb.stop());
  const listening = await amb.waitLog((l) => l.msg === 'listening' && l.listen === `127.0.0.1:${port}`);
  assert.deepEqual(listening.alsoOn, [`[::1]:${port}`]);
  await amb.waitLog((l) => l.msg === 'endpoint up');
  assert.equal(await echoVia('::1', port), 'ping\n');
  assert.equal(await echoVia('127.0.0.1', port), 'ping\n');
  await echoOnce(v4only);
  await assert.rejects(echoVia('::1', v4only), /ECONNREFUSED/);
});
