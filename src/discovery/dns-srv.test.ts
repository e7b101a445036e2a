// The SRV source over real sockets on loopback (the scripted server of test/lib/scripted-dns.ts),
// with the resolver files written per test and a fake clock: lookups are driven by refresh(),
// and the delay it picks is read from nextRefreshMs (no wall-clock assertion).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScriptedDns, type ScriptedDnsOptions, type Zone } from '../../test/lib/scripted-dns.js';
import { FakeClock } from '../base/clock.js';
import { DnsSrvSource, type DnsSrvOptions } from './dns-srv.js';
import { PlatformFiles } from './platform-files.js';
import type { EndpointSpec } from './source.js';

const NAME = '_redis._tcp.svc.test';

function replicas(n: number, name = NAME, ttl = 5): Zone {
  const srv = Array.from({ length: n }, (_, i) => ({ target: `r${i + 1}.svc.test`, port: 7001 + i }));
  const a = Object.fromEntries(srv.map((r, i) => [r.target, [`10.0.${i >> 8}.${i & 255}`]]));
  return { srv: { [name]: srv }, a, ttl };
}

interface Rig {
  dns: ScriptedDns;
  source: DnsSrvSource;
  clock: FakeClock;
  /** Every event in order: [name, first argument, second argument]. */
  events: Array<[string, unknown, unknown]>;
  sets(): EndpointSpec[][];
  count(ev: string): number;
  restart(opts?: Partial<ScriptedDnsOptions>): Promise<void>;
  done(): Promise<void>;
}

async function rig(zone: Zone, opts: { resolv?: string; hosts?: string; query?: string; dns?: Partial<ScriptedDnsOptions>; source?: DnsSrvOptions } = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'dns-srv-test-'));
  writeFileSync(join(dir, 'resolv.conf'), opts.resolv ?? 'nameserver 127.0.0.1\n');
  writeFileSync(join(dir, 'hosts'), opts.hosts ?? '127.0.0.1 localhost\n');
  let dns = await ScriptedDns.start({ host: '127.0.0.1', zone, ...opts.dns });
  const clock = new FakeClock();
  const files = new PlatformFiles({ resolvConfPath: join(dir, 'resolv.conf'), hostsPath: join(dir, 'hosts'), env: {}, hostname: 'test' });
  const source = new DnsSrvSource(opts.query ?? NAME, { servers: [{ host: '127.0.0.1', port: dns.port }], files, clock, timeoutMs: 500, attempts: 1, ...opts.source });
  const events: Array<[string, unknown, unknown]> = [];
  for (const ev of ['endpoints', 'resolve-error', 'warning', 'info']) source.on(ev, (a: unknown, b: unknown) => events.push([ev, a, b]));
  const r: Rig = {
    get dns() { return dns; },
    source, clock, events,
    sets: () => events.filter((e) => e[0] === 'endpoints').map((e) => e[1] as EndpointSpec[]),
    count: (ev) => events.filter((e) => e[0] === ev).length,
    async restart(o = {}) {
      const port = dns.port;
      const z = (dns as unknown as { zone: Zone }).zone;
      await dns.close();
      dns = await ScriptedDns.start({ host: '127.0.0.1', port, zone: z, ...o });
    },
    async done() {
      await source.stop();
      await dns.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return r;
}

const hostsOf = (set: EndpointSpec[] | undefined) => (set ?? []).map((s) => `${s.label}=${s.host}`).sort();

test('dns srv: 40 and 200 replicas: every SRV record is an endpoint at its target\'s address', async () => {
  for (const n of [40, 200]) {
    const r = await rig(replicas(n));
    try {
      await r.source.start();
      const set = r.sets().at(-1)!;
      assert.equal(set.length, n);
      assert.equal(new Set(set.map((s) => `${s.host}:${s.port}`)).size, n);
      const e = set.find((s) => s.label === 'r7.svc.test:7007')!;
      assert.deepEqual({ id: e.id, host: e.host, port: e.port, source: e.source }, { id: 'srv:r7.svc.test:7007', host: '10.0.0.6', port: 7007, source: 'srv' });
      assert.equal(r.count('resolve-error') + r.count('warning'), 0);
    } finally {
      await r.done();
    }
  }
});

test('dns srv: a Kubernetes-style relative name goes through the search list of resolv.conf, as the platform resolves it', async () => {
  const r = await rig(replicas(3, '_redis._tcp.redis.svc.test'), {
    query: '_redis._tcp.redis',
    resolv: 'search ns1.svc.test svc.test\nnameserver 127.0.0.1\noptions ndots:5\n',
  });
  try {
    await r.source.start();
    assert.equal(r.sets().at(-1)?.length, 3);
    assert.deepEqual(r.dns.queries.filter((q) => q.type === 'SRV').map((q) => q.name), ['_redis._tcp.redis.ns1.svc.test', '_redis._tcp.redis.svc.test']);
    const info = r.events.find((e) => e[0] === 'info' && e[1] === 'DNS SRV name resolved');
    assert.equal((info?.[2] as { name: string }).name, '_redis._tcp.redis.svc.test');
  } finally {
    await r.done();
  }
});

test('dns srv: a REFUSED answer to the name as given does not end the search (as in glibc): the search list is tried next', async () => {
  // ndots:1: '_redis._tcp.redis' (2 dots) is asked as given first; a server that is
  // authoritative for svc.test only refuses the foreign name, and the search list still finds it.
  const zone = { ...replicas(2, '_redis._tcp.redis.svc.test'), error: { '_redis._tcp.redis': 'REFUSED' as const } };
  const r = await rig(zone, { query: '_redis._tcp.redis', resolv: 'search svc.test\nnameserver 127.0.0.1\noptions ndots:1\n' });
  try {
    await r.source.start();
    assert.equal(r.sets().at(-1)?.length, 2);
    assert.deepEqual(r.dns.queries.filter((q) => q.type === 'SRV').map((q) => q.name), ['_redis._tcp.redis', '_redis._tcp.redis.svc.test']);
    assert.equal(r.count('resolve-error'), 0);
  } finally {
    await r.done();
  }
});

test('dns srv: in the search list, SERVFAIL goes on to the next domain, REFUSED ends the list, and the name as given is still asked', async () => {
  const zone = {
    ...replicas(1, '_redis._tcp.redis'),
    error: { '_redis._tcp.redis.a.test': 'SERVFAIL' as const, '_redis._tcp.redis.b.test': 'REFUSED' as const },
  };
  const r = await rig(zone, { query: '_redis._tcp.redis', resolv: 'search a.test b.test c.test\nnameserver 127.0.0.1\noptions ndots:5\n' });
  try {
    await r.source.start();
    assert.equal(r.sets().at(-1)?.length, 1);
    assert.deepEqual(r.dns.queries.filter((q) => q.type === 'SRV').map((q) => q.name),
      ['_redis._tcp.redis.a.test', '_redis._tcp.redis.b.test', '_redis._tcp.redis']);
  } finally {
    await r.done();
  }
});

test('dns srv: every name refused: the lookup failed (the last endpoints are kept), not an empty answer', async () => {
  const r = await rig({ ...replicas(1, '_other._tcp.svc.test'), error: { '_redis._tcp.redis': 'REFUSED' as const, '_redis._tcp.redis.svc.test': 'REFUSED' as const } },
    { query: '_redis._tcp.redis', resolv: 'search svc.test\nnameserver 127.0.0.1\noptions ndots:1\n' });
  try {
    await r.source.start();
    assert.equal(r.count('resolve-error'), 1);
    assert.match(String((r.events.find((e) => e[0] === 'resolve-error')?.[1] as Error).message), /REFUSED/);
  } finally {
    await r.done();
  }
});

test('dns srv: an absolute name (trailing dot) is asked as given only', async () => {
  const r = await rig(replicas(2), { query: `${NAME}.`, resolv: 'search ns1.svc.test\noptions ndots:5\n' });
  try {
    await r.source.start();
    assert.equal(r.sets().at(-1)?.length, 2);
    assert.deepEqual(r.dns.queries.filter((q) => q.type === 'SRV').map((q) => q.name), [NAME]);
  } finally {
    await r.done();
  }
});

test('dns srv: target addresses: /etc/hosts first, A, AAAA when there is no A, IPv4 when both; no address: left out, said once', async () => {
  const zone: Zone = {
    srv: { [NAME]: ['v4', 'v6', 'both', 'pinned', 'ghost'].map((t, i) => ({ target: `${t}.svc.test`, port: 7001 + i })) },
    a: { 'v4.svc.test': ['10.0.0.4'], 'both.svc.test': ['10.0.0.46'], 'pinned.svc.test': ['10.0.0.99'] },
    aaaa: { 'v6.svc.test': ['fd00::6'], 'both.svc.test': ['fd00::46'] },
  };
  const r = await rig(zone, { hosts: '127.0.0.1 localhost\n10.7.7.7 pinned.svc.test\n' });
  try {
    await r.source.start();
    assert.deepEqual(hostsOf(r.sets().at(-1)), ['both.svc.test:7003=10.0.0.46', 'pinned.svc.test:7004=10.7.7.7', 'v4.svc.test:7001=10.0.0.4', 'v6.svc.test:7002=fd00::6']);
    const asked = r.dns.queries.filter((q) => q.type !== 'SRV').map((q) => `${q.type} ${q.name}`).sort();
    assert.deepEqual(asked, ['A both.svc.test', 'A ghost.svc.test', 'A v4.svc.test', 'A v6.svc.test', 'AAAA ghost.svc.test', 'AAAA v6.svc.test'], 'pinned comes from /etc/hosts; AAAA only without A');
    const warnings = () => r.events.filter((e) => e[0] === 'warning');
    assert.equal(warnings().length, 1);
    assert.equal((warnings()[0]![2] as { target: string }).target, 'ghost.svc.test');
    for (let i = 0; i < 3; i++) await r.source.refresh();
    assert.equal(warnings().length, 1, 'the target without address is reported once, not per refresh');
  } finally {
    await r.done();
  }
});

test('dns srv: addresses in the additional section are used without asking for them', async () => {
  const r = await rig({ ...replicas(40), additional: true });
  try {
    await r.source.start();
    assert.equal(r.sets().at(-1)?.length, 40);
    assert.deepEqual(r.dns.queries.map((q) => `${q.transport} ${q.type}`), ['udp SRV', 'tcp SRV']);
  } finally {
    await r.done();
  }
});

test('dns srv: the next lookup comes when the shortest TTL runs out, within 1 s and 30 s', async () => {
  for (const [ttl, expected] of [[7, 7000], [0, 1000], [3600, 30_000]] as const) {
    const r = await rig(replicas(2, NAME, ttl));
    try {
      await r.source.start();
      assert.equal(r.source.nextRefreshMs, expected, `TTL ${ttl}`);
      assert.equal(r.clock.pending(), 1);
    } finally {
      await r.done();
    }
  }
});

test('dns srv: the refresh timer re-resolves on its own and follows records added and removed', async () => {
  const r = await rig(replicas(3, NAME, 2));
  try {
    await r.source.start();
    assert.equal(r.sets().length, 1);
    r.dns.setZone(replicas(5, NAME, 2));
    const next = new Promise((res) => r.source.once('endpoints', res));
    r.clock.advance(2000);
    await next;
    assert.deepEqual(hostsOf(r.sets().at(-1)).length, 5);
    r.dns.setZone(replicas(2, NAME, 2));
    await r.source.refresh();
    assert.deepEqual(hostsOf(r.sets().at(-1)), ['r1.svc.test:7001=10.0.0.0', 'r2.svc.test:7002=10.0.0.1']);
    // a target that moves to another address moves the endpoint
    r.dns.setZone({ ...replicas(2, NAME, 2), a: { 'r1.svc.test': ['10.0.9.9'], 'r2.svc.test': ['10.0.0.1'] } });
    r.clock.advance(2000); // the cached address expires with its TTL
    await new Promise((res) => r.source.once('endpoints', res));
    assert.deepEqual(hostsOf(r.sets().at(-1)), ['r1.svc.test:7001=10.0.9.9', 'r2.svc.test:7002=10.0.0.1']);
  } finally {
    await r.done();
  }
});

test('dns srv: the DNS server stops: the last set stays, one warning however many refreshes, back off, recovery said once', async () => {
  const r = await rig(replicas(4));
  try {
    await r.source.start();
    const sets = r.sets().length;
    await r.dns.close();
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      await r.source.refresh();
      delays.push(r.source.nextRefreshMs);
    }
    assert.equal(r.sets().length, sets, 'no new set while failing: the cluster keeps the last one');
    assert.equal(r.count('resolve-error'), 1, 'one warning for the whole outage');
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    await r.restart();
    await r.source.refresh();
    assert.equal(r.sets().at(-1)?.length, 4);
    const back = r.events.filter((e) => e[0] === 'info' && e[1] === 'DNS SRV lookup works again');
    assert.equal(back.length, 1);
    assert.equal((back[0]![2] as { failedLookups: number }).failedLookups, 7);
    assert.equal(r.source.nextRefreshMs, 5000);
    // a new outage is a new story: warned again, once
    await r.dns.close();
    await r.source.refresh();
    await r.source.refresh();
    assert.equal(r.count('resolve-error'), 2);
  } finally {
    await r.done();
  }
});

test('dns srv: an empty answer keeps the last set, with one warning', async () => {
  const r = await rig(replicas(4));
  try {
    await r.source.start();
    r.dns.setZone({ srv: {}, a: {} });
    for (let i = 0; i < 3; i++) await r.source.refresh();
    assert.equal(r.sets().length, 1);
    assert.equal(r.count('resolve-error'), 1);
    assert.match((r.events.find((e) => e[0] === 'resolve-error')![1] as Error).message, /no SRV records for _redis\._tcp\.svc\.test/);
  } finally {
    await r.done();
  }
});

test('dns srv: a truncated answer that TCP cannot complete is said and used only while there was never a complete one', async () => {
  const r = await rig(replicas(40), { dns: { udp: 'truncate', tcp: 'closed' } });
  try {
    await r.source.start();
    assert.equal(r.sets().at(-1)?.length, 1, 'nothing better known: the one replica the truncated answer named');
    const warn = () => r.events.filter((e) => e[0] === 'warning').map((e) => e[1]);
    assert.deepEqual(warn(), ['DNS SRV answer truncated and not completed over TCP: using the endpoints it named until a complete answer arrives']);
    await r.source.refresh();
    assert.equal(warn().length, 1, 'said once');

    await r.restart({ udp: 'answer', tcp: 'answer' });
    await r.source.refresh();
    assert.equal(r.sets().at(-1)?.length, 40, 'complete now');

    await r.restart({ udp: 'truncate', tcp: 'closed' });
    const sets = r.sets().length;
    await r.source.refresh();
    await r.source.refresh();
    assert.equal(r.sets().length, sets, 'a truncated answer never replaces a complete set');
    assert.equal(warn().length, 2);
    assert.equal(warn()[1], 'DNS SRV answer truncated and not completed over TCP: ignored, keeping the last complete set');
  } finally {
    await r.done();
  }
});

test('dns srv: an endpoint keeps its address while the target still has it (a rotated answer moves nothing)', async () => {
  const zone: Zone = { srv: { [NAME]: [{ target: 'rr.svc.test', port: 7001 }] }, a: { 'rr.svc.test': ['10.0.0.1', '10.0.0.2'] }, ttl: 0 };
  const r = await rig(zone);
  try {
    await r.source.start();
    assert.equal(r.sets().at(-1)![0]!.host, '10.0.0.1');
    r.dns.setZone({ ...zone, a: { 'rr.svc.test': ['10.0.0.2', '10.0.0.1'] } });
    await r.source.refresh();
    assert.equal(r.sets().at(-1)![0]!.host, '10.0.0.1');
    r.dns.setZone({ ...zone, a: { 'rr.svc.test': ['10.0.0.3'] } });
    await r.source.refresh();
    assert.equal(r.sets().at(-1)![0]!.host, '10.0.0.3');
  } finally {
    await r.done();
  }
});
