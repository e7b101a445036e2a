import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../base/clock.js';
import { LivenessAnswerer } from './liveness-answerer.js';
import { Cluster } from './cluster.js';
import type { Endpoint } from './endpoint.js';
import { encodeLiveness, livenessPortOf, REPLY, REQUEST } from './liveness-wire.js';
import { HostLiveness, type CreateLivenessTransport, type LivenessTransportHandlers, udpTransport } from './host-liveness.js';
import { seeded, spec, waitFor } from '../testing/tcp-kit.js';

/**
 * A peer host on a simulated network: its answerer answers after `rttMs` unless the host is
 * down, refuses (no ambassador: ICMP port unreachable), or a datagram is lost either way.
 */
class FakePeer {
  up = true;
  refusing = false;
  rttMs = 1;
  /** Chance that a datagram is lost, each way. */
  loss = 0;
  serving = new Set<number>();
  readonly answerer: LivenessAnswerer;
  /** Transports opened to this peer, and datagrams it received. */
  opened = 0;
  received = 0;
  handlers: LivenessTransportHandlers | undefined;

  constructor(private readonly clock: FakeClock, private readonly random: () => number) {
    this.answerer = new LivenessAnswerer({ serving: (p) => this.serving.has(p), clock, maxRepliesPerSourcePerSecond: 1e6, maxRepliesPerSecond: 1e6 });
  }

  transport: CreateLivenessTransport = (_address, _port, h) => {
    this.opened++;
    this.handlers = h;
    let closed = false;
    return {
      send: (d) => {
        if (closed || !this.up) return;
        if (this.random() < this.loss) return;
        this.received++;
        if (this.refusing) return void this.clock.setTimeout(() => !closed && h.error('ECONNREFUSED'), this.rttMs);
        const reply = this.answerer.answer(d, '198.18.1.9');
        if (!reply || this.random() < this.loss) return;
        this.clock.setTimeout(() => !closed && this.up && h.message(reply), this.rttMs);
      },
      close: () => {
        closed = true;
      },
    };
  };
}

function setup(opts: { seed?: number; loss?: number } = {}) {
  const clock = new FakeClock();
  const random = seeded(opts.seed ?? 7);
  const peer = new FakePeer(clock, random);
  peer.loss = opts.loss ?? 0;
  const liveness = new HostLiveness({ clock, afterPendingIo: (fn) => fn(), createTransport: peer.transport });
  const cluster = new Cluster('redis');
  liveness.watch(cluster, (ep) => (ep.source === 'mdns' ? livenessPortOf(ep.txt) : undefined));
  const downs: string[] = [];
  const downAt: number[] = [];
  cluster.on('endpoint-down', (ep, why) => {
    downs.push(`${ep.id} ${why}`);
    downAt.push(clock.now());
  });
  return { clock, peer, liveness, cluster, downs, downAt };
}

const viaAmbassador = (id: string, port: number, probe = 40000, host = '198.18.1.9') =>
  spec(id, port, { source: 'mdns', host, txt: { hostprobe: String(probe) } });

test('one probe per peer host, however many of its endpoints and clusters use it', () => {
  const { clock, peer, liveness, cluster } = setup();
  const other = new Cluster('cache');
  liveness.watch(other, (ep) => livenessPortOf(ep.txt));
  peer.serving = new Set([6379, 6380, 11211]);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379), viaAmbassador('b', 6380)]);
  other.setEndpoints('mdns', [viaAmbassador('m', 11211)]);
  clock.advance(60_000);
  assert.equal(peer.opened, 1, 'one flow to the host');
  // 500 ms ± 10 % apart: about 120 in a minute, for three endpoints in two clusters
  assert.ok(peer.received >= 110 && peer.received <= 135, `${peer.received} probes in 60 s`);
  assert.equal(liveness.stats.probesSent, peer.received);
  assert.equal(liveness.stats.misses, 0);
  for (const ep of [...cluster.endpoints(), ...other.endpoints()]) {
    assert.equal(ep.healthOrigin, 'host-probe');
    assert.equal(ep.state, 'up');
  }
  // Endpoints without a probe port (Avahi, --static) are not the liveness's.
  cluster.setEndpoints('static', [spec('s', 7000)]);
  assert.equal(cluster.get('static/s')!.healthOrigin, 'passive');
  liveness.stop();
  assert.equal(liveness.hosts().length, 0);
});

test('a silent host is down after minSilenceMs of misses; endpoints come back with it', () => {
  const { clock, peer, cluster, downs, downAt, liveness } = setup();
  peer.serving = new Set([6379, 6380]);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379), viaAmbassador('b', 6380)]);
  clock.advance(5_000);
  const cut = clock.now();
  peer.up = false; // cable cut: no answer, no error
  clock.advance(3_000);
  assert.equal(downs.length, 2, downs.join());
  const at = downAt[0]! - cut;
  // the first unanswered probe leaves within one interval of the cut; the verdict 800 ms after it
  assert.ok(at >= 800 && at <= 550 + 800 + 100, `detected ${at} ms after the cut`);
  assert.match(downs[0]!, /host-probe/);
  const host = liveness.hosts()[0]!;
  assert.equal(host.alive, false);
  assert.equal(host.downCode, 'ESILENT');
  // Down: probed at the normal pace, not in a hurry.
  const sent = liveness.stats.probesSent;
  clock.advance(5_000);
  assert.ok(liveness.stats.probesSent - sent <= 11, `${liveness.stats.probesSent - sent} probes in 5 s while down`);
  peer.up = true;
  clock.advance(600);
  assert.deepEqual(cluster.healthy().map((e) => e.id), ['a', 'b']);
  assert.equal(cluster.get('mdns/a')!.flaps, 1);
  // The outage was no loss.
  assert.ok(host.loss.rate < 0.02, `loss estimate untouched by the outage (${host.loss.rate})`);
});

test('ICMP port unreachable (the ambassador is gone, the host is not): its endpoints are handed over, not condemned', () => {
  const { clock, peer, cluster, downs, liveness } = setup();
  peer.serving = new Set([6379]);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379), viaAmbassador('b', 6380)]);
  const handed: string[] = [];
  liveness.on('handover', (ep) => handed.push(`${ep.id} ${liveness.isOrphaned(ep)}`));
  clock.advance(2_000);
  const b = cluster.get('mdns/b')!;
  assert.equal(b.downReason, 'source-check', 'its ambassador did not serve 6380');
  peer.refusing = true;
  clock.advance(600);
  assert.deepEqual(downs, ['b source-check'], 'nothing more went down');
  const host = liveness.hosts()[0]!;
  assert.equal(host.orphaned, true);
  assert.equal(b.state, 'up', 'the source check of a gone ambassador no longer counts');
  assert.deepEqual(handed, ['a true', 'b true']);
  // Orphaned: probed at the normal pace (its ambassador may come back on the same port), never convicted.
  const sent = liveness.stats.probesSent;
  clock.advance(10_000);
  assert.ok(liveness.stats.probesSent - sent <= 22);
  assert.deepEqual(downs, ['b source-check']);
  // It is back on the same port: host probes vouch again.
  peer.refusing = false;
  clock.advance(600);
  assert.equal(host.orphaned, false);
  assert.deepEqual(handed, ['a true', 'b true', 'a false', 'b false']);
  assert.equal(cluster.get('mdns/a')!.healthOrigin, 'host-probe');
  assert.equal(b.downReason, 'source-check');
});

test('host or network unreachable is proof: down at once', () => {
  const { clock, peer, cluster, downs, liveness } = setup();
  peer.serving = new Set([6379]);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379)]);
  clock.advance(2_000);
  peer.handlers!.error('EHOSTUNREACH');
  assert.deepEqual(downs, ['a host-probe']);
  assert.equal(liveness.hosts()[0]!.downCode, 'EHOSTUNREACH');
});

test('10 % loss each way: no false verdict in ten minutes; a cut is still found within ~1.5 s', () => {
  const { clock, peer, cluster, downs, downAt, liveness } = setup({ loss: 0.1, seed: 11 });
  peer.serving = new Set([6379]);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379)]);
  clock.advance(600_000);
  assert.deepEqual(downs, [], 'never down while it answers');
  const host = liveness.hosts()[0]!;
  assert.ok(host.loss.rate > 0.1 && host.loss.rate < 0.3, `learned ~19 % round-trip loss (${host.loss.rate})`);
  const needed = liveness.missesNeeded(host);
  assert.ok(needed >= 5, `asks for ${needed} misses in a row`);
  const cut = clock.now();
  peer.up = false;
  clock.advance(3_000);
  assert.deepEqual(downs, ['a host-probe']);
  // the first unanswered probe within one interval of the cut; the verdict 800 ms (or `needed`
  // misses 100 ms apart, whichever is longer) after it
  const at = downAt[0]! - cut;
  assert.ok(at <= 550 + Math.max(800, needed * 100) + 100, `detected ${at} ms after the cut`);
  console.log(`# 10 % loss each way: learned ${host.loss.rate.toFixed(3)} round-trip loss, ${needed} misses to convict, cut found after ${at} ms (simulated)`);
});

test('30 % loss each way: the host keeps its endpoints', () => {
  const { clock, peer, cluster, downs, liveness } = setup({ loss: 0.3, seed: 5 });
  peer.serving = new Set([6379]);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379)]);
  clock.advance(600_000);
  assert.deepEqual(downs, []);
  const host = liveness.hosts()[0]!;
  assert.ok(host.loss.rate > 0.35, `learned heavy loss (${host.loss.rate})`);
  assert.ok(liveness.missesNeeded(host) >= 10);
  console.log(`# 30 % loss each way: learned ${host.loss.rate.toFixed(3)}, ${liveness.missesNeeded(host)} misses to convict, ${liveness.stats.probesSent} probes in 10 min (simulated)`);
});

test('loss that jumps from none to 30 % each way is believed in time: no false verdict', () => {
  for (const seed of [1, 2, 3]) {
    const { clock, peer, cluster, downs } = setup({ loss: 0, seed });
    peer.serving = new Set([6379]);
    cluster.setEndpoints('mdns', [viaAmbassador('a', 6379)]);
    clock.advance(60_000);
    peer.loss = 0.3;
    clock.advance(300_000);
    assert.deepEqual(downs, [], `seed ${seed}`);
  }
});

test('a stranger cannot keep a dead host alive: replies must echo our unguessable nonce', () => {
  const { clock, peer, cluster, downs, liveness } = setup();
  peer.serving = new Set([6379]);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379)]);
  clock.advance(1_000);
  peer.up = false;
  // Every 50 ms a forged reply (and a reflected request) reaches the probe socket.
  let forged = 0;
  const forge = (): void => {
    forged++;
    peer.handlers!.message(encodeLiveness(REPLY, Buffer.from(`f0rg3d${forged % 100}`.padEnd(8, 'x')), [{ port: 6379, status: 1 }]));
    peer.handlers!.message(encodeLiveness(REQUEST, Buffer.alloc(8), [{ port: 6379 }]));
    if (forged < 100) clock.setTimeout(forge, 50);
  };
  forge();
  clock.advance(3_000);
  assert.deepEqual(downs, ['a host-probe'], 'convicted despite the forgeries');
  assert.ok(liveness.stats.ignored >= 2 * 50);
});

test('the source check rides on the reply: a port its ambassador stopped serving is down, the others stay', () => {
  const { clock, peer, cluster, downs } = setup();
  peer.serving = new Set([6379, 6380]);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379), viaAmbassador('b', 6380)]);
  clock.advance(1_000);
  peer.serving.delete(6380); // its target stopped accepting; the goodbye got lost
  clock.advance(600);
  assert.deepEqual(downs, ['b source-check']);
  assert.deepEqual(cluster.healthy().map((e) => e.id), ['a']);
  peer.serving.add(6380);
  clock.advance(600);
  assert.deepEqual(cluster.healthy().map((e) => e.id), ['a', 'b']);
  assert.equal(cluster.get('mdns/b')!.flaps, 0, 'a withdrawal by the source is no flap');
});

test('a late reply is a sign of life; a slow path gets a longer deadline', () => {
  const { clock, peer, cluster, downs, liveness } = setup();
  peer.serving = new Set([6379]);
  peer.rttMs = 250; // longer than missAfterMs (100)
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379)]);
  clock.advance(60_000);
  assert.deepEqual(downs, []);
  const host = liveness.hosts()[0]!;
  assert.ok(Math.abs(host.rttMs! - 250) < 1);
  const misses = liveness.stats.misses;
  clock.advance(60_000);
  assert.equal(liveness.stats.misses, misses, 'the deadline adapted to the path: no more misses');
});

test('endpoints follow their announcement: a new probe port or address moves them, removal ends the probing', () => {
  const { clock, peer, cluster, liveness } = setup();
  peer.serving = new Set([6379]);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379, 40000)]);
  clock.advance(1_000);
  peer.up = false;
  clock.advance(2_000);
  const a = cluster.get('mdns/a') as Endpoint;
  assert.equal(a.downReason, 'host-probe');
  // The peer's ambassador restarted on another probe port: a fresh judgement.
  peer.up = true;
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379, 40001)]);
  assert.equal(liveness.hosts().length, 1);
  assert.equal(liveness.hosts()[0]!.probePort, 40001);
  clock.advance(100);
  assert.equal(a.state, 'up');
  // No more probe port (say an Avahi record took its place): not ours any more.
  cluster.setEndpoints('mdns', [spec('a', 6379, { source: 'mdns', host: '198.18.1.9' })]);
  assert.equal(a.healthOrigin, 'passive');
  assert.equal(liveness.hosts().length, 0);
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379)]);
  assert.equal(liveness.hosts().length, 1);
  cluster.setEndpoints('mdns', []);
  assert.equal(liveness.hosts().length, 0);
  const sent = liveness.stats.probesSent;
  clock.advance(10_000);
  assert.equal(liveness.stats.probesSent, sent, 'nothing probed once nothing uses the host');
});

test('over real UDP on 127.0.0.1: an answerer answers; once it is gone, "port unreachable" hands its endpoints over', async (t) => {
  const answerer = new LivenessAnswerer({ serving: (p) => p === 6379 });
  const port = await answerer.start();
  const liveness = new HostLiveness({ intervalMs: 50 });
  const cluster = new Cluster('redis');
  t.after(() => {
    liveness.stop();
    answerer.stop();
    cluster.close();
  });
  liveness.watch(cluster, (ep) => livenessPortOf(ep.txt));
  cluster.setEndpoints('mdns', [viaAmbassador('a', 6379, port, '127.0.0.1'), viaAmbassador('b', 7000, port, '127.0.0.1')]);
  const [a, b] = cluster.endpoints() as [Endpoint, Endpoint];
  await waitFor(() => liveness.stats.repliesReceived >= 3, 5000, 'replies');
  assert.equal(a.state, 'up');
  assert.equal(b.downReason, 'source-check', 'the answerer does not serve 7000');
  assert.equal(answerer.stats.replies, liveness.stats.repliesReceived);
  answerer.stop();
  await waitFor(() => liveness.isOrphaned(a), 5000, 'orphaned on ICMP port unreachable');
  assert.equal(a.state, 'up');
  assert.equal(b.state, 'up', 'a gone ambassador vouches for nothing, either way');
});

test('udpTransport: a connect the kernel refuses is reported as an error, and sending after it never throws', async () => {
  // Linux refuses connect() to the broadcast address: EACCES without SO_BROADCAST, or
  // ENETUNREACH first where there is no route at all (the test runner's namespace). Node then
  // leaves the socket unconnected.
  const errors: string[] = [];
  const t = udpTransport('255.255.255.255', 9, { message: () => {}, error: (code) => errors.push(code) });
  try {
    t.send(Buffer.from('probe'));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(errors.length, 1, errors.join());
    assert.match(errors[0]!, /^(EACCES|ENETUNREACH)$/);
    assert.doesNotThrow(() => t.send(Buffer.from('probe again')));
  } finally {
    t.close();
  }
});
