// Interop with bonjour-service, an independent JavaScript mDNS implementation, on the loopback
// interface of the runner's private network namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bonjour, type Service } from 'bonjour-service';
import { MdnsEngine } from '../../src/mdns/engine.js';
import { resolveInterfaces } from '../../src/mdns/link/interfaces.js';

const skip = process.env.MDNS_AMBASSADOR_TEST_ISOLATED === '1' ? false : 'needs the private network namespace of `npm test` (multicast on loopback only)';

test('bonjour-service browses and resolves a service our engine publishes', { skip }, async () => {
  const engine = new MdnsEngine({ interfaces: resolveInterfaces(['127.0.0.1']), hostname: 'ours' });
  await engine.start();
  // Bound to 0.0.0.0: a socket bound to 127.0.0.1 (bonjour-service's default with `interface`)
  // hears no multicast on Linux.
  const bonjour = new Bonjour({ interface: '127.0.0.1', bind: '0.0.0.0' } as never);
  try {
    engine.publish({ name: 'bjtest', port: 4242, txt: { env: 'dev', role: 'primary' }, instance: 'Ours' });
    const found = await new Promise<Service>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('bonjour-service saw nothing within 5 s')), 5000);
      bonjour.find({ type: 'bjtest' }, (s) => {
        if (s.name !== 'Ours') return;
        clearTimeout(t);
        resolve(s);
      });
    });
    console.log(`# bonjour-service saw: ${JSON.stringify({ name: found.name, host: found.host, port: found.port, txt: found.txt, addresses: found.addresses })}`);
    assert.equal(found.port, 4242);
    assert.equal(found.host, 'ours.local');
    assert.deepEqual(found.txt, { env: 'dev', role: 'primary' });
    assert.deepEqual(found.addresses, ['127.0.0.1']);
  } finally {
    await new Promise<void>((r) => bonjour.destroy(() => r()));
    await engine.stop();
  }
});

test('our browser sees a service bonjour-service publishes (up, then down on its goodbye)', { skip }, async () => {
  const engine = new MdnsEngine({ interfaces: resolveInterfaces(['127.0.0.1']), hostname: 'ours' });
  await engine.start();
  const bonjour = new Bonjour({ interface: '127.0.0.1', bind: '0.0.0.0' } as never);
  try {
    // bonjour-service publishes no address record on a loopback-only host and its SRV target
    // lacks '.local': point it at a host name our engine does publish, so resolution completes.
    engine.publish({ name: 'anchor', port: 1 });
    bonjour.publish({ name: 'Theirs', type: 'bjpeer', port: 5151, host: 'ours.local', txt: { k: 'v' } });
    const b = engine.browse('bjpeer');
    const up = await new Promise<import('../../src/mdns/browse/browser.js').ServiceInstance>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('our browser saw nothing within 6 s')), 6000);
      b.on('up', (i) => {
        clearTimeout(t);
        resolve(i);
      });
    });
    assert.equal(up.instance, 'Theirs');
    assert.equal(up.port, 5151);
    assert.deepEqual(up.txt, { k: 'v' });
    assert.deepEqual(up.addresses, ['127.0.0.1']);
    const down = new Promise<void>((resolve) => b.on('down', () => resolve()));
    await new Promise<void>((r) => bonjour.unpublishAll(() => r()));
    await Promise.race([down, new Promise((_, rej) => setTimeout(() => rej(new Error('no down after goodbye')), 3000))]);
  } finally {
    await new Promise<void>((r) => bonjour.destroy(() => r()));
    await engine.stop();
  }
});
