// compose/tls under a real engine: the app counts through a mutual-TLS hop; a client without
// a certificate gets no Redis byte from the relay; a spoofing container on the same network that
// announces `redis` over mDNS gets connections from the app's ambassador but not one byte of the
// app's traffic (the TLS handshake fails on its certificate before anything is sent).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { IMAGE } from '../lib/compose.js';
import { buildImage, counts, docker, engineSummary, Example, log, skip, waitFor } from './kit.js';

// A rogue Redis: records every byte it receives, answers +OK to anything.
const ROGUE = `const fs=require('fs');require('net').createServer(s=>{s.on('data',d=>{fs.appendFileSync('/tmp/rogue.log',d.toString('latin1'));s.write('+OK\\r\\n')});s.on('error',()=>{})}).listen(6390)`;

describe('compose/tls under a real engine', { skip }, () => {
  const ex = new Example('tls');
  const rogue = `${ex.project}-rogue`;
  before(async () => {
    await buildImage();
    log(`up in ${await ex.up()} ms`);
  });
  after(async () => {
    if (process.exitCode) console.log(engineSummary());
    await docker('rm', '-f', rogue);
    log(`down in ${await ex.down()} ms`);
  });

  test('certs ran once and exited 0; the app counts through the TLS hop', async () => {
    assert.equal(await ex.inspect('certs', '{{.State.ExitCode}}'), '0');
    await waitFor('app counts to 3', async () => counts(await ex.logs('app')).includes(3), 40_000);
    const adv = JSON.parse((await ex.admin('redis-ambassador', '/peers')).body).advertisements[0];
    assert.equal(adv.announcedPort, 7379, 'the relay is announced, not Redis (loopback only)');
  });

  test('a client without a certificate: handshake refused, no Redis byte', async () => {
    const r = await docker('run', '--rm', '--network', `${ex.project}_mesh`, '--entrypoint', 'sh', 'alpine/openssl:3.3.2', '-c',
      'printf "PING\\r\\n" | timeout 10 openssl s_client -connect redis-pod:7379 -quiet 2>&1; true');
    log(`openssl s_client without a certificate: ${r.out.trim().split('\n').slice(-1)[0]}`);
    assert.ok(!r.out.includes('+PONG'), r.out);
    assert.match(r.out, /alert|error/i);
  });

  test('a spoofing container announcing redis gets connections but none of the app\'s bytes', async () => {
    await docker('rm', '-f', rogue);
    const since = new Date();
    const start = await docker('run', '-d', '--name', rogue, '--network', `${ex.project}_mesh`, '--entrypoint', 'sh', IMAGE, '-c',
      `node -e "${ROGUE}" & exec ambassador --advertise redis=6390,instance=rogue`);
    assert.equal(start.code, 0, start.out);
    // The app's ambassador sees it, tries it (it wants TLS from every redis endpoint), and refuses it.
    await waitFor('the app\'s ambassador refuses the rogue', async () => (await ex.records('app-ambassador', since))
      .some((r) => /TLS|plaintext/.test(String(r.msg)) && JSON.stringify(r).includes('rogue')), 40_000);
    const mark = new Date();
    await waitFor('app keeps counting', async () => counts(await ex.logs('app', mark)).length >= 3, 30_000);
    const got = (await docker('exec', rogue, 'sh', '-c', 'cat /tmp/rogue.log 2>/dev/null; true')).out;
    log(`rogue received ${got.length} bytes, none of them Redis commands`);
    assert.ok(!/incr|visits|\*2\r\n/i.test(got), `the rogue got app bytes: ${JSON.stringify(got.slice(0, 200))}`);
    assert.ok(!(await ex.logs('app', since)).some((l) => l === 'OK'), 'the app never got the rogue\'s answer');
  });
});
