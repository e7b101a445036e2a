// Query and announcement floods, on loopback in the runner's private namespace.
//
// Query flood: a host sends thousands of queries a second for 5 s at an advertising ambassador.
// A raw socket on the group counts the multicast responses per record: RFC 6762 §6 allows one
// multicast of a record per second per interface (250 ms when defending against probes). A
// connector keeps proxying through the flood; its latency is printed before/during.
//
// Announcement flood: thousands of bogus instances announced at a connector: its memory stays
// bounded (cache capped, evictions counted), the genuine service is still resolved and served.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { MdnsEngine } from '../../src/mdns/engine.js';
import type { NetInterface } from '../../src/mdns/link/interfaces.js';
import type { MdnsRecord } from '../../src/mdns/wire/records.js';
import { decodePacket, encodePacket } from '../../src/mdns/wire/codec.js';
import { AmbProc, echoOnce, echoServer, fmt, freePort, GroupRecorder, isolated, metrics, percentile, rssKbOf, sleep } from './kit.js';

const iface: NetInterface = { name: 'lo', address: '127.0.0.1', netmask: '255.0.0.0' };

async function groupSocket(): Promise<Socket> {
  const s = createSocket({ type: 'udp4', reuseAddr: true });
  s.bind(5353, '0.0.0.0');
  await once(s, 'listening');
  s.addMembership('224.0.0.251', '127.0.0.1');
  s.setMulticastInterface('127.0.0.1');
  s.setMulticastLoopback(true);
  return s;
}

/** Round trips through `port` every `everyMs` until stopped; collects latencies and failures. */
function probeLoop(port: number, everyMs = 50) {
  const lat: number[] = [];
  const errors: string[] = [];
  let stop = false;
  const done = (async () => {
    for (let i = 0; !stop && i < 10_000; i++) {
      try { lat.push(await echoOnce(port, `ping ${i}\n`, 3000)); } catch (e) { errors.push((e as Error).message); }
      await sleep(everyMs);
    }
  })();
  return { lat, errors, stop: async () => { stop = true; await done; } };
}

test('query flood: multicast answers stay within RFC 6762 §6 per record, the proxy keeps serving', { skip: isolated, timeout: 60_000 }, async () => {
  const echo = await echoServer();
  const [adminA, connectPort] = [await freePort(), await freePort()];
  const startup = await GroupRecorder.start();
  const a = new AmbProc(['--interface', '127.0.0.1', '--hostname', 'alpha', '--admin', String(adminA), '--advertise', `echo=${echo.port},instance=flooded`]);
  const b = new AmbProc(['--interface', '127.0.0.1', '--hostname', 'beta', '--connect', `echo=${connectPort}`]);
  const listener = await groupSocket();
  const flooder = createSocket({ type: 'udp4', reuseAddr: true });
  try {
    await a.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced', 10_000, 'advertised');
    await b.waitLog((l) => l.msg === 'endpoint up', 10_000, 'connector sees the endpoint');
    // the second announcements are out: what follows are answers only
    await startup.announced('flooded._echo._tcp.local', 'SRV');
    await startup.announced('alpha.local', 'A');
    startup.close();
    const before = probeLoop(connectPort);
    await sleep(1000);
    await before.stop();

    // Multicast responses heard on the group, per record (name/type/rdata) → arrival times.
    const seen = new Map<string, number[]>();
    let responses = 0;
    listener.on('message', (msg) => {
      let p;
      try { p = decodePacket(msg); } catch { return; }
      if (p.type !== 'response') return;
      responses++;
      const now = performance.now();
      for (const r of p.answers) {
        const k = `${r.name}|${r.type}|${JSON.stringify(r.data)}`;
        let l = seen.get(k);
        if (!l) seen.set(k, (l = []));
        l.push(now);
      }
    });

    flooder.bind(5353, '0.0.0.0'); // from port 5353: multicast queries, not legacy unicast ones
    await once(flooder, 'listening');
    flooder.setMulticastInterface('127.0.0.1');
    const queries = [
      encodePacket({ type: 'query', questions: [{ name: '_echo._tcp.local', type: 'PTR' }] }),
      encodePacket({ type: 'query', questions: [{ name: 'flooded._echo._tcp.local', type: 'SRV' }] }),
      encodePacket({ type: 'query', questions: [{ name: 'flooded._echo._tcp.local', type: 'ANY' }] }),
      encodePacket({ type: 'query', questions: [{ name: 'alpha.local', type: 'A' }] }),
      encodePacket({ type: 'query', questions: [{ name: '_services._dns-sd._udp.local', type: 'PTR' }] }),
    ];
    const m0 = await metrics(adminA);
    const during = probeLoop(connectPort);
    const floodMs = 5000;
    const t0 = Date.now();
    let sent = 0;
    // Bounded: at most 5 s and 40 000 packets; ~50 queries per 10 ms tick ≈ 5 000 queries/s.
    while (Date.now() - t0 < floodMs && sent < 40_000) {
      for (let j = 0; j < 50; j++) flooder.send(queries[sent++ % queries.length]!, 5353, '224.0.0.251');
      await sleep(10);
    }
    const floodTook = Date.now() - t0;
    await during.stop();
    await sleep(300);
    const m1 = await metrics(adminA);

    const rateLimited = (m1.ambassador_mdns_rate_limited_total ?? 0) - (m0.ambassador_mdns_rate_limited_total ?? 0);
    const answered = (m1.ambassador_mdns_queries_answered_total ?? 0) - (m0.ambassador_mdns_queries_answered_total ?? 0);
    const perRecord: string[] = [];
    let worstGap = Infinity;
    let maxPerRecord = 0;
    for (const [k, times] of seen) {
      for (let i = 1; i < times.length; i++) worstGap = Math.min(worstGap, times[i]! - times[i - 1]!);
      maxPerRecord = Math.max(maxPerRecord, times.length);
      perRecord.push(`${k.split('|').slice(0, 2).join(' ')}: ${times.length}`);
    }
    const pct = (xs: number[], p: number) => fmt(percentile(xs, p), 2);
    console.log(`# query flood: ${sent} queries in ${floodTook} ms (${Math.round((sent * 1000) / floodTook)}/s); responder answered ${answered}, rate-limited ${rateLimited}; ` +
      `${responses} multicast responses heard; per record: ${perRecord.join(', ')}; smallest gap between two multicasts of one record ${fmt(worstGap, 0)} ms`);
    console.log(`# proxy latency (ms) before: n=${before.lat.length} p50=${pct(before.lat, 50)} p99=${pct(before.lat, 99)}; during: n=${during.lat.length} p50=${pct(during.lat, 50)} p99=${pct(during.lat, 99)} max=${pct(during.lat, 100)}; failures ${during.errors.length}`);

    assert.ok(sent >= 10_000, `flood was real (${sent} queries)`);
    assert.ok(seen.size > 0, 'the responder did answer');
    // §6: ≤ 1 multicast per record per second: over ~5.5 s ≤ 7. The gaps are arrival times in
    // this process, each late by its event loop's delay (over 100 ms on a loaded machine): a
    // record answered per query would show gaps of milliseconds, so half a second is the bound.
    assert.ok(worstGap >= 500, `no record multicast twice within a second (smallest gap ${fmt(worstGap, 0)} ms)`);
    assert.ok(maxPerRecord <= Math.ceil(floodTook / 1000) + 2, `at most ~1/s per record (max ${maxPerRecord})`);
    assert.ok(rateLimited > 1000, `the rate limit engaged (${rateLimited})`);
    assert.deepEqual(during.errors, [], 'the proxy served every request during the flood');
    assert.ok(during.lat.length >= 20, `the proxy kept serving (${during.lat.length} round trips)`);
    assert.ok(a.running && b.running);
  } finally {
    startup.close();
    listener.close();
    flooder.close();
    await Promise.all([a.stop(), b.stop()]);
    await echo.close();
  }
});

/** Filled by the announcement flood test: the connector's genuine endpoint removals during the flood. */
const floodOutage = { removals: -1, lines: [] as string[] };

test('announcement flood: thousands of bogus instances, memory bounded, cache capped, the genuine service still served', { skip: isolated, timeout: 60_000 }, async () => {
  const echo = await echoServer();
  const [adminB, connectPort] = [await freePort(), await freePort()];
  const a = new AmbProc(['--interface', '127.0.0.1', '--hostname', 'alpha', '--advertise', `echo=${echo.port},instance=genuine`]);
  const b = new AmbProc(['--interface', '127.0.0.1', '--hostname', 'beta', '--admin', String(adminB), '--connect', `echo=${connectPort}`]);
  // An in-process engine too, to read cacheSize/cacheEvicted and its browser directly.
  const watcher = new MdnsEngine({ interfaces: [iface], hostname: 'watcher' });
  await watcher.start();
  const flooder = createSocket({ type: 'udp4', reuseAddr: true });
  try {
    await a.waitLog((l) => l.msg === 'advertisement' && l.state === 'announced', 10_000, 'advertised');
    await b.waitLog((l) => l.msg === 'endpoint up', 10_000, 'connector sees the endpoint');
    const browser = watcher.browse('echo');
    for (let i = 0; i < 100 && browser.instances().length === 0; i++) await sleep(50);
    assert.equal(browser.instances().length, 1, 'the watcher sees the genuine instance');
    await echoOnce(connectPort);
    const rss0 = b.rssKb();
    const selfRss0 = rssKbOf('self');
    const m0 = await metrics(adminB);

    flooder.bind(5353, '0.0.0.0');
    await once(flooder, 'listening');
    flooder.setMulticastInterface('127.0.0.1');
    const instances = Number(process.env.FLOOD_INSTANCES ?? 30_000);
    const perPacket = 6;
    let sent = 0;
    const t0 = Date.now();
    const types = ['_bogus._tcp.local', '_printer._tcp.local', '_http._tcp.local', '_ipp._tcp.local'];
    // Bounded: `instances` instances (4 records each) within at most 20 s.
    for (let i = 0; i < instances && Date.now() - t0 < 20_000; i += perPacket) {
      const answers: MdnsRecord[] = [];
      for (let j = i; j < Math.min(instances, i + perPacket); j++) {
        const type = types[j % types.length]!;
        const inst = `bogus-${j}.${type}`;
        const host = `bogus-${j}.local`;
        answers.push(
          { name: type, type: 'PTR', ttl: 4500, data: inst },
          { name: inst, type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 1 + (j % 60000), target: host } },
          { name: inst, type: 'TXT', ttl: 120, flush: true, data: [Buffer.from(`n=${j}`)] },
          { name: host, type: 'A', ttl: 120, flush: true, data: `127.1.${(j >> 8) & 255}.${j & 255}` },
        );
      }
      flooder.send(encodePacket({ type: 'response', answers }), 5353, '224.0.0.251');
      if (++sent % 20 === 0) await sleep(2);
    }
    const floodMs = Date.now() - t0;
    await sleep(1000);
    const m1 = await metrics(adminB);
    const rss1 = b.rssKb();
    const st = watcher.stats();
    const genuine = browser.instances().filter((i) => i.instance === 'genuine');
    let served = true;
    const tServe = performance.now();
    try { await echoOnce(connectPort, 'ping\n', 8000); } catch { served = false; }
    const serveMs = performance.now() - tServe;
    floodOutage.removals = b.logs().filter((l) => l.msg === 'endpoint down').length;
    const downs = b.logs().filter((l) => l.msg === 'endpoint down' || l.msg === 'endpoint up').map((l) => `${l.msg}${l.reason ? ` (${l.reason})` : ''} at +${l.time - t0} ms`);
    // The watcher's browser gets the genuine instance back when it next queries (back-off).
    let recoveredMs = -1;
    const tLost = Date.now();
    for (let i = 0; i < 200 && genuineNow(); i++) await sleep(50);
    function genuineNow() { return browser.instances().every((x) => x.instance !== 'genuine'); }
    if (!genuineNow()) recoveredMs = Date.now() - tLost;
    console.log(`# announcement flood: ${instances} bogus instances (${instances * 4} records) in ${sent} packets, ${floodMs} ms`);
    console.log(`# watcher engine: cacheSize=${st.cacheSize} cacheEvicted=${st.cacheEvicted} malformed=${st.malformed}; test process RSS ${Math.round(selfRss0 / 1024)} → ${Math.round(rssKbOf('self') / 1024)} MB`);
    console.log(`# connector ambassador: cache records ${m0.ambassador_mdns_cache_records} → ${m1.ambassador_mdns_cache_records}, ` +
      `packets in ${(m1.ambassador_mdns_packets_received_total ?? 0) - (m0.ambassador_mdns_packets_received_total ?? 0)}, RSS ${Math.round(rss0 / 1024)} → ${Math.round(rss1 / 1024)} MB`);
    console.log(`# genuine instance after the flood: watcher ${genuine.length ? 'sees it' : `LOST it (evicted; back after ${recoveredMs} ms more)`}; connector ${served ? `serves (first request took ${fmt(serveMs, 0)} ms)` : 'does NOT serve'}; connector log: ${downs.join(', ')}`);

    assert.ok(st.cacheSize <= 4096, `cache capped (${st.cacheSize})`);
    assert.ok(st.cacheEvicted > 0, 'evictions counted');
    assert.ok((m1.ambassador_mdns_cache_records ?? 0) <= 4096, 'the ambassador cache is capped too');
    assert.ok(rss1 - rss0 < 150 * 1024, `ambassador RSS bounded (+${Math.round((rss1 - rss0) / 1024)} MB)`);
    assert.ok(a.running && b.running);
    assert.ok(served, 'the connector still serves the genuine service');
  } finally {
    flooder.close();
    await watcher.stop();
    await Promise.all([a.stop(), b.stop()]);
    await echo.close();
  }
});

// Engine bug found here, fixed in 2aff1f7 (eviction passes over records of live instances): the cache evicted the stalest
// record when full, and the genuine service's records — received once, then kept fresh by
// known-answer suppression — are the stalest. A flood of other services' announcements evicts
// them: the browser reports the genuine instance down, the connector removes its endpoint and
// clients wait until the next query brings it back (outages of 0.5–3.5 s measured here).
test('announcement flood of other services never removes the genuine endpoint', () => {
  assert.equal(floodOutage.removals, 0, `the connector removed its genuine endpoint ${floodOutage.removals} time(s) during the flood`);
});
