// The stub resolver client against real sockets on loopback: the scripted server of
// test/lib/scripted-dns.ts plays the servers dnsmasq cannot (TCP only, always truncated, …).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import type * as DnsPacket from 'dns-packet';
import { ScriptedDns, type Zone } from '../../test/lib/scripted-dns.js';
import { DnsClient, DnsQueryError, EDNS_UDP_SIZE, TruncatedAnswerError, type DnsServer } from './dns-client.js';

const dns = createRequire(import.meta.url)('dns-packet') as typeof DnsPacket;
const NAME = '_redis._tcp.svc.test';
const OPTS = { timeoutMs: 2000, attempts: 1 };

function zone(n: number): Zone {
  const srv = Array.from({ length: n }, (_, i) => ({ target: `r${i + 1}.svc.test`, port: 7001 + i }));
  return { srv: { [NAME]: srv }, a: { 'r1.svc.test': ['10.0.0.1'] } };
}

const at = (s: ScriptedDns): DnsServer => ({ host: '127.0.0.1', port: s.port });
const srvCount = (p: DnsPacket.Packet) => (p.answers ?? []).filter((a) => a.type === 'SRV').length;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('dns client: a small answer over UDP, with EDNS0 advertising 1232 bytes', async () => {
  const s = await ScriptedDns.start({ host: '127.0.0.1', zone: zone(3) });
  try {
    const r = await new DnsClient().query(NAME, 'SRV', [at(s)], OPTS);
    assert.equal(r.transport, 'udp');
    assert.equal(r.rcode, 'NOERROR');
    assert.equal(srvCount(r.packet), 3);
    assert.deepEqual(s.queries.map((q) => [q.transport, q.type, q.edns]), [['udp', 'SRV', EDNS_UDP_SIZE]]);
  } finally {
    await s.close();
  }
});

test('dns client: 40 and 200 records do not fit in UDP: truncated, then complete over TCP', async () => {
  for (const n of [40, 200]) {
    const s = await ScriptedDns.start({ host: '127.0.0.1', zone: zone(n) });
    try {
      const r = await new DnsClient().query(NAME, 'SRV', [at(s)], OPTS);
      assert.equal(srvCount(r.packet), n);
      assert.equal(r.transport, 'tcp');
      assert.deepEqual(s.queries.map((q) => q.transport), ['udp', 'tcp']);
    } finally {
      await s.close();
    }
  }
});

test('dns client: a server that truncates every UDP answer still gives the whole set', async () => {
  const s = await ScriptedDns.start({ host: '127.0.0.1', zone: zone(40), udp: 'truncate' });
  try {
    const r = await new DnsClient().query(NAME, 'SRV', [at(s)], OPTS);
    assert.equal(srvCount(r.packet), 40);
  } finally {
    await s.close();
  }
});

test('dns client: a server that answers only over TCP; asked over TCP directly from then on', async () => {
  const s = await ScriptedDns.start({ host: '127.0.0.1', zone: zone(40), udp: 'closed' });
  try {
    const c = new DnsClient();
    const r = await c.query(NAME, 'SRV', [at(s)], OPTS);
    assert.equal(srvCount(r.packet), 40);
    assert.equal(r.transport, 'tcp');
    const a = await c.query('r1.svc.test', 'A', [at(s)], OPTS);
    assert.equal(a.transport, 'tcp');
    assert.deepEqual((a.packet.answers ?? []).map((x) => x.type === 'A' && x.data), ['10.0.0.1']);
    assert.deepEqual(s.queries.map((q) => q.transport), ['tcp', 'tcp'], 'the TCP server saw both queries; UDP is closed');
  } finally {
    await s.close();
  }
});

test('dns client: truncated over UDP and TCP refused: an error carrying the partial answer, never a result', async () => {
  const s = await ScriptedDns.start({ host: '127.0.0.1', zone: zone(40), udp: 'truncate', tcp: 'closed' });
  try {
    await assert.rejects(new DnsClient().query(NAME, 'SRV', [at(s)], OPTS), (err: unknown) => {
      assert.ok(err instanceof TruncatedAnswerError);
      assert.equal(srvCount(err.partial), 1);
      assert.match(err.message, /truncated over UDP \(1 record arrived\) and could not be completed over TCP \(.*ECONNREFUSED\)/);
      return true;
    });
  } finally {
    await s.close();
  }
});

test('dns client: failover past a silent and a refusing server; the one that answered is asked first next time', async () => {
  const silent = await ScriptedDns.start({ host: '127.0.0.1', zone: zone(3), udp: 'silent', tcp: 'closed' });
  const good = await ScriptedDns.start({ host: '127.0.0.1', zone: zone(3) });
  const dead: DnsServer = { host: '127.0.0.1', port: await freePort() };
  try {
    const c = new DnsClient();
    const servers = [dead, at(silent), at(good)];
    const r = await c.query(NAME, 'SRV', servers, { timeoutMs: 300, attempts: 2 });
    assert.equal(r.server.port, good.port);
    assert.equal(silent.queries.length, 1, 'the silent server was asked once');
    await c.query(NAME, 'SRV', servers, { timeoutMs: 300, attempts: 2 });
    assert.equal(silent.queries.length, 1, 'not asked again: the good server comes first now');
    assert.equal(good.queries.length, 2);
  } finally {
    await silent.close();
    await good.close();
  }
});

test('dns client: no server answers: the error says why for the last one tried', async () => {
  const dead: DnsServer = { host: '127.0.0.1', port: await freePort() };
  await assert.rejects(new DnsClient().query(NAME, 'SRV', [dead], { timeoutMs: 300, attempts: 2 }),
    (err: unknown) => err instanceof DnsQueryError && /over UDP: ECONNREFUSED; .* over TCP: ECONNREFUSED/.test(err.message));
  await assert.rejects(new DnsClient().query(NAME, 'SRV', [], OPTS), /no DNS server configured/);
});

test('dns client: a server that rejects EDNS0 (FORMERR) is asked again without it, and from then on', async () => {
  const s = await ScriptedDns.start({ host: '127.0.0.1', zone: zone(3), edns: 'formerr' });
  try {
    const c = new DnsClient();
    assert.equal(srvCount((await c.query(NAME, 'SRV', [at(s)], OPTS)).packet), 3);
    await c.query(NAME, 'SRV', [at(s)], OPTS);
    assert.deepEqual(s.queries.map((q) => q.edns), [EDNS_UDP_SIZE, null, null]);
  } finally {
    await s.close();
  }
});

test('dns client: NXDOMAIN is an answer; SERVFAIL is an error with its rcode', async () => {
  const s = await ScriptedDns.start({ host: '127.0.0.1', zone: zone(3) });
  try {
    const r = await new DnsClient().query('_nothing._tcp.svc.test', 'SRV', [at(s)], OPTS);
    assert.equal(r.rcode, 'NXDOMAIN');
    assert.equal(srvCount(r.packet), 0);
  } finally {
    await s.close();
  }
  await withRawServer((q, send) => send(dns.encode({ id: q.id, type: 'response', flags: 2 /* SERVFAIL */, questions: q.questions, answers: [] })), async (server) => {
    await assert.rejects(new DnsClient().query(NAME, 'SRV', [server], OPTS), (err: unknown) => err instanceof DnsQueryError && err.rcode === 'SERVFAIL');
  });
});

test('dns client: garbage, a wrong ID and an answer to another question are ignored; the real answer is taken', async () => {
  await withRawServer((q, send) => {
    send(Buffer.from('not dns at all'));
    send(dns.encode({ id: (q.id! + 1) & 0xffff, type: 'response', questions: q.questions, answers: [srvAnswer('spoof.test')] }));
    send(dns.encode({ id: q.id, type: 'response', questions: [{ name: 'other.test', type: 'SRV', class: 'IN' }], answers: [srvAnswer('spoof.test')] }));
    send(dns.encode({ id: q.id, type: 'response', questions: q.questions, answers: [srvAnswer('real.test')] }));
  }, async (server) => {
    const r = await new DnsClient().query(NAME, 'SRV', [server], OPTS);
    assert.deepEqual((r.packet.answers ?? []).map((a) => a.type === 'SRV' && a.data.target), ['real.test']);
  });
});

test('dns client: an IPv6 server', async (t) => {
  let s: ScriptedDns;
  try {
    s = await ScriptedDns.start({ host: '::1', zone: zone(40) });
  } catch {
    t.skip('no IPv6 loopback here');
    return;
  }
  try {
    const r = await new DnsClient().query(NAME, 'SRV', [{ host: '::1', port: s.port }], OPTS);
    assert.equal(srvCount(r.packet), 40);
    assert.deepEqual(s.queries.map((q) => q.transport), ['udp', 'tcp']);
  } finally {
    await s.close();
  }
});

function srvAnswer(target: string): DnsPacket.Answer {
  return { name: NAME, type: 'SRV', ttl: 5, data: { target, port: 7001, priority: 0, weight: 0 } };
}

/** A UDP server that hands each decoded query to `onQuery` with a way to send raw replies. */
async function withRawServer(onQuery: (q: DnsPacket.Packet, send: (b: Buffer) => void) => void, body: (s: DnsServer) => Promise<void>): Promise<void> {
  const sock = createSocket('udp4');
  sock.on('message', (msg, r) => onQuery(dns.decode(msg), (b) => sock.send(b, r.port, r.address)));
  await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
  try {
    await body({ host: '127.0.0.1', port: sock.address().port });
  } finally {
    sock.close();
  }
}
