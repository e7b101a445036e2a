// The README's flags and use-case rows that no other test runs, each against running ambassadors
// on one netns lab (a, b, c, d on the LAN; a and d also on a back segment) with real redis-server:
// a relay to a named host, subtype=, --keep-connections, --probe-port, live `browse` with and
// without a name, failback=retire|keep, --exclude-interface, check=none, weight=, max-pending and
// max-per-endpoint. (`--log-format pretty`: test/integration/log-format.test.ts.)
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, type Host, type LabProcess, type RedisServer, canUseNetns, haveCommand, redisCli, startRedis, waitFor } from '../lib/netns.js';
import {
  adminGet, type Amb, CLI, metricSum, runLoop, startAdvertiser, startAmbassador, startAmbassadorWithFiles, startConnector, tagRedis, waitServedBy, whoServes,
} from './ambassador-kit.js';

const skip = canUseNetns() ?? (['redis-server', 'redis-cli', 'curl', 'dig'].filter((c) => !haveCommand(c)).map((c) => `${c} not installed`)[0]);

// A client holding one connection through a connector, sending a line when told to: what a
// pooled client does. Prints CONNECTED, REPLY <line> per reply line, CLOSED.
const HELD = String.raw`
const s = require('node:net').connect(Number(process.argv[1]), '127.0.0.1');
let buf = '';
s.on('connect', () => console.log('CONNECTED'));
s.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\r\n')) >= 0; buf = buf.slice(i + 2)) if (!buf.startsWith('$')) console.log('REPLY ' + buf.slice(0, i));
});
s.on('close', () => { console.log('CLOSED'); process.exit(0); });
s.on('error', (e) => console.log('ERROR ' + e.code));
process.stdin.on('data', (d) => s.write(d));
setTimeout(() => process.exit(2), 120000);
`;

class Held {
  private constructor(readonly proc: LabProcess) {}

  static async open(host: Host, port: number): Promise<Held> {
    const proc = host.spawn(process.execPath, ['-e', HELD, String(port)], { name: `[${host.name}] held client :${port}`, stdin: 'pipe' });
    await proc.waitForLine(/^CONNECTED$/m);
    return new Held(proc);
  }

  /** Sends a RESP inline command, returns the first reply line. */
  async ask(command: string): Promise<string> {
    const since = this.proc.mark('stdout');
    this.proc.write(`${command}\r\n`);
    return (await this.proc.waitForLine(/^REPLY (.*)$/m, { since, stream: 'stdout' }))[1]!;
  }

  get closed(): boolean {
    return /^CLOSED$/m.test(this.proc.stdout);
  }

  async waitClosed(timeoutMs = 10_000): Promise<number> {
    await this.proc.waitForLine(/^CLOSED$/m, { timeoutMs });
    return Date.now();
  }

  stop(): Promise<unknown> {
    return this.proc.stop(500);
  }
}

/** Binomial tail P(X >= k) for n trials of probability p. */
function binomAtLeast(k: number, n: number, p: number): number {
  let lnC = 0; // ln C(n, i), built up from i = 0
  let sum = 0;
  for (let i = 0; i <= n; i++) {
    if (i > 0) lnC += Math.log(n - i + 1) - Math.log(i);
    if (i >= k) sum += Math.exp(lnC + i * Math.log(p) + (n - i) * Math.log(1 - p));
  }
  return sum;
}

describe('every flag, end to end', { skip }, () => {
  let lab: Lab;
  let ra: RedisServer;
  let rb: RedisServer;
  let live: Array<{ stop(): Promise<unknown> }> = [];
  const track = <T extends { stop(): Promise<unknown> }>(x: T): T => { live.push(x); return x; };
  const h = (name: string) => lab.host(name);

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b', 'c', 'd'], networks: { back: ['a', 'd'] }, prefix: 'flag' });
    [ra, rb] = await Promise.all([startRedis(h('a'), { port: 7001 }), startRedis(h('b'), { port: 7002 })]);
    await tagRedis(ra, 'a');
    await tagRedis(rb, 'b');
  });
  afterEach(async () => {
    const xs = live.reverse();
    live = [];
    for (const x of xs) await x.stop().catch(() => {});
  });
  after(async () => {
    await lab?.destroy();
  });

  test('--advertise redis=db:7101 (the README\'s relay to a named host): resolved by the system resolver, relayed on a port of its own', async () => {
    const [a, c] = [h('a'), h('c')];
    const db = track(await startRedis(a, { port: 7101, bind: '127.0.0.1' }));
    await tagRedis(db, 'db on a');
    // `db` is a name only a's resolver knows (its own /etc/hosts, as a compose network gives a container)
    const adv = track(startAmbassadorWithFiles(a, 'db', { hosts: '127.0.0.1 localhost\n127.0.0.1 db\n' },
      ['--hostname', 'a', '--interface', a.ifname, '--advertise', 'named=db:7101']));
    const announced = await adv.waitLog({ msg: 'advertisement', state: 'announced' }, { timeoutMs: 20_000 });
    assert.equal(typeof announced.port, 'number');
    assert.notEqual(announced.port, 7101, 'the relay\'s own port is announced, not the target\'s');
    track(await startConnector(c, ['--connect', 'named=6390']));
    await waitServedBy(c, 'db on a', { port: 6390 });
  });

  test('subtype=primary: the _primary._sub PTR is announced and answered (dig, a legacy unicast query); another subtype is not', async () => {
    const [a, c] = [h('a'), h('c')];
    track((await startAdvertiser(a, ['--advertise', 'subbed=7001,subtype=primary'])).amb);
    // Asked at a's address: dig rejects an answer to a multicast query that comes from a unicast
    // address, as RFC 6762 §6.7 answers do.
    const dig = async (name: string, tries = 2) => (await c.exec('dig', ['+short', '+time=2', `+tries=${tries}`, '-p', '5353', `@${a.ip}`, name, 'PTR'], { timeoutMs: 15_000 })).stdout.trim();
    const ours = /^subbed\\?@a\._subbed\._tcp\.local\.$/;
    assert.match(await dig('_primary._sub._subbed._tcp.local'), ours);
    assert.match(await dig('_subbed._tcp.local'), ours, 'the plain type too');
    // a responder stays silent for what it does not have (RFC 6762 §6): dig times out
    const other = await dig('_replica._sub._subbed._tcp.local', 1);
    assert.match(other, /timed out/, 'no answer for a subtype it does not have');
    assert.doesNotMatch(other, /subbed@/);
  });

  test('--keep-connections: a connection outlives a cable cut of its endpoint; without it, it is closed when the endpoint is found dead', async () => {
    const [a, c] = [h('a'), h('c')];
    track((await startAdvertiser(a, ['--advertise', 'kept=7001'])).amb);
    const dflt = track(await startConnector(c, ['--connect', 'kept=6391']));
    const keep = track(await startConnector(c, ['--connect', 'kept=6392', '--keep-connections']));
    const held1 = track(await Held.open(c, 6391));
    const held2 = track(await Held.open(c, 6392));
    assert.equal(await held1.ask('GET whoami'), 'a');
    assert.equal(await held2.ask('GET whoami'), 'a');
    const t0 = Date.now();
    await a.linkDown();
    try {
      await dflt.waitLog({ msg: 'endpoint down', service: 'kept' }, { since: t0 });
      await keep.waitLog({ msg: 'endpoint down', service: 'kept' }, { since: t0 });
      await held1.waitClosed(); // the default: closed at once, the client reconnects to a live endpoint
    } finally {
      await a.linkUp();
    }
    // a back: the kept connection was never closed and carries traffic again (TCP waited it out)
    await keep.waitLog({ msg: 'endpoint up', service: 'kept' }, { since: t0, timeoutMs: 20_000 });
    assert.equal(held2.closed, false);
    assert.equal(await held2.ask('GET whoami'), 'a');
  });

  test('--probe-port 5390: the advertiser answers host probes there, and a connector judges its endpoint by them', async () => {
    const [a, c] = [h('a'), h('c')];
    track((await startAdvertiser(a, ['--advertise', 'probed=7001', '--probe-port', '5390', '--admin', '9901'])).amb);
    track(await startConnector(c, ['--connect', 'probed=6393', '--admin', '9902']));
    await waitServedBy(c, 'a', { port: 6393 });
    const ours = JSON.parse(await adminGet(a, 9901, '/peers')) as { hostProbes: { answered: { port: number } } };
    assert.equal(ours.hostProbes.answered.port, 5390);
    const ep = await waitFor(async () => {
      const p = JSON.parse(await adminGet(c, 9902, '/peers')) as { clusters: Array<{ endpoints: Array<{ health: { from: string; hostProbe: { host: string; state: string } | null } }> }> };
      const e = p.clusters[0]!.endpoints[0];
      return e?.health.hostProbe?.state === 'up' ? e : undefined;
    }, { timeoutMs: 10_000, intervalMs: 200, message: 'c probes a\'s host' });
    assert.equal(ep.health.from, 'host-probe');
    assert.equal(ep.health.hostProbe!.host, `${a.ip}:5390`);
    const sockets = await a.run('ss', ['-ulnH', 'sport = :5390']);
    assert.match(sockets, /:5390\b/, 'a UDP socket on 5390');
  });

  test('browse, live and with no name: + for what appears, = for what changes, - for what leaves, every service type', async () => {
    const [a, b, c] = [h('a'), h('b'), h('c')];
    const browse = track(c.spawn(process.execPath, [CLI, 'browse', '--interface', c.ifname], { name: '[c] ambassador browse' }));
    const line = (re: RegExp) => browse.waitForLine(re, { stream: 'stdout', timeoutMs: 20_000 });
    const web = track((await startAdvertiser(b, ['--advertise', 'web=7002,txt.v=1'])).amb);
    track((await startAdvertiser(a, ['--advertise', 'printer=7001'])).amb);
    await line(new RegExp(`^\\+ web@b\\s+_web\\._tcp\\s+b\\.local\\.?\\s+${b.ip.replace(/\./g, '\\.')}:7002\\b.*\\bv=1\\b`, 'm'));
    await line(/^\+ printer@a\s+_printer\._tcp\s/m);
    const newIp = b.ip.replace(/\.\d+$/, '.102');
    await b.addAddress(`${newIp}/24`);
    await line(new RegExp(`^= web@b\\s+.*${newIp.replace(/\./g, '\\.')}:7002`, 'm'));
    await web.stop();
    await line(/^- web@b\s+_web\._tcp\s/m);
    await b.delAddress(`${newIp}/24`);
  });

  test('balance=srv with failback=retire (the default) and failback=keep: pooled connections on the standby, the primary back', async () => {
    const [a, b, c] = [h('a'), h('b'), h('c')];
    const conn = track(await startConnector(c, ['--connect', 'fb=6394,balance=srv', '--connect', 'fb=6395,balance=srv,failback=keep']));
    track((await startAdvertiser(b, ['--advertise', 'fb=7002,priority=10'])).amb);
    await waitServedBy(c, 'b', { port: 6394 });
    const retire = track(await Held.open(c, 6394));
    const keep = track(await Held.open(c, 6395));
    assert.equal(await retire.ask('GET whoami'), 'b');
    assert.equal(await keep.ask('GET whoami'), 'b');
    const t0 = Date.now();
    track((await startAdvertiser(a, ['--advertise', 'fb=7001,priority=0'])).amb);
    const up = await conn.waitLog({ msg: 'endpoint up', address: `${a.ip}:7001` }, { since: t0, timeoutMs: 20_000 });
    const closed = await retire.waitClosed();
    assert.equal(await whoServes(c, 6394), 'a', 'the pool reconnects to the primary');
    assert.equal(await whoServes(c, 6395), 'a', 'new connections go to the primary with keep too');
    const pause = Math.max(1000, 3 * (closed - up.time));
    await new Promise((r) => setTimeout(r, pause));
    assert.equal(keep.closed, false, `failback=keep: the standby connection still open ${pause} ms later`);
    assert.equal(await keep.ask('GET whoami'), 'b', 'and still on the standby');
  });

  test('--exclude-interface lab1: mDNS only on lab0; a peer on the back segment does not see the service, one on the LAN does', async () => {
    const [a, b, d] = [h('a'), h('b'), h('d')];
    track((await startAdvertiser(a, ['--advertise', 'ex=7001', '--exclude-interface', 'lab1', '--admin', '9903'], { iface: false })).amb);
    const peers = JSON.parse(await adminGet(a, 9903, '/peers')) as { network: { interfaces: Array<{ name: string }> } };
    assert.deepEqual(peers.network.interfaces.map((i) => i.name), [a.ifname]);
    const browseOnce = async (host: Host, iface: string) => {
      const r = await host.exec(process.execPath, [CLI, 'browse', 'ex', '--once', '--json', '--wait', '2500', '--interface', iface], { timeoutMs: 15_000 });
      return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { instance: string });
    };
    const [onLan, onBack] = await Promise.all([browseOnce(b, b.ifname), browseOnce(d, d.link('back').ifname)]);
    assert.deepEqual(onLan.map((i) => i.instance), ['ex@a'], 'seen on the LAN');
    assert.deepEqual(onBack, [], 'not on the excluded link');
  });

  test('check=none: endpoints with no ambassador behind them are judged by client traffic alone (passive), never checked', async () => {
    const [a, b, c] = [h('a'), h('b'), h('c')];
    const conn = track(await startConnector(c, ['--connect', 'cn=6396,check=none', '--static', `cn=${a.ip}:7001+${b.ip}:7002`, '--admin', '9904']));
    await conn.waitLog({ msg: 'endpoint up', address: `${a.ip}:7001` });
    await conn.waitLog({ msg: 'endpoint up', address: `${b.ip}:7002` });
    const p = JSON.parse(await adminGet(c, 9904, '/peers')) as { clusters: Array<{ endpoints: Array<{ health: { from: string; ownCheck: unknown } }> }> };
    assert.deepEqual(p.clusters[0]!.endpoints.map((e) => [e.health.from, e.health.ownCheck]), [['passive', null], ['passive', null]]);
    const t0 = Date.now();
    await rb.stop();
    try {
      // clients find out that b is gone: its failed connects eject it, each client is retried on a
      const loop = runLoop(c, { port: 6396, count: 40, intervalMs: 20, deadlineMs: 20_000, timeoutMs: 8000 });
      const down = await conn.waitLog({ msg: 'endpoint down', address: `${b.ip}:7002` }, { since: t0, timeoutMs: 20_000 });
      const s = await loop.finished;
      assert.equal(down.reason, 'outlier', 'ejected on failed client connects, not by a check');
      assert.deepEqual(s, { total: 40, ok: 40, failed: 0, byWho: { a: 40 } });
      const m = await adminGet(c, 9904, '/metrics');
      assert.equal(metricSum(m, 'ambassador_health_checks_total', { cluster: 'cn' }), 0, 'no check ever made');
    } finally {
      rb = await startRedis(b, { port: 7002 });
      await tagRedis(rb, 'b');
    }
  });

  test('weight=1 and weight=4 at one priority (balance=srv): new connections split 1:4', async () => {
    const [a, b, c] = [h('a'), h('b'), h('c')];
    track(await startConnector(c, ['--connect', 'w=6397,balance=srv']));
    track((await startAdvertiser(a, ['--advertise', 'w=7001,weight=1'])).amb);
    track((await startAdvertiser(b, ['--advertise', 'w=7002,weight=4'])).amb);
    await waitServedBy(c, 'a', { port: 6397 });
    await waitServedBy(c, 'b', { port: 6397 });
    const n = 150;
    const s = await runLoop(c, { port: 6397, count: n, intervalMs: 0, deadlineMs: 60_000, timeoutMs: 8000 }).finished;
    assert.equal(s.ok, n);
    const heavy = s.byWho.b ?? 0;
    // Each connection picks b with probability 4/5. Judged by exact binomial tails at 0.001: the
    // count fits 4/5, and it does not fit the 1/2 that ignoring the weights would give.
    const [low, high] = [1 - binomAtLeast(heavy + 1, n, 0.8), binomAtLeast(heavy, n, 0.8)];
    console.log(`# weight 1:4 → a ${s.byWho.a ?? 0}, b ${heavy} of ${n}; P(X ≤ b | 4/5) ${low.toPrecision(2)}, P(X ≥ b | 4/5) ${high.toPrecision(2)}, P(X ≥ b | 1/2) ${binomAtLeast(heavy, n, 0.5).toPrecision(2)}`);
    assert.ok(low >= 0.0005 && high >= 0.0005, `${heavy} of ${n} to the weight-4 endpoint fits 4/5`);
    assert.ok(binomAtLeast(heavy, n, 0.5) < 0.001, 'and not an even split');
  });

  test('max-per-endpoint=2 and max-pending=2 on a running connector: the next client is refused at once, with a RESP error', async () => {
    const [a, c] = [h('a'), h('c')];
    const conn = track(await startConnector(c, [
      '--connect', 'lim=6398,max-per-endpoint=2,protocol=redis', '--static', `lim=${a.ip}:7001`,
      '--connect', 'pend=6399,max-pending=2,protocol=redis', '--wait-for-endpoint', '30000', '--admin', '9905']));
    await conn.waitLog({ msg: 'endpoint up', service: 'lim' });
    // two clients piped to the one endpoint: a third has nowhere to go
    const piped = [track(await Held.open(c, 6398)), track(await Held.open(c, 6398))];
    for (const p of piped) assert.equal(await p.ask('GET whoami'), 'a');
    const third = await redisCli(c, ['-p', '6398', 'ping'], { timeoutMs: 8000 });
    assert.match(third.reply, /^ERR ambassador: .*max-per-endpoint/, third.stdout + third.stderr);
    // two clients waiting for an endpoint of 'pend' (none is announced): a third is not queued
    const waiting = [track(await Held.open(c, 6399)), track(await Held.open(c, 6399))];
    await waitFor(async () => metricSum(await adminGet(c, 9905, '/metrics'), 'ambassador_connections_pending', { cluster: 'pend' }) === 2,
      { timeoutMs: 10_000, intervalMs: 100, message: 'two clients pending' });
    const t0 = Date.now();
    const refused = await redisCli(c, ['-p', '6399', 'ping'], { timeoutMs: 8000 });
    console.log(`# max-pending: the third client refused after ${Date.now() - t0} ms (the others wait up to 30 s)`);
    assert.match(refused.reply, /^ERR ambassador: .*max-pending/, refused.stdout + refused.stderr);
    assert.ok(waiting.every((w) => !w.closed), 'the two waiting clients still wait');
    const m = await adminGet(c, 9905, '/metrics');
    assert.equal(metricSum(m, 'ambassador_connections_refused_total', { cluster: 'lim', limit: 'max-per-endpoint' }), 1);
    assert.equal(metricSum(m, 'ambassador_connections_refused_total', { cluster: 'pend', limit: 'max-pending' }), 1);
  });
});
