// Protocol hygiene at scale (issue 12): one ambassador advertising 30 services next to an
// avahi-daemon publishing the same 30 (static service files), on lab hosts, IPv4 only. A third
// host listens on the group and counts, per sender, the packets and bytes of the first 12 s
// (from its first packet), how often the host's A record went out in the first 3 s, and the
// smallest gap between two multicasts of one record (RFC 6762 §6: at least one second).
// Target: no more packets than Avahi, at most 1.2× its bytes, no record twice within a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Lab, canUseNetns } from '../lib/netns.js';
import { avahiServiceFile, canUseAvahi, startAvahi } from '../lib/avahi.js';
import { sleep, startAmbassador } from './ambassador-kit.js';

const WIRE = fileURLToPath(new URL('../../src/mdns/wire.js', import.meta.url));
const N = 30;
const WINDOW_MS = 12_000;

/** Listens on 224.0.0.251:5353 and prints one JSON line per packet: time, source, size, records. */
const LISTENER = `
const dgram = require('node:dgram');
import(process.argv[1]).then(({ decodePacket }) => {
  const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  s.on('message', (msg, r) => {
    let p; try { p = decodePacket(msg); } catch { return; }
    const recs = p.type === 'response' ? [...p.answers, ...p.additionals].map((x) => [x.name.toLowerCase(), x.type, JSON.stringify(x.data), x.ttl]) : [];
    console.log(JSON.stringify({ t: Date.now(), src: r.address, len: msg.length, type: p.type, recs }));
  });
  s.bind(5353, () => { s.addMembership('224.0.0.251', process.argv[2]); console.log('listening'); });
});`;

interface Heard { t: number; src: string; len: number; type: string; recs: Array<[string, string, string, number]> }

function summarise(all: Heard[], src: string, host: string) {
  const mine = all.filter((h) => h.src === src);
  if (mine.length === 0) return undefined;
  const t0 = mine[0]!.t;
  const win = mine.filter((h) => h.t - t0 < WINDOW_MS);
  const aIn3s = win.filter((h) => h.t - t0 < 3000).flatMap((h) => h.recs).filter(([n, t, , ttl]) => n === host && t === 'A' && ttl > 0).length;
  // Smallest gap between two multicasts of one live record (goodbyes aside).
  const last = new Map<string, number>();
  let minGap = Infinity;
  let worst = '';
  for (const h of win) {
    for (const [n, t, d, ttl] of new Map(h.recs.map((r) => [`${r[0]}|${r[1]}|${r[2]}`, r])).values()) {
      if (ttl === 0) continue;
      const k = `${n} ${t} ${d}`;
      const prev = last.get(k);
      if (prev !== undefined && h.t - prev < minGap) {
        minGap = h.t - prev;
        worst = k;
      }
      last.set(k, h.t);
    }
  }
  return {
    packets: win.length,
    bytes: win.reduce((n, h) => n + h.len, 0),
    largest: Math.max(...win.map((h) => h.len)),
    aIn3s,
    minGap,
    worst,
  };
}

test(`${N} services on one host: fewer packets than avahi-daemon, at most 1.2× its bytes, no record twice within a second`, { skip: canUseNetns() ?? canUseAvahi(), timeout: 90_000 }, async () => {
  const lab = await Lab.create({ hosts: ['a', 'v', 'l'] });
  try {
    const [a, v, l] = [lab.host('a'), lab.host('v'), lab.host('l')];
    const listener = l.spawn(process.execPath, ['-e', LISTENER, WIRE, l.ip], { name: '[l] mdns listener' });
    await listener.waitForLine(/listening/);
    const ports = Array.from({ length: N }, (_, i) => 7001 + i);
    const names = ports.map((_, i) => `s${String(i + 1).padStart(2, '0')}`);
    // Targets to advertise (the ambassador announces only what accepts connections).
    const targets = a.spawn(process.execPath, ['-e', `const net=require('net');let n=0;for(const p of ${JSON.stringify(ports)})net.createServer((s)=>{s.on('error',()=>{});s.destroy()}).listen(p,()=>{if(++n===${N})console.log('listening')})`]);
    await targets.waitForLine(/listening/);
    const services = Object.fromEntries(names.map((n, i) => [`${n}.service`, avahiServiceFile(`${n}@v`, `_${n}._tcp`, ports[i]!)]));
    await Promise.all([
      startAvahi(v, { hostName: 'v', services }),
      (async () => {
        const amb = startAmbassador(a, [...names.flatMap((n, i) => ['--advertise', `${n}=${ports[i]}`])]);
        await amb.waitLog((x) => x.msg === 'advertisement' && x.state === 'announced' && x.service === names[N - 1], { timeoutMs: 15_000 });
      })(),
    ]);
    await sleep(WINDOW_MS + 1000);
    const heard: Heard[] = listener.stdout.split('\n').filter((x) => x.startsWith('{')).map((x) => JSON.parse(x) as Heard);
    const ours = summarise(heard, a.ip, 'a.local');
    const avahi = summarise(heard, v.ip, 'v.local');
    assert.ok(ours && avahi, 'both were heard');
    const row = (who: string, s: NonNullable<typeof ours>) =>
      `# | ${who} | ${s.packets} | ${(s.bytes / 1000).toFixed(1)} KB | ${s.largest} B | ${s.aIn3s} | ${Number.isFinite(s.minGap) ? `${s.minGap} ms` : 'never repeated'} |`;
    console.log(`# first ${WINDOW_MS / 1000} s from the first packet, IPv4, ${N} services`);
    console.log('# | sender | packets | bytes (UDP payload) | largest packet | host A record in the first 3 s | smallest gap between two multicasts of one record |');
    console.log(row(`ambassador, ${N} × --advertise`, ours));
    console.log(row(`avahi-daemon, ${N} services`, avahi));
    console.log(`# ratio: packets ${(ours.packets / avahi.packets).toFixed(2)}×, bytes ${(ours.bytes / avahi.bytes).toFixed(2)}×; our closest repeat: ${ours.worst}`);
    assert.ok(ours.packets <= avahi.packets, `packets: ours ${ours.packets}, Avahi ${avahi.packets}`);
    assert.ok(ours.bytes <= 1.2 * avahi.bytes, `bytes: ours ${ours.bytes}, Avahi ${avahi.bytes}`);
    // Receive times carry a few ms of scheduling jitter on a busy machine.
    assert.ok(ours.minGap >= 980, `no record multicast twice within a second (closest: ${ours.minGap} ms, ${ours.worst})`);
    assert.ok(ours.aIn3s <= 3, `host A record ${ours.aIn3s} times in the first 3 s`);
  } finally {
    await lab.destroy();
  }
});
