// Spoofed goodbyes and name conflicts (RFC 6762 §9, §10.1), on loopback.
//
// An advertiser (ambassador `alpha`, instance `ours`) and a connector (ambassador `beta`) to it;
// an in-process watcher engine records what a peer sees; a rogue socket on 5353 sends the spoofs.
// Throughout, a client loop makes requests through the connector and one long-lived connection
// stays open: the data path must not see an outage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { MdnsEngine } from '../../src/mdns/engine.js';
import type { ServiceBrowser } from '../../src/mdns/browse/browser.js';
import type { NetInterface } from '../../src/mdns/link/interfaces.js';
import type { MdnsRecord } from '../../src/mdns/wire/records.js';
import { decodePacket, encodePacket } from '../../src/mdns/wire/codec.js';
import { AmbProc, echoOnce, echoServer, freePort, isolated, sleep, waitFor } from './kit.js';

const iface: NetInterface = { name: 'lo', address: '127.0.0.1', netmask: '255.0.0.0' };

interface Mesh {
  echoPort: number;
  connectPort: number;
  a: AmbProc;
  b: AmbProc;
  watcher: MdnsEngine;
  browser: ServiceBrowser;
  rogue: Socket;
  /** Responses multicast by anyone, with arrival time. */
  heard: Array<{ at: number; records: MdnsRecord[] }>;
  events: Array<{ at: number; ev: string; port?: number; instance: string }>;
  close(): Promise<void>;
}

async function mesh(): Promise<Mesh> {
  const echo = await echoServer();
  const connectPort = await freePort();
  // The rogue socket hears everything from alpha's first packet on (it is bound first).
  const rogue = createSocket({ type: 'udp4', reuseAddr: true });
  rogue.bind(5353, '0.0.0.0');
  await once(rogue, 'listening');
  rogue.addMembership('224.0.0.251', '127.0.0.1');
  rogue.setMulticastInterface('127.0.0.1');
  const heard: Mesh['heard'] = [];
  rogue.on('message', (msg) => {
    try {
      const p = decodePacket(msg);
      if (p.type === 'response') heard.push({ at: Date.now(), records: [...p.answers, ...p.additionals] });
    } catch { /* not ours to judge */ }
  });
  const a = new AmbProc(['--interface', '127.0.0.1', '--hostname', 'alpha', '--advertise', `echo=${echo.port},instance=ours`]);
  const b = new AmbProc(['--interface', '127.0.0.1', '--hostname', 'beta', '--connect', `echo=${connectPort}`, '--wait-for-endpoint', '3000']);
  const watcher = new MdnsEngine({ interfaces: [iface], hostname: 'watcher' });
  await watcher.start();
  const browser = watcher.browse('echo');
  const events: Mesh['events'] = [];
  try {
    await a.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced', 10_000, 'advertised');
    await b.waitLog((l) => l.msg === 'endpoint up', 10_000, 'connector endpoint up');
    await waitFor(() => browser.instances().length > 0, { timeoutMs: 10_000, message: 'the watcher resolves ours' });
    // Both startup announcements of each record the spoofs name are out (a responder multicasts
    // a record at most once a second, RFC 6762 §6, so the second multicast heard is the second
    // announcement), and a second has passed since the last (the §10.2 one-second window): a
    // record heard after the spoof can only be the answer to it.
    const isOurs = (r: MdnsRecord) => r.ttl > 0 && ((r.type === 'SRV' && r.name === 'ours._echo._tcp.local') ||
      (r.type === 'A' && r.name === 'alpha.local') || (r.type === 'PTR' && r.data === 'ours._echo._tcp.local'));
    const secondOf = (type: string) => heard.filter((h) => h.records.some((r) => r.type === type && isOurs(r)))[1]?.at;
    const last = await waitFor(() => {
      const ts = ['SRV', 'A', 'PTR'].map(secondOf);
      return ts.every((t) => t !== undefined) ? Math.max(...(ts as number[])) : undefined;
    }, { timeoutMs: 10_000, intervalMs: 20, message: 'both announcements of SRV, A and PTR' });
    await sleep(Math.max(0, last + 1000 - Date.now()));
  } catch (err) {
    // Nothing may stay open, or the test file would hang until the runner's timeout.
    rogue.close();
    await watcher.stop();
    await Promise.all([a.stop(), b.stop()]);
    await echo.close();
    throw err;
  }
  for (const ev of ['up', 'down', 'update'] as const) browser.on(ev, (i) => events.push({ at: Date.now(), ev, port: i.port, instance: i.instance }));
  return {
    echoPort: echo.port, connectPort, a, b, watcher, browser, rogue, heard, events,
    close: async () => {
      rogue.close();
      await watcher.stop();
      await Promise.all([a.stop(), b.stop()]);
      await echo.close();
    },
  };
}

/** Requests through the connector every 25 ms, plus one connection held open throughout. */
async function dataPath(port: number) {
  const errors: string[] = [];
  let ok = 0;
  let stop = false;
  const held = net.connect({ port, host: '127.0.0.1' });
  let heldClosedAt = 0;
  held.on('error', () => {});
  held.on('close', () => (heldClosedAt = Date.now()));
  await once(held, 'connect');
  const loop = (async () => {
    for (let i = 0; !stop && i < 2000; i++) {
      try { await echoOnce(port, `r${i}\n`, 3000); ok++; } catch (e) { errors.push(`${Date.now()}: ${(e as Error).message}`); }
      await sleep(25);
    }
  })();
  return {
    async finish() {
      stop = true;
      await loop;
      // The held connection still echoes?
      let heldAlive = false;
      if (!held.destroyed) {
        held.write('still there?\n');
        heldAlive = await Promise.race([once(held, 'data').then(() => true), sleep(1000).then(() => false)]);
      }
      held.destroy();
      return { ok, errors, heldAlive, heldClosedAt };
    },
  };
}

const srvOf = (m: Mesh): MdnsRecord => ({ name: 'ours._echo._tcp.local', type: 'SRV', ttl: 0, flush: true, data: { priority: 0, weight: 0, port: m.echoPort, target: 'alpha.local' } });

for (const which of ['SRV', 'A', 'PTR'] as const) {
  test(`spoofed goodbye for our ${which} record: we re-announce, peers keep (or get back within ~1 s) the endpoint`, { skip: isolated, timeout: 40_000 }, async () => {
    const m = await mesh();
    try {
      const dp = await dataPath(m.connectPort);
      await sleep(300);
      const bye: MdnsRecord = which === 'SRV' ? srvOf(m)
        : which === 'A' ? { name: 'alpha.local', type: 'A', ttl: 0, flush: true, data: '127.0.0.1' }
          : { name: '_echo._tcp.local', type: 'PTR', ttl: 0, data: 'ours._echo._tcp.local' };
      const t0 = Date.now();
      m.heard.length = 0;
      m.events.length = 0;
      m.rogue.send(encodePacket({ type: 'response', answers: [bye] }), 5353, '224.0.0.251');
      await sleep(2500);
      const r = await dp.finish();
      // What alpha multicast back after the goodbye (its own records with TTL > 0).
      const reannounce = m.heard.find((h) => h.at >= t0 && h.records.some((x) => x.type === which && x.ttl > 0 &&
        (which !== 'PTR' || x.data === 'ours._echo._tcp.local') && (which !== 'A' || x.name === 'alpha.local')));
      const down = m.events.find((e) => e.ev === 'down');
      const upAgain = m.events.find((e) => e.ev === 'up' && e.at >= (down?.at ?? 0));
      const present = m.browser.instances().some((i) => i.instance === 'ours');
      const gap = down ? (upAgain ? upAgain.at - down.at : Infinity) : 0;
      const bLog = m.b.logs().filter((l) => l.time >= t0 && /endpoint (down|up)/.test(l.msg)).map((l) => `${l.msg}${l.reason ? ` (${l.reason})` : ''} +${l.time - t0} ms`);
      console.log(`# spoofed ${which} goodbye: re-announced ${reannounce ? `after ${reannounce.at - t0} ms` : 'NEVER'}; watcher ${down ? `dropped it at +${down.at - t0} ms, back ${upAgain ? `at +${upAgain.at - t0} ms` : 'NEVER'}` : 'kept it'}; ` +
        `connector: ${bLog.join(', ') || 'no change'}; data path: ${r.ok} requests ok, ${r.errors.length} failed, held connection ${r.heldAlive ? 'alive' : `CLOSED at +${r.heldClosedAt - t0} ms`}`);
      spoofResults[which] = { reannounced: !!reannounce && reannounce.at - t0 <= 100, gap, heldAlive: r.heldAlive, failures: r.errors.length };
      assert.ok(m.a.running && m.b.running);
      assert.ok(present || which === 'PTR', 'the watcher has our instance after the spoof');
      if (which !== 'PTR') {
        assert.ok(reannounce, 'alpha re-announced the record (RFC 6762 §10.1)');
        assert.ok(gap <= 1000, `a peer that dropped it got it back within 1 s (gap ${gap} ms)`);
        assert.deepEqual(r.errors, [], 'no request failed');
      }
    } finally {
      await m.close();
    }
  });
}

const spoofResults: Record<string, { reannounced: boolean; gap: number; heldAlive: boolean; failures: number }> = {};

// Findings of this file, fixed in 2aff1f7 (PTR goodbyes defended; goodbyes drain instead of drop).
test('a spoofed PTR goodbye is answered by a re-announcement (shared record we own)', () => {
  assert.equal(spoofResults.PTR?.reannounced, true, 'PTR goodbye re-announced');
});
test('open connections survive a spoofed goodbye that is answered at once', () => {
  for (const k of ['SRV', 'A', 'PTR']) assert.equal(spoofResults[k]?.heldAlive, true, `held connection alive after spoofed ${k} goodbye`);
});

test('a rogue probe for our name is defended: no rename, no outage', { skip: isolated, timeout: 40_000 }, async () => {
  const m = await mesh();
  try {
    const dp = await dataPath(m.connectPort);
    await sleep(300);
    const t0 = Date.now();
    m.heard.length = 0;
    m.events.length = 0;
    // A well-behaved newcomer probing for our instance name with its own data, 3 times 250 ms apart.
    for (let i = 0; i < 3; i++) {
      m.rogue.send(encodePacket({
        type: 'query', questions: [{ name: 'ours._echo._tcp.local', type: 'ANY', qu: i === 0 }],
        authorities: [{ ...srvOf(m), ttl: 120, flush: false, data: { priority: 0, weight: 0, port: 1, target: 'rogue.local' } }],
      }), 5353, '224.0.0.251');
      await sleep(250);
    }
    await sleep(1500);
    const r = await dp.finish();
    const defended = m.heard.filter((h) => h.at >= t0 && h.records.some((x) => x.name === 'ours._echo._tcp.local' && x.type === 'SRV' && x.ttl > 0));
    const renamed = m.a.find((l) => l.msg === 'name conflict: renamed instance');
    console.log(`# rogue probe: alpha defended ${defended.length}× (first after ${defended[0] ? defended[0].at - t0 : '—'} ms), renamed: ${renamed ? 'YES' : 'no'}; ` +
      `watcher events: ${m.events.map((e) => `${e.ev} ${e.instance}:${e.port}`).join(', ') || 'none'}; data path ${r.ok} ok / ${r.errors.length} failed, held ${r.heldAlive ? 'alive' : 'closed'}`);
    assert.ok(defended.length >= 1, 'alpha answered the probe with its records');
    assert.equal(renamed, undefined, 'we keep our name');
    assert.deepEqual(m.events, [], 'peers saw no change');
    assert.deepEqual(r.errors, []);
    assert.ok(r.heldAlive, 'open connection untouched');
  } finally {
    await m.close();
  }
});

test('a rogue host announcing our name with other data: resolved (re-probe or rename), the data path keeps serving', { skip: isolated, timeout: 40_000 }, async () => {
  const m = await mesh();
  try {
    const dp = await dataPath(m.connectPort);
    await sleep(300);
    const t0 = Date.now();
    m.events.length = 0;
    // The rogue insists for 2 s: its SRV for our name points at a port where nothing listens.
    const roguePort = await freePort();
    for (let i = 0; i < 10; i++) {
      m.rogue.send(encodePacket({ type: 'response', answers: [
        { ...srvOf(m), ttl: 120, data: { priority: 0, weight: 0, port: roguePort, target: 'alpha.local' } },
      ] }), 5353, '224.0.0.251');
      await sleep(200);
    }
    await sleep(3000);
    const r = await dp.finish();
    const renamed = m.a.find((l) => l.msg === 'name conflict: renamed instance');
    const names = m.browser.instances().map((i) => `${i.instance}:${i.port}`);
    const bLog = m.b.logs().filter((l) => l.time >= t0 && /endpoint|failover|client closed/.test(l.msg)).map((l) => `${l.msg}${l.reason ? ` (${l.reason})` : ''}${l.endpoint ? ` ${l.endpoint}` : ''} +${l.time - t0}`);
    console.log(`# rogue announcement for our name: alpha ${renamed ? `renamed ${renamed.from} → ${renamed.to}` : 'kept its name'}; watcher now sees ${names.join(', ')}; ` +
      `connector: ${bLog.slice(0, 12).join(', ')}${bLog.length > 12 ? ' …' : ''}; data path ${r.ok} ok / ${r.errors.length} failed (${r.errors.slice(0, 3).join('; ')}), held ${r.heldAlive ? 'alive' : `closed at +${r.heldClosedAt - t0} ms`}`);
    assert.ok(m.a.running && m.b.running);
    assert.ok(names.some((n) => n.endsWith(`:${m.echoPort}`)), 'our service is visible again with its real port');
    rogueAnnouncementFailures = r.errors.length;
    // The connector recovered: the last requests all went through.
    assert.ok(r.ok > 50, `the data path serves after the conflict (${r.ok} ok)`);
  } finally {
    await m.close();
  }
});

let rogueAnnouncementFailures = -1;
// Finding (reported): while the rogue's SRV (other port, cache-flush) replaces ours at peers and
// before our renamed instance is announced (~0.5 s), the connector's only endpoint points at the
// rogue's dead port: a client whose connect fails there has no other endpoint and is closed
// ('all-failed') instead of waiting (--wait-for-endpoint) for one to appear.
test('no client request fails while a rogue announcement for our name is being resolved', () => {
  assert.equal(rogueAnnouncementFailures, 0, `${rogueAnnouncementFailures} request(s) failed`);
});
