// Two or more engines on the loopback interface of the runner's private network namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { MdnsEngine } from '../../src/mdns/engine.js';
import { resolveInterfaces } from '../../src/mdns/link/interfaces.js';
import type { ServiceBrowser, ServiceInstance } from '../../src/mdns/browse/browser.js';
import { decodePacket, encodePacket } from '../../src/mdns/wire/codec.js';

const skip = process.env.MDNS_AMBASSADOR_TEST_ISOLATED === '1' ? false : 'needs the private network namespace of `npm test` (multicast on loopback only)';
const lo = () => resolveInterfaces(['127.0.0.1']);

async function engine(hostname: string, ttl?: number): Promise<MdnsEngine> {
  const e = new MdnsEngine({ interfaces: lo(), hostname, ...(ttl ? { ttl: { host: ttl, txt: ttl, ptr: ttl } } : {}) });
  await e.start();
  return e;
}

function waitEvent(b: ServiceBrowser, ev: 'up' | 'down' | 'update', pred: (i: ServiceInstance) => boolean, ms: number): Promise<ServiceInstance> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      b.off(ev, on);
      reject(new Error(`no '${ev}' within ${ms} ms`));
    }, ms);
    const on = (i: ServiceInstance) => {
      if (!pred(i)) return;
      clearTimeout(t);
      b.off(ev, on);
      resolve(i);
    };
    b.on(ev, on);
    for (const i of ev === 'up' ? b.instances() : []) if (pred(i)) on(i);
  });
}

test('two engines see each other with port, TXT and address', { skip }, async () => {
  const a = await engine('alpha');
  const b = await engine('beta');
  try {
    const t0 = Date.now();
    a.publish({ name: 'redis', port: 6380, txt: { env: 'staging', role: 'primary' }, priority: 1, weight: 5 });
    b.publish({ name: 'api', port: 8080 });
    const seenByB = await waitEvent(b.browse('redis'), 'up', () => true, 3000);
    const seenByA = await waitEvent(a.browse('api'), 'up', () => true, 3000);
    console.log(`# discovery took ${Date.now() - t0} ms`);
    assert.equal(seenByB.port, 6380);
    assert.equal(seenByB.host, 'alpha.local');
    assert.deepEqual(seenByB.addresses, ['127.0.0.1']);
    assert.deepEqual(seenByB.txt, { env: 'staging', role: 'primary' });
    assert.equal(seenByB.priority, 1);
    assert.equal(seenByB.weight, 5);
    assert.equal(seenByB.instance, 'redis@alpha');
    assert.equal(seenByA.port, 8080);
  } finally {
    await a.stop();
    await b.stop();
  }
});

test('a graceful stop marks the instance leaving on the other side within 1.5 s and removes it a second later (goodbye)', { skip }, async () => {
  const a = await engine('alpha');
  const b = await engine('beta');
  try {
    a.publish({ name: 'redis', port: 6380 });
    const br = b.browse('redis');
    await waitEvent(br, 'up', () => true, 3000);
    const leaving = waitEvent(br, 'update', (i) => i.leaving, 1500);
    const down = waitEvent(br, 'down', () => true, 3000);
    const t0 = Date.now();
    await a.stop();
    await leaving;
    const tLeaving = Date.now() - t0;
    await down;
    console.log(`# after the goodbye: leaving (no new connections) in ${tLeaving} ms, removed in ${Date.now() - t0} ms`);
    assert.equal(br.instances().length, 0);
  } finally {
    await a.stop();
    await b.stop();
  }
});

test('a SIGKILLed announcer (no goodbye) is removed when its TTL runs out', { skip }, async () => {
  const b = await engine('beta');
  const script = fileURLToPath(new URL('../fixtures/mdns-publisher.js', import.meta.url));
  const child = spawn(process.execPath, [script, 'gamma', 'cache', '7000', '3'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const br = b.browse('cache');
    await waitEvent(br, 'up', (i) => i.port === 7000, 5000);
    const down = waitEvent(br, 'down', () => true, 8000);
    const t0 = Date.now();
    child.kill('SIGKILL');
    await down;
    const took = Date.now() - t0;
    console.log(`# removal after SIGKILL took ${took} ms with a 3 s TTL`);
    assert.ok(took >= 1500, 'removed only when the TTL ran out, not before');
  } finally {
    child.kill('SIGKILL');
    await b.stop();
  }
});

test('a name conflict is resolved by renaming one side, and both services stay visible', { skip }, async () => {
  const a = await engine('alpha');
  const b = await engine('beta');
  const c = await engine('gamma');
  try {
    const ra = a.publish({ name: 'redis', port: 6380, instance: 'shared' });
    const rb = b.publish({ name: 'redis', port: 6381, instance: 'shared' });
    const br = c.browse('redis');
    const names = new Set<string>();
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`saw only ${[...names].join(', ')}`)), 6000);
      br.on('up', (i) => {
        names.add(`${i.instance}:${i.port}`);
        if (names.size === 2) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const instances = [ra.instance, rb.instance].sort();
    console.log(`# after conflict: ${[...names].join(', ')}`);
    assert.deepEqual(instances, ['shared', 'shared (2)']);
    assert.equal(a.stats().conflicts + b.stats().conflicts >= 1, true);
  } finally {
    await a.stop();
    await b.stop();
    await c.stop();
  }
});

test('legacy unicast query: answered by unicast to the source port, ID echoed, TTL ≤ 10 s', { skip }, async () => {
  const a = await engine('alpha');
  const sock = createSocket('udp4');
  try {
    const reg = a.publish({ name: 'redis', port: 6380 });
    await once(reg, 'state'); // probing → announcing
    while (reg.state !== 'announced') await once(reg, 'state');
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    const q = encodePacket({ id: 0x4242, type: 'query', questions: [{ name: '_redis._tcp.local', type: 'PTR' }] });
    sock.send(q, 5353, '224.0.0.251');
    const [msg, rinfo] = (await Promise.race([
      once(sock, 'message'),
      new Promise((_, rej) => setTimeout(() => rej(new Error('no unicast reply')), 2000)),
    ])) as [Buffer, { port: number }];
    const p = decodePacket(msg);
    assert.equal(rinfo.port, 5353);
    assert.equal(p.id, 0x4242);
    assert.equal(p.type, 'response');
    assert.deepEqual(p.questions.map((x) => x.name), ['_redis._tcp.local']);
    assert.equal(p.answers[0]?.data, 'redis@alpha._redis._tcp.local');
    for (const r of [...p.answers, ...p.additionals]) {
      assert.ok(r.ttl <= 10);
      assert.equal(r.flush, false);
    }
    assert.ok(p.additionals.some((r) => r.type === 'SRV'), 'SRV rides along as an additional record');
  } finally {
    sock.close();
    await a.stop();
  }
});

test('a flood of malformed packets is counted and leaves the engine alive and correct', { skip }, async () => {
  const a = await engine('alpha');
  const b = await engine('beta');
  const sock = createSocket({ type: 'udp4', reuseAddr: true });
  try {
    a.publish({ name: 'redis', port: 6380 });
    const br = b.browse('redis');
    await waitEvent(br, 'up', () => true, 3000);
    sock.bind(5353, '0.0.0.0');
    await once(sock, 'listening');
    sock.setMulticastInterface('127.0.0.1');
    const good = encodePacket({
      type: 'response',
      answers: [
        { name: '_redis._tcp.local', type: 'PTR', ttl: 120, data: 'evil._redis._tcp.local' },
        { name: 'evil._redis._tcp.local', type: 'SRV', ttl: 120, data: { priority: 0, weight: 0, port: 1, target: 'evil.local' } },
      ],
    });
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const N = 2000;
    for (let i = 0; i < N; i++) {
      let pkt: Buffer;
      if (i % 4 === 0) {
        pkt = Buffer.alloc(Math.floor(rnd() * 64));
        for (let j = 0; j < pkt.length; j++) pkt[j] = Math.floor(rnd() * 256);
      } else {
        pkt = Buffer.from(good.subarray(0, 12 + Math.floor(rnd() * (good.length - 14))));
        pkt[Math.floor(rnd() * pkt.length)] = 0xc0; // a compression pointer somewhere
      }
      sock.send(pkt, 5353, '224.0.0.251');
      if (i % 25 === 0) await new Promise((r) => setTimeout(r, 2)); // paced: same process, same socket buffers
    }
    await new Promise((r) => setTimeout(r, 300));
    const stats = b.stats();
    console.log(`# ${N} hostile packets sent; engine counted malformed=${stats.malformed}`);
    assert.ok(stats.malformed >= N * 0.9, `counted ${stats.malformed} of ${N}`);
    // Still working: the genuine instance is there, a new one is still discovered.
    assert.deepEqual(br.instances().map((i) => i.port), [6380]);
    a.publish({ name: 'redis', port: 6390, instance: 'second' });
    await waitEvent(br, 'up', (i) => i.port === 6390, 3000);
  } finally {
    sock.close();
    await a.stop();
    await b.stop();
  }
});

test('host-mates: a stop sends no goodbye for the host address another engine of this host still answers for; the last one does', { skip }, async () => {
  // Two engines with one host name, as two ambassadors side by side on one host; a raw socket
  // on the group records every goodbye (TTL 0) for the host's address.
  const sock = createSocket({ type: 'udp4', reuseAddr: true });
  sock.bind(5353, '0.0.0.0');
  await once(sock, 'listening');
  sock.addMembership('224.0.0.251', '127.0.0.1');
  const addressGoodbyes: number[] = [];
  sock.on('message', (msg) => {
    try {
      const p = decodePacket(msg);
      if (p.type === 'response' && p.answers.some((r) => r.type === 'A' && r.name === 'mates.local' && r.ttl === 0)) addressGoodbyes.push(Date.now());
    } catch { /* not ours to judge */ }
  });
  const a = await engine('mates');
  const b = await engine('mates');
  try {
    const ra = a.publish({ name: 'one', port: 7000 });
    const rb = b.publish({ name: 'sib', port: 7200 });
    for (const reg of [ra, rb]) while (reg.state !== 'announced') await once(reg, 'state');
    a.askHostMates();
    await a.stop();
    assert.deepEqual(addressGoodbyes, [], 'b still answers for mates.local: no goodbye for its address');
    b.askHostMates();
    await b.stop();
    await waitFor(() => addressGoodbyes.length > 0, 2000);
    assert.equal(addressGoodbyes.length, 1, 'the last one says goodbye for the address');
  } finally {
    sock.close();
    await a.stop();
    await b.stop();
  }
});

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
