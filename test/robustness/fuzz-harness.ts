// The in-process mDNS fuzz harness, shared by test/robustness/mdns-fuzz.test.ts (bounded, CI)
// and test/soak/mdns-fuzz.soak.test.ts (long). See the test file for what is checked.
import assert from 'node:assert/strict';
import type { RemoteInfo } from 'node:dgram';
import { FakeClock } from '../../src/base/clock.js';
import { MdnsEngine } from '../../src/mdns/engine.js';
import { FUZZ_KINDS, MdnsFuzzer } from './mdns-fuzzer.js';
import type { NetInterface } from '../../src/mdns/link/interfaces.js';
import { recordKey, sameName, type MdnsRecord } from '../../src/mdns/wire/records.js';
import { decodePacket, encodePacket, MalformedPacketError, type MdnsPacket } from '../../src/mdns/wire/codec.js';

export const iface: NetInterface = { name: 'lo', address: '127.0.0.1', netmask: '255.0.0.0' };
const peer = (port = 5353): RemoteInfo => ({ address: '127.0.0.2', port, family: 'IPv4', size: 0 });

const GENUINE: MdnsRecord[] = [
  { name: '_redis._tcp.local', type: 'PTR', ttl: 4500, data: 'genuine._redis._tcp.local' },
  { name: 'genuine._redis._tcp.local', type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 7000, target: 'genuine.local' } },
  { name: 'genuine._redis._tcp.local', type: 'TXT', ttl: 120, flush: true, data: [Buffer.from('role=primary')] },
  { name: 'genuine.local', type: 'A', ttl: 120, flush: true, data: '127.0.0.2' },
];

export interface FuzzReport {
  cases: number;
  malformed: number;
  accepted: number;
  byKind: Record<string, { cases: number; malformed: number }>;
  claims: number;
  renames: number;
  reannounced: number;
  handlerErrors: string[];
  violations: string[];
  ms: number;
}

/** Runs `n` cases from `seed` through an in-process engine; returns what happened. */
export async function fuzzInProcess(seed: number, n: number, log = (s: string) => console.log(s)): Promise<FuzzReport> {
  const clock = new FakeClock();
  // A fake socket: the engine's sends (encode included) run, nothing leaves the process.
  let sentPackets = 0;
  const engine = new MdnsEngine({
    interfaces: [iface], hostname: 'alpha', clock,
    transport: async () => ({
      families: () => ['IPv4'],
      send: (_b, _f, _d, done) => { sentPackets++; done(null); return true; },
      update: async () => {},
      close: async () => {},
    }),
  });
  await engine.start();
  const handlerErrors: string[] = [];
  const violations: string[] = [];
  let current = -1;
  engine.links.on('handler-error', (err: Error) => handlerErrors.push(`case ${current}: ${err.stack ?? err}`));
  const feed = (buf: Buffer, r: RemoteInfo) => engine.receive(iface.name, buf, r);

  const reg = engine.publish({ name: 'redis', port: 6379 });
  let renames = 0;
  reg.on('renamed', () => renames++);
  engine.on('host-renamed', () => renames++);
  clock.advance(3000);
  assert.equal(reg.state, 'announced', 'our registration is announced before fuzzing');
  const browser = engine.browse('redis');
  const feedGenuine = () => feed(encodePacket({ type: 'response', answers: GENUINE }), peer());
  feedGenuine();
  await flushMicrotasks();
  clock.advance(200);
  const genuine = () => JSON.stringify(browser.instances().filter((i) => i.instance === 'genuine').map(({ expiresAt: _e, ...rest }) => rest));
  const genuineView = genuine();
  assert.notEqual(genuineView, '[]', 'the genuine peer is seen before fuzzing');

  const fuzz = new MdnsFuzzer(seed, targetsOf(engine, reg));
  const byKind: FuzzReport['byKind'] = Object.fromEntries(FUZZ_KINDS.map((k) => [k, { cases: 0, malformed: 0 }]));
  let malformed = 0;
  let claims = 0;
  const t0 = Date.now();
  const reannounced0 = engine.stats().reannouncedAfterSpoofedGoodbye;

  for (let i = 0; i < n; i++) {
    current = i;
    fuzz.retarget(targetsOf(engine, reg));
    const c = fuzz.next();
    byKind[c.kind]!.cases++;
    let decoded: MdnsPacket | undefined;
    try {
      decoded = decodePacket(c.buf);
    } catch (err) {
      if (!(err instanceof MalformedPacketError)) violations.push(`case ${i} (${c.kind}): decode threw ${(err as Error).stack}`);
    }
    if (!decoded) {
      malformed++;
      byKind[c.kind]!.malformed++;
    }
    const claim = decoded !== undefined && isClaim(decoded, engine, reg);
    if (claim) claims++;
    const before = view(engine, reg, browser);
    const m0 = engine.stats().malformed;
    const port = i % 10 === 9 ? 40000 + (i % 1000) : 5353; // some legacy-unicast sources
    try {
      feed(c.buf, peer(port));
      await flushMicrotasks();
    } catch (err) {
      violations.push(`case ${i} (${c.kind} ${c.detail ?? ''}): handler threw ${(err as Error).stack}`);
    }
    const after = view(engine, reg, browser);
    if (!decoded) {
      if (engine.stats().malformed !== m0 + 1) violations.push(`case ${i} (${c.kind}): malformed counter ${m0} → ${engine.stats().malformed}`);
      if (after.all !== before.all) violations.push(`case ${i} (${c.kind} ${c.detail ?? ''}): a malformed packet changed the view: ${diff(before, after)}`);
    } else if (!claim && after.ours !== before.ours) {
      violations.push(`case ${i} (${c.kind} ${c.detail ?? ''}): not a claim on our names, yet ${before.ours} → ${after.ours}`);
    }
    if (genuine() !== genuineView) violations.push(`case ${i} (${c.kind} ${c.detail ?? ''}): the genuine instance changed: ${genuine()}`);
    if (violations.length > 20) break;
    // Time moves on: probes, announcements, rate-limit windows, cache expiry and refreshes run.
    if (i % 5 === 4) {
      try {
        clock.advance(100);
        await flushMicrotasks();
      } catch (err) {
        violations.push(`around case ${i}: a timer threw ${(err as Error).stack}`);
      }
    }
    // The genuine peer answers the browser's refresh queries now and then.
    if (i % 500 === 499) {
      feedGenuine();
      await flushMicrotasks();
    }
    if (i > 0 && i % 5000 === 0) log(`# … ${i} cases, malformed=${malformed}, cache=${engine.stats().cacheSize}, rss=${Math.round(process.memoryUsage().rss / 1048576)} MB`);
  }
  // After the storm: our registration settles as announced under a name of ours, genuine is intact.
  clock.advance(10_000);
  await flushMicrotasks();
  if (reg.state !== 'announced') violations.push(`after fuzzing our registration is ${reg.state} (${reg.stateReason})`);
  if (genuine() !== genuineView) violations.push(`after fuzzing the genuine instance is ${genuine()}`);
  const st = engine.stats();
  if (st.malformed !== malformed) violations.push(`engine counted ${st.malformed} malformed, the decoder rejected ${malformed}`);
  const report: FuzzReport = {
    cases: Math.min(n, current + 1), malformed, accepted: Math.min(n, current + 1) - malformed, byKind, claims, renames,
    reannounced: st.reannouncedAfterSpoofedGoodbye - reannounced0, handlerErrors, violations, ms: Date.now() - t0,
  };
  log(`# fuzz seed=0x${seed.toString(16)}: ${report.cases} cases in ${report.ms} ms; malformed=${malformed} (counted ${st.malformed}), accepted=${report.accepted}, ` +
    `claims on our names=${claims} → renames=${renames}, spoofed goodbyes re-announced=${report.reannounced}, packets we sent=${sentPackets}, ` +
    `cache=${st.cacheSize} evicted=${st.cacheEvicted}, rateLimited=${st.rateLimited}, our name now ${reg.instance} on ${engine.hostName}`);
  log(`# by kind: ${Object.entries(byKind).map(([k, v]) => `${k} ${v.cases}/${v.malformed}m`).join(', ')}`);
  browser.stop();
  await engine.stop();
  return report;
}

function targetsOf(engine: MdnsEngine, reg: ReturnType<MdnsEngine['publish']>) {
  return {
    ourInstance: reg.fullName,
    ourHost: engine.hostName,
    ourAddress: '127.0.0.1',
    ourSrv: { priority: 0, weight: 0, port: 6379, target: engine.hostName },
    browsedType: '_redis._tcp.local',
  };
}

function view(engine: MdnsEngine, reg: ReturnType<MdnsEngine['publish']>, browser: ReturnType<MdnsEngine['browse']>) {
  const ours = JSON.stringify([reg.instance, reg.state, engine.hostName]);
  const instances = browser.instances().map((i) => `${i.fullName}:${i.port}@${i.addresses.join(',')}+${Object.keys(i.txt).length}txt`).sort();
  const all = JSON.stringify([ours, instances, engine.stats().cacheSize]);
  return { ours, instances, cacheSize: engine.stats().cacheSize, all };
}

/** What differs between two views, briefly. */
function diff(a: ReturnType<typeof view>, b: ReturnType<typeof view>): string {
  const out: string[] = [];
  if (a.ours !== b.ours) out.push(`ours ${a.ours} → ${b.ours}`);
  if (a.cacheSize !== b.cacheSize) out.push(`cache ${a.cacheSize} → ${b.cacheSize}`);
  const gone = a.instances.filter((x) => !b.instances.includes(x));
  const added = b.instances.filter((x) => !a.instances.includes(x));
  if (gone.length) out.push(`instances gone: ${gone.join(' ')}`);
  if (added.length) out.push(`instances added: ${added.join(' ')}`);
  return out.join('; ');
}

/** A well-formed packet that may legitimately move our names: a competing record or a probe. */
function isClaim(p: MdnsPacket, engine: MdnsEngine, reg: ReturnType<MdnsEngine['publish']>): boolean {
  const ourSrv: MdnsRecord = { name: reg.fullName, type: 'SRV', ttl: 0, data: { priority: 0, weight: 0, port: 6379, target: engine.hostName } };
  const ourTxt: MdnsRecord = { name: reg.fullName, type: 'TXT', ttl: 0, data: [Buffer.alloc(0)] };
  if (p.type === 'query') {
    return p.authorities.length > 0 && p.questions.some((q) => sameName(q.name, reg.fullName) || sameName(q.name, engine.hostName));
  }
  return [...p.answers, ...p.additionals].some((r) => {
    if (r.ttl === 0) return false;
    if (sameName(r.name, engine.hostName) && r.type === 'A') return r.data !== '127.0.0.1';
    if (!sameName(r.name, reg.fullName)) return false;
    if (r.type === 'SRV') return recordKey(r) !== recordKey(ourSrv);
    if (r.type === 'TXT') return recordKey(r) !== recordKey(ourTxt);
    return false;
  });
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 3; i++) await Promise.resolve();
}

