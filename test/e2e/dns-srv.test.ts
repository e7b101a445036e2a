// Unicast DNS SRV end to end: real dnsmasq (and, for what dnsmasq cannot do, the
// scripted server of test/lib/scripted-dns.ts) in lab namespaces; real redis-servers behind the
// ambassador. Every endpoint must be reached for real: each redis reports, per connection, the
// local address and port the connection arrived at (CLIENT INFO laddr=…), so "traffic spread
// over all of them" is checked at the servers, not only in the ambassador's own counters.
//
// Backends for the large sets: host r runs 4 redis-servers (ports 7001-7004) and carries 50
// extra addresses 10.77.0.1-50 on its lab interface: 200 distinct address:port endpoints.
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, type Host, type LabProcess, canUseNetns, haveCommand, startRedis, waitFor } from '../lib/netns.js';
import type { ScriptedDnsOptions, Zone } from '../lib/scripted-dns.js';
import { Amb, CLI, fmt, runLoop, startAmbassadorWithFiles, startConnector, tagRedis } from './ambassador-kit.js';

const skip = canUseNetns() ?? (['redis-server', 'redis-cli', 'dnsmasq', 'dig', 'curl'].filter((c) => !haveCommand(c)).map((c) => `${c} not installed`)[0]);
const SCRIPTED_DNS = fileURLToPath(new URL('../fixtures/scripted-dns-server.js', import.meta.url));
const PORTS = [7001, 7002, 7003, 7004];
const ADMIN = '9901';
const CHECKS = ['--health-interval', '2000'];

/** Record k of a large set: target ek.svc.test at 10.77.0.(k/4+1), port 7001 + k%4. */
const big = (k: number) => ({ target: `e${k}.svc.test`, address: `10.77.0.${Math.floor(k / 4) + 1}`, port: PORTS[k % 4]! });

describe('DNS SRV source: complete answers, IPv6, search domains, changes, outages, failover', { skip }, () => {
  let lab: Lab;
  let live: Array<{ stop(): Promise<unknown> }> = [];
  const track = <T extends { stop(): Promise<unknown> }>(x: T): T => { live.push(x); return x; };
  const h = (n: string): Host => lab.host(n);

  before(async () => {
    lab = await Lab.create({ hosts: ['c', 'r', 'a', 'b', 'd', 'dns', 'dns2'], ipv6: true, prefix: 'srv' });
    const [c, r, a, b] = [h('c'), h('r'), h('a'), h('b')];
    await r.run('sh', ['-c', `for i in $(seq 1 50); do ip addr add 10.77.0.$i/24 dev ${r.ifname}; done`]);
    await c.run('ip', ['addr', 'add', '10.77.0.254/24', 'dev', c.ifname]);
    for (const port of PORTS) await startRedis(r, { port });
    // IPv6 unique-local addresses (no DAD wait); a's and b's redis listen on IPv6 only (and loopback)
    for (const [host, v6] of [[a, 'fd00:77::1'], [b, 'fd00:77::2'], [c, 'fd00:77::fe']] as const) {
      await host.run('ip', ['-6', 'addr', 'add', `${v6}/64`, 'dev', host.ifname, 'nodad']);
    }
    for (const [host, tag] of [[a, 'a6'], [b, 'b6']] as const) {
      await tagRedis(await startRedis(host, { port: 7101, args: ['--bind', '127.0.0.1', '::'] }), tag);
    }
    // tagged IPv4 replicas for the change/outage/failover tests
    for (const [host, port] of [[a, 7001], [b, 7002], [h('d'), 7004]] as const) await tagRedis(await startRedis(host, { port }), host.name);
  });
  afterEach(async () => {
    const xs = live.reverse();
    live = [];
    for (const x of xs) await x.stop().catch(() => {});
  });
  after(async () => {
    await lab?.destroy();
  });

  /** A real dnsmasq on `host`:53, authoritative for svc.test with TTL 1 s; waits until `probe` answers. */
  async function dnsmasq(host: Host, lines: string[], probe: string, name = 'svc'): Promise<LabProcess> {
    const conf = join(host.dir, `dnsmasq-${name}.conf`);
    writeFileSync(conf, [
      'no-resolv', 'no-hosts', 'no-daemon', 'log-facility=-', 'port=53', `listen-address=${host.ip}`, 'bind-interfaces',
      'pid-file=', 'user=root', 'local=/svc.test/', 'local-ttl=1', ...lines, '',
    ].join('\n'));
    const p = host.spawn('dnsmasq', ['--conf-file=' + conf], { name: `[${host.name}] dnsmasq ${name}` });
    await waitFor(async () => {
      if (!p.running) throw new Error(`dnsmasq exited: ${p.output}`);
      const r = await host.exec('dig', ['+short', '+time=1', '+tries=1', `@${host.ip}`, 'SRV', probe], { timeoutMs: 3000 });
      return r.stdout.trim().length > 0;
    }, { timeoutMs: 10_000, intervalMs: 50, message: `dnsmasq on ${host.name} answers SRV ${probe}` });
    return track(p);
  }

  const srvLines = (query: string, records: Array<{ target: string; port: number; address?: string }>) => records.flatMap((r) => [
    `srv-host=${query},${r.target},${r.port},0,0`, ...(r.address ? [`host-record=${r.target},${r.address}`] : []),
  ]);

  async function peers(host: Host): Promise<Array<{ label: string; address: string; port: number; state: string; connections: number; source: string }>> {
    const r = await host.exec('curl', ['-s', '--max-time', '3', `http://127.0.0.1:${ADMIN}/peers`], { timeoutMs: 5000 });
    return JSON.parse(r.stdout).clusters[0].endpoints;
  }

  async function waitPeers(host: Host, n: number, timeoutMs = 20_000) {
    return waitFor(async () => {
      const eps = await peers(host);
      return eps.length === n && eps.every((e) => e.state === 'up') ? eps : undefined;
    }, { timeoutMs, intervalMs: 200, message: `${n} endpoints up in /peers of ${host.name}` });
  }

  /**
   * `count` new connections through the connector on `host` (8 at a time), each asking the redis
   * behind it `CLIENT INFO`: the laddr (address:port the connection arrived at) of each.
   */
  async function reach(host: Host, count: number): Promise<{ laddrs: string[]; failed: number }> {
    const script = String.raw`
const net = require('node:net');
const count = Number(process.argv[1]); const laddrs = []; let failed = 0, started = 0;
const one = () => new Promise((done) => {
  const s = net.connect(6379, '127.0.0.1'); let buf = '';
  const t = setTimeout(() => { failed++; s.destroy(); done(); }, 8000);
  s.on('connect', () => s.write('CLIENT INFO\r\n'));
  s.on('data', (d) => { buf += d; const m = / laddr=(\S+) /.exec(buf); if (m) { clearTimeout(t); laddrs.push(m[1]); s.destroy(); done(); } });
  s.on('error', () => { clearTimeout(t); failed++; done(); });
});
const worker = async () => { while (started < count) { started++; await one(); } };
Promise.all(Array.from({ length: 8 }, worker)).then(() => console.log(JSON.stringify({ laddrs, failed })));`;
    const r = await host.exec(process.execPath, ['-e', script, String(count)], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { laddrs: string[]; failed: number };
  }

  function startScriptedDns(host: Host, opts: Omit<ScriptedDnsOptions, 'host' | 'port'>): Promise<LabProcess> {
    const file = join(host.dir, 'scripted-dns.json');
    writeFileSync(file, JSON.stringify({ ...opts, host: host.ip, port: 53 }));
    const p = track(host.spawn(process.execPath, [SCRIPTED_DNS, file], { name: `[${host.name}] scripted dns ${JSON.stringify({ udp: opts.udp, tcp: opts.tcp })}` }));
    return p.waitForLine(/^ready/).then(() => p);
  }

  /** The big set as a zone for the scripted server: targets' A records asked for separately. */
  function bigZone(n: number): Zone {
    const recs = Array.from({ length: n }, (_, k) => big(k));
    return { srv: { '_redis._tcp.svc.test': recs.map((r) => ({ target: r.target, port: r.port })) }, a: Object.fromEntries(recs.map((r) => [r.target, [r.address]])), ttl: 1 };
  }

  /** Every one of the n records is an endpoint in /peers, and new connections reach each one at its redis. */
  async function assertAllReached(c: Host, n: number, what: string): Promise<void> {
    const expected = Array.from({ length: n }, (_, k) => `${big(k).address}:${big(k).port}`).sort();
    const eps = await waitPeers(c, n);
    assert.deepEqual(eps.map((e) => `${e.address}:${e.port}`).sort(), expected, `${what}: /peers lists every record`);
    const t0 = Date.now();
    const { laddrs, failed } = await reach(c, 2 * n);
    const per = new Map<string, number>();
    for (const l of laddrs) per.set(l, (per.get(l) ?? 0) + 1);
    const counts = [...per.values()];
    console.log(`# ${what}: ${eps.length} endpoints in /peers; ${laddrs.length} connections in ${fmt(Date.now() - t0)} reached ` +
      `${per.size} distinct address:port at the redis side (${Math.min(...counts)}-${Math.max(...counts)} each), ${failed} failed`);
    assert.equal(failed, 0);
    assert.deepEqual([...per.keys()].sort(), expected, `${what}: every endpoint really reached`);
    const after = await peers(c);
    assert.ok(after.every((e) => e.connections > 0), `${what}: /peers counts connections on every endpoint`);
  }

  for (const n of [40, 200]) {
    test(`${n} SRV records from dnsmasq: every endpoint in /peers, new connections reach each one`, async () => {
      const [c, dns] = [h('c'), h('dns')];
      const recs = Array.from({ length: n }, (_, k) => big(k));
      await dnsmasq(dns, srvLines('_redis._tcp.svc.test', recs), '_redis._tcp.svc.test');
      // what a plain UDP answer without EDNS0 carries (all the old client ever used), and the whole set
      const udp = await c.exec('dig', ['+noedns', '+ignore', '+noall', '+answer', `@${dns.ip}`, 'SRV', '_redis._tcp.svc.test'], { timeoutMs: 5000 });
      const tcp = await c.exec('dig', ['+tcp', '+noall', '+answer', `@${dns.ip}`, 'SRV', '_redis._tcp.svc.test'], { timeoutMs: 5000 });
      const lines = (s: string) => s.split('\n').filter((l) => /\sSRV\s/.test(l)).length;
      console.log(`# ${n} records: a 512-byte UDP answer carries ${lines(udp.stdout)} (truncated), TCP ${lines(tcp.stdout)}`);
      assert.equal(lines(tcp.stdout), n);
      const conn = track(await startConnector(c, ['--connect', 'redis=6379', '--srv', 'redis=_redis._tcp.svc.test', '--dns-server', dns.ip, '--admin', ADMIN, ...CHECKS], { iface: false }));
      const resolved = await conn.waitLog({ msg: 'DNS SRV name resolved' });
      assert.equal(resolved.records, n);
      const listening = conn.find({ msg: 'listening' })!;
      console.log(`# ${n} records: resolved via ${resolved.via}, ${fmt(resolved.time - listening.time)} after the listener was up (${fmt(resolved.time - conn.spawnedAt)} after spawn)`);
      await assertAllReached(c, n, `${n} records`);
      assert.equal(conn.find({ msg: 'discovery lookup failed; keeping last endpoints' }), undefined);
      assert.equal(conn.find({ level: 40 }), undefined, 'no warning at all');
    });
  }

  test('targets with only AAAA records: IPv6 endpoints in /peers, connections over IPv6 succeed', async () => {
    const [c, dns] = [h('c'), h('dns')];
    await dnsmasq(dns, srvLines('_redis._tcp.v6.svc.test', [
      { target: 'a6.svc.test', port: 7101, address: 'fd00:77::1' }, { target: 'b6.svc.test', port: 7101, address: 'fd00:77::2' },
    ]), '_redis._tcp.v6.svc.test');
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', '--srv', 'redis=_redis._tcp.v6.svc.test', '--dns-server', dns.ip, '--admin', ADMIN, ...CHECKS], { iface: false }));
    const eps = await waitPeers(c, 2);
    assert.deepEqual(eps.map((e) => `${e.label} ${e.address} ${e.port}`).sort(), ['a6.svc.test:7101 fd00:77::1 7101', 'b6.svc.test:7101 fd00:77::2 7101']);
    const s = await runLoop(c, { count: 20, intervalMs: 5, deadlineMs: 20_000 }).finished;
    console.log(`# AAAA-only targets: /peers ${eps.map((e) => `[${e.address}]:${e.port}`).join(', ')}; 20 connections ${JSON.stringify(s.byWho)}, ${s.failed} failed`);
    assert.equal(s.failed, 0);
    assert.deepEqual(s.byWho, { a6: 10, b6: 10 });
    // the redis side saw IPv6 clients: the ambassador dialled the IPv6 literal
    const { laddrs } = await reach(c, 4);
    assert.ok(laddrs.every((l) => /^\[fd00:77::[12]\]:7101$/.test(l)), laddrs.join(' '));
    assert.ok(conn.find({ msg: 'endpoint up', address: '[fd00:77::1]:7101' }));
  });

  test('a relative, Kubernetes-style name through the search list and ndots of resolv.conf; /etc/hosts for a target; --dns-server overrides the nameserver', async () => {
    const [a, b, c, d, dns] = [h('a'), h('b'), h('c'), h('d'), h('dns')];
    await dnsmasq(dns, [
      ...srvLines('_redis._tcp.redis.ns1.svc.test', [{ target: 'a.svc.test', port: 7001, address: a.ip }, { target: 'pinned.svc.test', port: 7002 }]),
      'host-record=pinned.svc.test,10.255.0.1', // wrong on purpose: /etc/hosts has the right one
    ], '_redis._tcp.redis.ns1.svc.test');
    const hosts = `127.0.0.1 localhost\n${b.ip} pinned.svc.test\n`;
    const resolv = `search ns1.svc.test svc.test\nnameserver ${dns.ip}\noptions ndots:5 timeout:1\n`;

    // what the platform itself makes of the name with that resolv.conf
    writeFileSync(join(c.dir, 'resolv-platform.conf'), resolv);
    const platform = await c.exec('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
      'mount --bind "$1" /etc/resolv.conf && dig +search +short SRV _redis._tcp.redis', 'sh', join(c.dir, 'resolv-platform.conf')], { timeoutMs: 10_000 });
    console.log(`# search list: dig +search SRV _redis._tcp.redis with the test's resolv.conf → ${platform.stdout.trim().replace(/\n/g, '; ')}`);
    assert.match(platform.stdout, /7001 a\.svc\.test\./);

    const amb = track(startAmbassadorWithFiles(c, 'search', { resolv, hosts }, ['--connect', 'redis=6379', '--srv', 'redis=_redis._tcp.redis', ...CHECKS]));
    const resolved = await amb.waitLog({ msg: 'DNS SRV name resolved' });
    assert.equal(resolved.name, '_redis._tcp.redis.ns1.svc.test');
    assert.match(String(resolved.via), new RegExp(`^${dns.ip.replace(/\./g, '\\.')}:53 `), 'the nameserver of resolv.conf');
    await amb.waitLog({ msg: 'endpoint up', address: `${a.ip}:7001` });
    await amb.waitLog({ msg: 'endpoint up', address: `${b.ip}:7002` }); // pinned.svc.test from /etc/hosts
    const s = await runLoop(c, { count: 20, intervalMs: 5, deadlineMs: 20_000 }).finished;
    console.log(`# search list: --srv redis=_redis._tcp.redis resolved as ${resolved.name} via ${resolved.via}; pinned.svc.test → ${b.ip} from /etc/hosts; 20 connections ${JSON.stringify(s.byWho)}`);
    assert.equal(s.failed, 0);
    assert.deepEqual(s.byWho, { a: 10, b: 10 });
    await amb.stop();

    // resolv.conf names a dead nameserver (d: nothing on port 53); --dns-server overrides it, the search list still applies
    const over = track(startAmbassadorWithFiles(c, 'override', { resolv: resolv.replace(dns.ip, d.ip), hosts },
      ['--connect', 'redis=6379', '--srv', 'redis=_redis._tcp.redis', '--dns-server', dns.ip, ...CHECKS]));
    const r2 = await over.waitLog({ msg: 'DNS SRV name resolved' });
    assert.equal(r2.name, '_redis._tcp.redis.ns1.svc.test');
    assert.match(String(r2.via), new RegExp(`^${dns.ip.replace(/\./g, '\\.')}:53 `));
    await over.waitLog({ msg: 'endpoint up', address: `${b.ip}:7002` });
    assert.equal(over.find({ msg: 'discovery lookup failed; keeping last endpoints' }), undefined);
  });

  test('records added and removed between refreshes are followed; the DNS server stopped: the last set stays with one warning', async () => {
    const [a, b, c, d, dns] = [h('a'), h('b'), h('c'), h('d'), h('dns')];
    const q = '_redis._tcp.svc.test';
    const rec = (host: Host, port: number) => ({ target: `${host.name}.svc.test`, port, address: host.ip });
    let server = await dnsmasq(dns, srvLines(q, [rec(a, 7001), rec(b, 7002)]), q, 'ab');
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', '--srv', `redis=${q}`, '--dns-server', dns.ip, '--admin', ADMIN, ...CHECKS], { iface: false }));
    await waitPeers(c, 2);
    const restart = async (records: Array<ReturnType<typeof rec>>, name: string) => {
      await server.stop();
      server = await dnsmasq(dns, srvLines(q, records), q, name);
      return Date.now();
    };

    const t1 = await restart([rec(a, 7001), rec(b, 7002), rec(d, 7004)], 'abd');
    const added = await conn.waitLog({ msg: 'endpoint up', address: `${d.ip}:7004` }, { since: t1 });
    const t2 = await restart([rec(b, 7002), rec(d, 7004)], 'bd');
    const removed = await conn.waitLog({ msg: 'endpoint down', address: `${a.ip}:7001` }, { since: t2 });
    const eps = await waitPeers(c, 2);
    console.log(`# changes (TTL 1 s): record added → endpoint up after ${fmt(added.time - t1)}; record removed → endpoint gone after ${fmt(removed.time - t2)}`);
    assert.deepEqual(eps.map((e) => e.label).sort(), ['b.svc.test:7002', 'd.svc.test:7004']);

    // outage: dnsmasq stopped for 6 s while clients keep connecting
    const t3 = Date.now();
    await server.stop();
    const loop = runLoop(c, { count: 300, intervalMs: 20, deadlineMs: 6000 });
    const s = await loop.finished;
    assert.equal(s.failed, 0);
    assert.deepEqual(Object.keys(s.byWho).sort(), ['b', 'd']);
    assert.equal((await peers(c)).length, 2, 'the last set stays');
    const warnings = () => conn.findAll({ msg: 'discovery lookup failed; keeping last endpoints' }, t3);
    assert.equal(warnings().length, 1, 'one warning for the outage');
    const t4 = Date.now();
    server = await dnsmasq(dns, srvLines(q, [rec(b, 7002), rec(d, 7004)]), q, 'bd2');
    const back = await conn.waitLog({ msg: 'DNS SRV lookup works again' }, { since: t4, timeoutMs: 20_000 });
    console.log(`# outage: ${s.total} connections during 6 s without DNS, ${s.failed} failed, ${JSON.stringify(s.byWho)}; ` +
      `${warnings().length} warning ('${warnings()[0]?.err}'); back ${fmt(back.time - t4)} after dnsmasq restarted, after ${back.failedLookups} failed lookups`);
    assert.ok(Number(back.failedLookups) >= 3, `several lookups failed (${back.failedLookups}), still one warning`);
    assert.equal(warnings().length, 1);
    assert.equal(conn.findAll({ msg: 'DNS SRV lookup works again' }).length, 1);
  });

  test('several --dns-server: a dead one is skipped; when the one in use stops, the next one takes over without a warning', async () => {
    const [a, b, c, d, dns, dns2] = [h('a'), h('b'), h('c'), h('d'), h('dns'), h('dns2')];
    const q = '_redis._tcp.svc.test';
    const rec = (host: Host, port: number) => ({ target: `${host.name}.svc.test`, port, address: host.ip });
    const first = await dnsmasq(dns, srvLines(q, [rec(a, 7001), rec(b, 7002)]), q, 'one');
    let second = await dnsmasq(dns2, srvLines(q, [rec(a, 7001), rec(b, 7002)]), q, 'two');
    // d has nothing on port 53: refused at once, the next server is asked
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', '--srv', `redis=${q}`,
      '--dns-server', d.ip, '--dns-server', dns.ip, '--dns-server', dns2.ip, '--admin', ADMIN, ...CHECKS], { iface: false }));
    const resolved = await conn.waitLog({ msg: 'DNS SRV name resolved' });
    assert.match(String(resolved.via), new RegExp(`^${dns.ip.replace(/\./g, '\\.')}:53 `));
    await waitPeers(c, 2);
    await first.stop();
    await second.stop();
    const t0 = Date.now();
    second = await dnsmasq(dns2, srvLines(q, [rec(a, 7001), rec(b, 7002), rec(d, 7004)]), q, 'two-d');
    const up = await conn.waitLog({ msg: 'endpoint up', address: `${d.ip}:7004` }, { since: t0, timeoutMs: 20_000 });
    console.log(`# failover: ${d.ip} (dead) skipped, answered by ${resolved.via}; after it stopped, a record only ${dns2.name} serves was followed ${fmt(up.time - t0)} after it was served`);
    const s = await runLoop(c, { count: 30, intervalMs: 5, deadlineMs: 20_000 }).finished;
    assert.equal(s.failed, 0);
    assert.deepEqual(Object.keys(s.byWho).sort(), ['a', 'b', 'd']);
  });

  for (const [label, udp] of [['a server that answers only over TCP', 'closed'], ['a server whose UDP answers are always truncated', 'truncate']] as const) {
    test(`${label}: the whole set of 40 still comes, every endpoint reached`, async () => {
      const [c, dns] = [h('c'), h('dns')];
      const server = await startScriptedDns(dns, { zone: bigZone(40), udp });
      track(await startConnector(c, ['--connect', 'redis=6379', '--srv', 'redis=_redis._tcp.svc.test', '--dns-server', dns.ip, '--admin', ADMIN, ...CHECKS], { iface: false }));
      await assertAllReached(c, 40, label);
      const qs = server.stdout.split('\n').filter((l) => l.startsWith('Q ')).map((l) => JSON.parse(l.slice(2)) as { transport: string; type: string });
      const by = (t: string) => qs.filter((x) => x.transport === t).length;
      console.log(`# ${label}: the server saw ${by('udp')} queries over UDP and ${by('tcp')} over TCP`);
      assert.ok(by('tcp') > 0);
      if (udp === 'closed') assert.equal(by('udp'), 0, 'nothing was answered over UDP');
    });
  }

  test('truncated over UDP and TCP closed: said in the log, never taken silently', async () => {
    const [c, dns] = [h('c'), h('dns')];
    await startScriptedDns(dns, { zone: { ...bigZone(40), additional: false }, udp: 'truncate', tcp: 'closed' });
    const conn = track(await startConnector(c, ['--connect', 'redis=6379', '--srv', 'redis=_redis._tcp.svc.test', '--dns-server', dns.ip, '--admin', ADMIN, ...CHECKS], { iface: false }));
    const w = await conn.waitLog({ msg: /DNS SRV answer truncated and not completed over TCP/ });
    console.log(`# truncated, TCP refused: '${w.msg}' (${w.err})`);
    const eps = await waitPeers(c, 1);
    assert.equal(eps.length, 1, 'only what the truncated answer named, while nothing complete is known');
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(conn.findAll({ msg: /DNS SRV answer truncated/ }).length, 1, 'said once, not per refresh');
  });
});
