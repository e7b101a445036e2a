// Packet aggregation at scale (issue 12's target; RFC 6762 §6, §8.1, §8.3, §17): one ambassador
// advertising 30 services next to a real avahi-daemon publishing the same 30 (same host label,
// same instance names, same TTLs) on a lab of its own, both captured on the wire for the first
// 12 s after each sent its first packet.
import { canUseAvahi, startAvahi } from '../../lib/avahi.js';
import { Lab } from '../../lib/netns.js';
import { Capture, type Seen } from '../lib/capture.js';
import { lower, recKey, type Rec } from '../lib/dns.js';
import { mcastAnswer, named } from '../lib/observe.js';
import { writeTimeline } from '../lib/runner.js';
import { sleep, type Trial } from '../lib/trial.js';

const N = 30;
const WINDOW_MS = 12_000;
const MAX_UDP_PAYLOAD = 1500 - 20 - 8; // the lab's MTU, IPv4 and UDP headers
const names = Array.from({ length: N }, (_, i) => `s${String(i + 1).padStart(2, '0')}`);

interface WindowStats {
  packets: number;
  bytes: number;
  frames: number;
  largest: number;
  fragments: number;
  hostA3s: number;
  /** Pairs of multicasts of one record less than 1 s apart (10 ms send jitter allowed). */
  repeats: number;
  worst?: string;
}

function windowStats(cap: Capture, host: string): WindowStats {
  const mine = cap.packets.filter((p) => p.fromHost);
  const t0 = mine[0]?.t ?? 0;
  const win = mine.filter((p) => p.t - t0 < WINDOW_MS);
  const sends = new Map<string, { label: string; times: number[] }>();
  let hostA3s = 0;
  for (const p of win) {
    if (!p.multicast || p.msg?.kind !== 'response') continue;
    for (const r of [...p.msg.answers, ...p.msg.additionals] as Rec[]) {
      if (r.ttl === 0) continue;
      const k = recKey(r);
      const e = sends.get(k) ?? { label: `${r.type} ${lower(r.name)}`, times: [] };
      e.times.push(p.t);
      sends.set(k, e);
      if (r.type === 'A' && lower(r.name) === host && p.t - t0 < 3000) hostA3s++;
    }
  }
  let repeats = 0;
  let worst: { label: string; n: number } | undefined;
  for (const e of sends.values()) {
    const n = e.times.slice(1).filter((t, i) => t - e.times[i]! < 990).length;
    repeats += n;
    if (n > (worst?.n ?? 0)) worst = { label: e.label, n };
  }
  return {
    packets: win.length,
    bytes: win.reduce((s, p) => s + p.size, 0),
    frames: win.reduce((s, p) => s + p.frame, 0),
    largest: Math.max(0, ...win.map((p) => p.size)),
    fragments: win.filter((p: Seen) => p.fragment).length,
    hostA3s,
    repeats,
    worst: worst && `${worst.label} ${worst.n + 1}× within a second`,
  };
}

const kb = (b: number) => `${(b / 1000).toFixed(1)} KB`;

export const aggregation: Trial = {
  name: 'aggregation-30-services',
  budgetMs: 60_000,
  requires: canUseAvahi,
  scenarios: [
    { id: 'aggregation-packets', rfc: '6762 §8.1, §8.3; issue 12', rule: '30 services, first 12 s after the first packet: no more packets than avahi-daemon publishing the same 30' },
    { id: 'aggregation-bytes', rfc: '6762 §8.1, §8.3; issue 12', rule: '30 services, first 12 s: at most 1.2× the bytes (DNS payload) avahi-daemon sends for the same 30' },
    { id: 'one-second-rule-startup', rfc: '6762 §6', rule: 'no record is multicast twice within one second on the interface (30 services starting: probes aside, in any section)', timing: '10 ms send jitter allowed (< 990 ms counts)' },
    { id: 'response-split', rfc: '6762 §18.5, §17', rule: 'responses too large for one packet are split into several, each with the TC bit clear (TC is for queries only)' },
    { id: 'packet-size', rfc: '6762 §17', rule: `no packet is larger than the interface MTU allows (${MAX_UDP_PAYLOAD}-byte UDP payload on a 1500-byte MTU), no IP fragments` },
  ],
  async run({ cap, ambassador, targets, record }) {
    const ports = names.map((_, i) => 7001 + i);
    await targets(ports);
    const avahiLab = await Lab.create({ hosts: ['dut'], prefix: 'confav' });
    let avahiCap: Capture | undefined;
    try {
      const avahiHost = avahiLab.host('dut');
      avahiCap = await Capture.start(avahiLab, avahiHost);
      const acap = avahiCap;
      const services = Object.fromEntries(names.map((n, i) => [`${n}.service`,
        `<?xml version="1.0" standalone='no'?>\n<!DOCTYPE service-group SYSTEM "avahi-service.dtd">\n<service-group>\n` +
        `  <name>${n}@dut</name>\n  <service>\n    <type>_${n}._tcp</type>\n    <port>${ports[i]}</port>\n  </service>\n</service-group>\n`]));
      // Both start together: what each sends in its own first 12 s is compared.
      await ambassador(names.flatMap((n, i) => ['--advertise', `${n}=${ports[i]}`]));
      await startAvahi(avahiHost, { hostName: 'dut', services });
      const last = `${names[N - 1]}@dut._${names[N - 1]}._tcp.local`;
      for (const c of [cap, acap]) await c.waitFor((p) => mcastAnswer(p, named(last, 'SRV')), { timeoutMs: 20_000, what: `announcement of ${last}` });
      const firsts = [cap, acap].map((c) => c.packets.find((p) => p.fromHost)!.t);
      await sleep(Math.max(...firsts) + WINDOW_MS + 300 - Date.now());
      const amb = windowStats(cap, 'dut.local');
      const avahi = windowStats(acap, 'dut.local');
      const line = (s: WindowStats) => `${s.packets} packets, ${kb(s.bytes)} (${kb(s.frames)} frames), largest ${s.largest} B, host A ${s.hostA3s}× in 3 s`;
      const both = `ambassador ${line(amb)}; avahi ${line(avahi)}`;
      record('aggregation-packets', amb.packets <= avahi.packets, `ambassador ${amb.packets} / avahi ${avahi.packets} packets — ${both}`);
      record('aggregation-bytes', amb.bytes <= 1.2 * avahi.bytes, `${(amb.bytes / avahi.bytes).toFixed(2)}× — ambassador ${kb(amb.bytes)} / avahi ${kb(avahi.bytes)}`);
      record('one-second-rule-startup', amb.repeats === 0,
        amb.repeats ? `${amb.repeats} repeats within 1 s; worst: ${amb.worst}; host A ${amb.hostA3s}× in the first 3 s (avahi: ${avahi.repeats} repeats, host A ${avahi.hostA3s}×)`
          : `no repeats (avahi: ${avahi.repeats})`);
      const responses = cap.filter((p) => p.fromHost && p.multicast && p.msg?.kind === 'response');
      const withTc = responses.filter((p) => p.msg!.tc).length;
      record('response-split', responses.length > 0 && withTc === 0,
        `${responses.length} multicast responses carrying ${responses.reduce((n, p) => n + p.msg!.answers.length, 0)} answers, largest ${Math.max(...responses.map((p) => p.size))} B, TC set on ${withTc}`);
      record('packet-size', amb.largest <= MAX_UDP_PAYLOAD && amb.fragments === 0 && cap.filter((p) => p.fromHost && p.fragment).length === 0,
        `largest ${amb.largest} B payload, ${amb.fragments} fragments (avahi largest ${avahi.largest} B)`);
    } finally {
      if (avahiCap) writeTimeline(`${aggregation.name}-avahi`, avahiCap);
      await avahiLab.destroy(1000);
    }
  },
};
