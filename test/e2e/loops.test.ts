// Loops between ambassadors, on network namespaces: hosts whose ambassadors advertise
// each other's --connect listeners (two hosts, started together or one after the other; a ring of
// three), a rogue announcing two sidecars' listeners to each other, and a remote announcement at
// 127.0.0.1 / 0.0.0.0. Each time: no connection storm (nothing ever piped, a handful of
// connections accepted, file descriptors flat) and a log line that names the loop.
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Lab, type Host, type LabProcess, canUseNetns, haveCommand, redisCli, startRedis, waitFor } from '../lib/netns.js';
import { type Amb, type LogLine, MdnsHeard, sleep, startAmbassador, tagRedis } from './ambassador-kit.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') && haveCommand('redis-cli') && haveCommand('curl') ? undefined : 'needs redis-server, redis-cli and curl');
const ANNOUNCER = fileURLToPath(new URL('../fixtures/mdns-announce.js', import.meta.url));
const FAST = ['--health-interval', '500', '--wait-for-endpoint', '500'];

/** Prometheus text of `host`'s ambassador on 127.0.0.1:9901 → { 'name{labels}': value, name: sum }. */
async function metrics(host: Host): Promise<Record<string, number>> {
  const r = await host.exec('curl', ['-s', '--max-time', '3', 'http://127.0.0.1:9901/metrics'], { timeoutMs: 5000 });
  const out: Record<string, number> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    out[m[1]! + (m[2] ?? '')] = Number(m[3]);
    if (m[2]) out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[3]);
  }
  return out;
}

const fdsOf = (amb: Amb): number => readdirSync(`/proc/${amb.proc.pid}/fd`).length;

/** `redis-cli -p 6379 ping` through the local --connect listener: the ambassador's answer. */
async function ping(host: Host): Promise<string> {
  return (await redisCli(host, ['-p', '6379', 'ping'], { timeoutMs: 8000 })).reply;
}

/**
 * What a storm would show at once: connections piped, relayed, accepted by the hundred. Here not
 * one connection is ever piped nor relayed: every endpoint that leads into a loop is refused
 * from its first announcement on.
 */
async function assertNoStorm(hosts: Array<{ host: Host; amb: Amb; fds0: number }>, clients: number): Promise<void> {
  for (const { host, amb, fds0 } of hosts) {
    const m = await metrics(host);
    assert.equal(m.ambassador_connections_established_total ?? 0, 0, `${host.name}: nothing piped`);
    assert.equal(m.ambassador_relay_connections_accepted_total ?? 0, 0, `${host.name}: nothing relayed`);
    // the clients, plus the other advertisers' health checks of this listener (two a second)
    assert.ok((m.ambassador_connections_accepted_total ?? 0) < clients + 60, `${host.name}: accepted ${m.ambassador_connections_accepted_total}`);
    assert.ok(fdsOf(amb) < fds0 + 20, `${host.name}: fds ${fds0} → ${fdsOf(amb)}`);
    assert.ok(amb.proc.running);
  }
}

describe('loops between ambassadors', { skip }, () => {
  let lab: Lab;
  let live: Array<{ stop(): Promise<unknown> }> = [];
  const track = <T extends { stop(): Promise<unknown> }>(x: T): T => { live.push(x); return x; };

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c', 'r'], prefix: 'loop' });
  });
  afterEach(async () => {
    const xs = live.reverse();
    live = [];
    for (const x of xs) await x.stop().catch(() => {});
  });
  after(async () => {
    await lab?.destroy();
  });

  /** `--connect redis=0.0.0.0:6379 --advertise redis=<to>:6379`: a sidecar that also advertises another host's sidecar. */
  function sidecarAdvertising(host: Host, to: Host): Amb {
    return track(startAmbassador(host, ['--connect', 'redis=0.0.0.0:6379,protocol=redis', '--advertise', `redis=${to.ip}:6379`, '--admin', '9901', ...FAST]));
  }

  const refusedOwn = (host: Host) => (l: LogLine) => l.msg === 'endpoint refused'
    && new RegExp(`relays to ${host.ip.replace(/\./g, '\\.')}:6379, this ambassador's own --connect redis=0\\.0\\.0\\.0:6379,protocol=redis listener: .*\\(a loop\\)`).test(String(l.why));
  const withdrawnForLoop = (to: Host) => (l: LogLine) => l.msg === 'advertisement' && l.state === 'withdrawn'
    && new RegExp(`the target ${to.ip.replace(/\./g, '\\.')}:6379 is the --connect redis listener of the ambassador on ${to.name}\\.local .*\\(a loop\\)`).test(String(l.reason));

  test('two hosts whose ambassadors advertise each other’s connector ports, started together: no storm, the loop named', async () => {
    const [a, b] = [lab.host('a'), lab.host('b')];
    const ambA = sidecarAdvertising(a, b);
    const ambB = sidecarAdvertising(b, a);
    await Promise.all([ambA.waitLog({ msg: 'listening' }), ambB.waitLog({ msg: 'listening' })]);
    // Clients from the start on, on both sides (bounded): none may set a loop off meanwhile.
    const early: Promise<string>[] = [];
    for (let i = 0; i < 8; i++) {
      early.push(ping(a), ping(b));
      await sleep(250);
    }
    // Each advertiser withdraws (or never announces) once it knows its target is an ambassador's
    // listener; an announcement made before that is refused by the connector it points back to
    // (TXT relay-to names its listener): which of the two happens first depends on timing.
    await ambA.waitLog(withdrawnForLoop(b), { what: 'a withdraws its advertisement of b’s listener' });
    await ambB.waitLog(withdrawnForLoop(a), { what: 'b withdraws its advertisement of a’s listener' });
    for (const r of await Promise.all(early)) assert.match(r, /^ERR ambassador: no endpoint for 'redis'/);
    const fds = [{ host: a, amb: ambA, fds0: fdsOf(ambA) }, { host: b, amb: ambB, fds0: fdsOf(ambB) }];
    for (let i = 0; i < 5; i++) assert.match(await ping(a), /^ERR ambassador: no endpoint for 'redis'/);
    await assertNoStorm(fds, 8 + 5);
  });

  test('the same, b started once a waits for its target: both withdraw, no storm', async () => {
    const [a, b] = [lab.host('a'), lab.host('b')];
    const heard = track(await MdnsHeard.start(lab.host('r')));
    // a alone: its target (b's listener) does not accept yet.
    const ambA = sidecarAdvertising(a, b);
    await ambA.waitLog({ msg: 'advertisement', state: 'waiting-for-target' });
    // b starts once a's own listener record is announced (both announcements out)
    await heard.announced(a.ip, 'redis:6379@a._amb-connect._tcp.local', 'SRV');
    const ambB = sidecarAdvertising(b, a);
    await ambB.waitLog(withdrawnForLoop(a), { what: 'b withdraws (or never announces) its advertisement of a’s listener' });
    await ambA.waitLog(withdrawnForLoop(b), { what: 'a withdraws' });
    // An advertiser that announced before it knew what its target is (it learns the other
    // ambassadors' listeners within a second or two): the connector it points back to refused the
    // endpoint from its first announcement on (TXT relay-to).
    if (ambA.find({ msg: 'advertisement', state: 'announced' })) await ambB.waitLog(refusedOwn(b), { what: 'b refuses a’s relay to b' });
    if (ambB.find({ msg: 'advertisement', state: 'announced' })) await ambA.waitLog(refusedOwn(a), { what: 'a refuses b’s relay to a' });
    for (let i = 0; i < 5; i++) assert.match(await ping(b), /^ERR ambassador: no endpoint for 'redis'/);
    await assertNoStorm([{ host: a, amb: ambA, fds0: fdsOf(ambA) }, { host: b, amb: ambB, fds0: fdsOf(ambB) }], 5);
  });

  test('a ring of three (a → b → c → a): every advertisement withdrawn, every endpoint refused, no storm', async () => {
    const [a, b, c] = [lab.host('a'), lab.host('b'), lab.host('c')];
    const heard = track(await MdnsHeard.start(lab.host('r')));
    const ambs = [sidecarAdvertising(a, b), sidecarAdvertising(b, c), sidecarAdvertising(c, a)];
    await ambs[0]!.waitLog(withdrawnForLoop(b), { timeoutMs: 15_000 });
    await ambs[1]!.waitLog(withdrawnForLoop(c), { timeoutMs: 15_000 });
    await ambs[2]!.waitLog(withdrawnForLoop(a), { timeoutMs: 15_000 });
    // the goodbyes of the advertisements that were announced before they were withdrawn are out
    for (const [i, h] of [a, b, c].entries()) {
      const announced = ambs[i]!.find({ msg: 'advertisement', state: 'announced' });
      if (announced) await heard.waitFor(h.ip, `${String(announced.instance)}._redis._tcp.local`, 'SRV', { live: false });
    }
    const hosts = [a, b, c].map((host, i) => ({ host, amb: ambs[i]!, fds0: fdsOf(ambs[i]!) }));
    const before = await Promise.all([a, b, c].map(metrics));
    for (const h of [a, b, c]) assert.match(await ping(h), /^ERR ambassador: no endpoint for 'redis'/);
    const afterwards = await Promise.all([a, b, c].map(metrics));
    for (let i = 0; i < 3; i++) {
      assert.equal((afterwards[i]!.ambassador_connections_established_total ?? 0) - (before[i]!.ambassador_connections_established_total ?? 0), 0);
      assert.equal((afterwards[i]!.ambassador_relay_connections_accepted_total ?? 0) - (before[i]!.ambassador_relay_connections_accepted_total ?? 0), 0);
      assert.ok(fdsOf(hosts[i]!.amb) < hosts[i]!.fds0 + 20);
    }
  });

  test('a rogue announcing two sidecars’ --connect listeners to each other: both refused, no storm', async () => {
    const [a, b, r] = [lab.host('a'), lab.host('b'), lab.host('r')];
    const sidecar = (h: Host) => track(startAmbassador(h, ['--connect', 'redis=0.0.0.0:6379,protocol=redis', '--admin', '9901', ...FAST]));
    const ambA = sidecar(a);
    const ambB = sidecar(b);
    // Each knows the other's listener (announced after probing; heard within a second or two).
    // Before that, a rogue could set off a short-lived loop: see README, Loops and limits.
    for (const [h, other] of [[a, b], [b, a]] as const) {
      await waitFor(async () => {
        const r = await h.exec('curl', ['-s', '--max-time', '3', 'http://127.0.0.1:9901/peers'], { timeoutMs: 5000 });
        return (JSON.parse(r.stdout).ambassadorListeners as Array<{ addresses: string[] }>).some((l) => l.addresses.includes(other.ip));
      }, { timeoutMs: 15_000, message: `${h.name} knows ${other.name}'s listener` });
    }
    track(announcer(r, [{ instance: 'to-a', service: 'redis', port: 6379, address: a.ip }, { instance: 'to-b', service: 'redis', port: 6379, address: b.ip }]));
    for (const [amb, self, other] of [[ambA, a, b], [ambB, b, a]] as const) {
      await amb.waitLog((l) => l.msg === 'endpoint refused' && l.endpoint === `to-${self.name}` && /this ambassador's own --connect redis=0\.0\.0\.0:6379,protocol=redis listener/.test(String(l.why)));
      await amb.waitLog((l) => l.msg === 'endpoint refused' && l.endpoint === `to-${other.name}`
        && new RegExp(`is the --connect redis listener of the ambassador on ${other.name}\\.local .*circle between ambassadors \\(a loop\\)`).test(String(l.why)));
    }
    const fds = [{ host: a, amb: ambA, fds0: fdsOf(ambA) }, { host: b, amb: ambB, fds0: fdsOf(ambB) }];
    for (let i = 0; i < 5; i++) assert.match(await ping(a), /^ERR ambassador: no endpoint for 'redis'/);
    await assertNoStorm(fds, 5);
  });

  test('a remote announcement at 127.0.0.1 or 0.0.0.0 is ignored: the connector does not reach its own loopback service', async () => {
    const [a, r] = [lab.host('a'), lab.host('r')];
    // a's loopback-only redis, which no other host can mean.
    const secret = track(await startRedis(a, { port: 6380, bind: '127.0.0.1' }));
    await tagRedis(secret, 'a-loopback');
    const amb = track(startAmbassador(a, ['--connect', 'redis=6379,protocol=redis', '--admin', '9901', ...FAST]));
    track(announcer(r, [{ instance: 'lo', service: 'redis', port: 6380, address: '127.0.0.1' }, { instance: 'any', service: 'redis', port: 6380, address: '0.0.0.0' }]));
    await amb.waitLog((l) => l.msg === 'endpoint refused' && l.endpoint === 'lo' && /announced at 127\.0\.0\.1:6380, a loopback address, which cannot mean the announcing host/.test(String(l.why)));
    await amb.waitLog((l) => l.msg === 'endpoint refused' && l.endpoint === 'any' && /announced at 0\.0\.0\.0:6380, an address that names no host/.test(String(l.why)));
    assert.match((await redisCli(a, ['-p', '6379', 'get', 'whoami'], { timeoutMs: 8000 })).reply, /^ERR ambassador: no endpoint for 'redis'/);
    assert.equal((await metrics(a)).ambassador_connections_established_total ?? 0, 0);
  });

  function announcer(host: Host, instances: Array<{ instance: string; service: string; port: number; address: string; txt?: Record<string, string> }>): LabProcess {
    const p = host.spawn(process.execPath, [ANNOUNCER, JSON.stringify({ iface: host.ip, durationMs: 60_000, instances })], { name: `[${host.name}] mdns-announce` });
    return p;
  }
});
