// Proves the network-namespace lab (test/lib/netns.ts) works: addressing, TCP between hosts with
// a real redis-server, multicast between hosts, cable cuts, and complete cleanup.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { Lab, canUseNetns, haveCommand, redisCli, startRedis, waitFor } from '../lib/netns.js';

const skipLab = canUseNetns();
const skipRedis = skipLab ?? (haveCommand('redis-server') && haveCommand('redis-cli') ? undefined : 'redis-server/redis-cli not installed');

function netnsList(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return r.stdout.split('\n').map((l) => l.split(/\s/)[0]!).filter(Boolean);
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

// Joins 224.0.0.251 on the host's lab address (socket bound to 0.0.0.0: a socket bound to an
// interface address receives no multicast on Linux) and prints every datagram it gets.
const RECEIVER = `
const dgram = require('node:dgram');
const [port, ifaddr] = process.argv.slice(1);
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.on('message', (m, r) => console.log('got ' + m.toString() + ' from ' + r.address));
s.bind(Number(port), '0.0.0.0', () => { s.addMembership('224.0.0.251', ifaddr); console.log('ready'); });
setTimeout(() => process.exit(0), 30000);
`;
// Sends a bounded number of datagrams to 224.0.0.251 out of the host's lab interface.
const SENDER = `
const dgram = require('node:dgram');
const [port, ifaddr, text, count] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.bind(0, ifaddr, () => {
  s.setMulticastInterface(ifaddr); s.setMulticastTTL(1); s.setMulticastLoopback(false);
  let n = 0;
  const t = setInterval(() => {
    s.send(text + ' ' + n, Number(port), '224.0.0.251');
    if (++n >= Number(count)) { clearInterval(t); setTimeout(() => process.exit(0), 100); }
  }, 50);
});
`;

describe('netns lab', { skip: skipLab }, () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c'] });
  });
  after(async () => {
    await lab?.destroy();
  });

  test('hosts get namespaces, addresses in 198.18.0.0/15, lo up and a multicast route', async () => {
    assert.equal(lab.hostCount, 3);
    const ips = lab.hosts.map((h) => h.ip);
    assert.equal(new Set(ips).size, 3);
    for (const h of lab.hosts) {
      assert.match(h.ip, /^198\.18\.\d+\.\d+$/);
      assert.ok(netnsList().includes(h.netns), `${h.netns} listed`);
      const addr = await h.run('ip', ['-4', '-o', 'addr', 'show']);
      assert.match(addr, new RegExp(`${h.ifname}\\s+inet ${h.ip.replace(/\./g, '\\.')}/24`));
      assert.match(addr, /lo\s+inet 127\.0\.0\.1/);
      assert.doesNotMatch(addr, /eth0/, 'no real interface in a lab host');
      const route = await h.run('ip', ['route', 'get', '224.0.0.251']);
      assert.match(route, new RegExp(`dev ${h.ifname}`));
    }
    if (haveCommand('ping')) {
      const ping = await lab.host('b').exec('ping', ['-c', '1', '-W', '2', lab.host('c').ip]);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    }
  });

  test('spawn with hostname gives the process its own host name', async () => {
    const r = await lab.host('b').exec('hostname', [], { hostname: true });
    assert.equal(r.stdout.trim(), 'b');
  });

  test('redis-server on a:7001 is reachable from c by a\'s address', { skip: skipRedis }, async () => {
    const a = lab.host('a');
    const c = lab.host('c');
    const redis = await startRedis(a, { port: 7001 });
    assert.ok(redis.process.running);
    assert.equal((await redisCli(c, ['-h', a.ip, '-p', '7001', 'set', 'greeting', 'hello'])).reply, 'OK');
    assert.equal((await redisCli(c, ['-h', a.ip, '-p', '7001', 'get', 'greeting'])).reply, 'hello');
    // not reachable on c's own loopback: hosts really are separate
    const local = await redisCli(c, ['-p', '7001', 'ping']);
    assert.notEqual(local.reply, 'PONG');

    // cut a's cable: c can no longer reach it; plug it back: reachable again
    await a.linkDown();
    const cut = await redisCli(c, ['-h', a.ip, '-p', '7001', 'ping'], { timeoutMs: 2500 });
    assert.notEqual(cut.reply, 'PONG');
    await a.linkUp();
    await waitFor(async () => (await redisCli(c, ['-h', a.ip, '-p', '7001', 'ping'], { timeoutMs: 2000 })).reply === 'PONG',
      { timeoutMs: 10_000, message: 'redis reachable after linkUp' });

    // host-side link down as well
    await a.linkDown('host');
    const cut2 = await redisCli(c, ['-h', a.ip, '-p', '7001', 'ping'], { timeoutMs: 2500 });
    assert.notEqual(cut2.reply, 'PONG');
    await a.linkUp('host');
    await waitFor(async () => (await redisCli(c, ['-h', a.ip, '-p', '7001', 'ping'], { timeoutMs: 2000 })).reply === 'PONG',
      { timeoutMs: 10_000, message: 'redis reachable after host-side linkUp' });
    await redis.stop();
    assert.equal(redis.process.running, false);
  });

  test('multicast from a reaches b and c; not a host whose cable is cut', async () => {
    const [a, b, c] = [lab.host('a'), lab.host('b'), lab.host('c')];
    const port = '5390';
    const rb = b.spawn(process.execPath, ['-e', RECEIVER, port, b.ip]);
    const rc = c.spawn(process.execPath, ['-e', RECEIVER, port, c.ip]);
    await rb.waitForLine(/^ready$/);
    await rc.waitForLine(/^ready$/);
    const s1 = a.spawn(process.execPath, ['-e', SENDER, port, a.ip, 'hello', '10']);
    const mb = await rb.waitForLine(/^got hello \d+ from (\S+)$/);
    const mc = await rc.waitForLine(/^got hello \d+ from (\S+)$/);
    assert.equal(mb[1], a.ip);
    assert.equal(mc[1], a.ip);
    await s1.exited;

    await c.linkDown();
    const since = rc.mark();
    const sinceB = rb.mark();
    const s2 = a.spawn(process.execPath, ['-e', SENDER, port, a.ip, 'again', '10']);
    await rb.waitForLine(/^got again/, { since: sinceB });
    await s2.exited;
    await new Promise((r) => setTimeout(r, 200));
    assert.doesNotMatch(rc.output.slice(since), /again/, 'c is cut off');
    await c.linkUp();
    await rb.stop();
    await rc.stop();
  });

  test('attach: the test process itself can reach a host', { skip: skipRedis }, async () => {
    const lab2 = await Lab.create({ hosts: ['x'], attach: true });
    try {
      assert.ok(lab2.gateway);
      assert.notEqual(lab2.subnet, lab.subnet, 'consecutive labs use different subnets');
      const x = lab2.host('x');
      await startRedis(x, { port: 7002 });
      const reply = await new Promise<string>((resolve, reject) => {
        const s = connect(7002, x.ip, () => s.write('PING\r\n'));
        s.setTimeout(5000, () => { s.destroy(); reject(new Error('timeout')); });
        s.on('data', (d) => { resolve(d.toString().trim()); s.end(); });
        s.on('error', reject);
      });
      assert.equal(reply, '+PONG');
    } finally {
      await lab2.destroy();
    }
  });
});

test('extra networks give hosts a second interface on a separate segment', { skip: skipLab }, async () => {
  const lab = await Lab.create({ hosts: ['a', 'b', 'c'], networks: { back: ['a', 'b'] } });
  try {
    const [a, b, c] = [lab.host('a'), lab.host('b'), lab.host('c')];
    assert.notEqual(lab.subnets.back, lab.subnets.lan);
    assert.equal(a.link('back').ifname, 'lab1');
    assert.equal(a.primary.ifname, 'lab0');
    assert.throws(() => c.link('back'), /not on network/);
    const addrs = await a.run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'lab1']);
    assert.ok(addrs.includes(a.link('back').cidr));
    // TCP over the back segment: a listens, b connects to a's back address; c has no route there
    const srv = a.spawn(process.execPath, ['-e',
      `require('node:net').createServer((s) => s.end('hi from back\\n')).listen(7100, () => console.log('listening'))`]);
    await srv.waitForLine(/listening/);
    const client = `const s = require('node:net').connect(7100, process.argv[1]); s.setTimeout(1500, () => process.exit(3));
      s.on('data', (d) => { process.stdout.write(d); process.exit(0); }); s.on('error', (e) => { console.error(e.code); process.exit(2); });`;
    const viaB = await b.exec(process.execPath, ['-e', client, a.link('back').ip]);
    assert.equal(viaB.stdout.trim(), 'hi from back');
    const viaC = await c.exec(process.execPath, ['-e', client, a.link('back').ip]);
    assert.notEqual(viaC.code, 0);
    // cutting the back cable leaves the primary one working
    await a.linkDown('switch', 'back');
    assert.notEqual((await b.exec(process.execPath, ['-e', client, a.link('back').ip])).code, 0);
    assert.equal((await b.exec(process.execPath, ['-e', client, a.ip])).stdout.trim(), 'hi from back');
  } finally {
    await lab.destroy();
  }
});

test('routed sites: unicast crosses the router, multicast stays in its site', { skip: skipLab }, async () => {
  const lab = await Lab.create({ hosts: ['a', 'a2', 'b'], sites: { east: ['a', 'a2'], west: ['b'] } });
  try {
    const [a, a2, b] = [lab.host('a'), lab.host('a2'), lab.host('b')];
    assert.equal(a.ip.split('.').slice(0, 3).join('.'), lab.subnets.east!.replace(/\.0\/24$/, ''));
    assert.notEqual(lab.subnets.east, lab.subnets.west);
    assert.equal(a.ifname, 'lab0');
    assert.ok(lab.routerNetns);
    // TCP across the router
    const srv = b.spawn(process.execPath, ['-e', `require('node:net').createServer((s) => s.end('hi from west\\n')).listen(7101, () => console.log('listening'))`]);
    await srv.waitForLine(/listening/);
    const client = `const s = require('node:net').connect(7101, process.argv[1]); s.setTimeout(1500, () => process.exit(3));
      s.on('data', (d) => { process.stdout.write(d); process.exit(0); }); s.on('error', (e) => { console.error(e.code); process.exit(2); });`;
    assert.equal((await a.exec(process.execPath, ['-e', client, b.ip])).stdout.trim(), 'hi from west');
    // multicast: a2 (same site) hears it, b (other site) does not
    const port = '5391';
    const r2 = a2.spawn(process.execPath, ['-e', RECEIVER, port, a2.ip]);
    const rb = b.spawn(process.execPath, ['-e', RECEIVER, port, b.ip]);
    await r2.waitForLine(/^ready$/);
    await rb.waitForLine(/^ready$/);
    const sender = a.spawn(process.execPath, ['-e', SENDER, port, a.ip, 'site', '10']);
    await r2.waitForLine(/^got site \d+ from /);
    await sender.exited;
    await new Promise((r) => setTimeout(r, 200));
    assert.doesNotMatch(rb.output, /got site/, 'multicast must not cross the router');
    // the router can cut a site off (a partition)
    await lab.execOnRouter('iptables', ['-A', 'FORWARD', '-s', a.ip, '-j', 'DROP']);
    assert.notEqual((await a.exec(process.execPath, ['-e', client, b.ip])).code, 0);
  } finally {
    await lab.destroy();
  }
});

test('destroy kills every child by PID and removes all namespaces', { skip: skipLab }, async () => {
  const lab = await Lab.create({ hosts: ['p', 'q'], prefix: 'ambd' });
  const names = lab.netnsNames;
  assert.equal(names.length, 3, 'two hosts and the switch');
  for (const n of names) assert.ok(netnsList().includes(n));
  const sleeper = lab.host('p').spawn('sleep', ['600']);
  // a process that ignores SIGTERM: destroy must escalate to SIGKILL
  const stubborn = lab.host('q').spawn('sh', ['-c', 'trap "" TERM; echo armed; while :; do sleep 0.1; done']);
  await stubborn.waitForLine(/armed/);
  const t0 = Date.now();
  await lab.destroy(500);
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(sleeper.running, false);
  assert.equal(stubborn.running, false);
  assert.equal(alive(sleeper.pid), false);
  assert.equal(alive(stubborn.pid), false);
  const left = netnsList();
  for (const n of names) assert.ok(!left.includes(n), `${n} removed`);
  assert.throws(() => lab.host('p').spawn('true'), /destroyed/);
  await lab.destroy(); // idempotent
});
