// The client session's state machine, one transition of its table (session.ts) at a time: real
// sockets on 127.0.0.1, a real cluster and pick, the deadlines on a FakeClock (so a race point or
// a timeout is a clock step, not a wait), and a host that records what the session reports.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { RoundRobinBalancer } from '../cluster/balancer.js';
import { Cluster } from '../cluster/cluster.js';
import type { Endpoint } from '../cluster/endpoint.js';
import { readBytes, refusedPort, spec, startServer, waitFor } from '../testing/tcp-kit.js';
import { FakeClock } from '../base/clock.js';
import type { ConnectAttempt } from './connect.js';
import { DeadlineQueue } from './deadlines.js';
import { HandshakeError, type ClientHello, type Greeting, type Handshake } from './handshake.js';
import { pickEndpoint, type FailedTries, type Pick } from './pick.js';
import type { PipeResult } from './pipe.js';
import { ClientSession, type ConnectFailurePhase, type EndReason, type SessionHost, type SessionRules } from './session.js';

const RULES: SessionRules = {
  connectTimeoutMs: 3000,
  raceDelayMs: 250,
  maxConnectAttempts: 5,
  noEndpointWaitMs: 5000,
  handshake: undefined,
  greet: undefined,
  handshakeTimeoutMs: 5000,
  keepConnectionsOnRemoval: false,
  idleTimeoutMs: undefined,
  keepAliveInitialDelayMs: undefined,
};

/** Records what its sessions report, in order, as short lines. */
class RecordingHost implements SessionHost {
  readonly clock = new FakeClock();
  readonly deadlines = new DeadlineQueue(this.clock);
  readonly cluster = new Cluster('svc', { outlier: false });
  readonly balancer = new RoundRobinBalancer();
  readonly waiting = new Set<ClientSession>();
  readonly log: string[] = [];
  readonly faults: unknown[] = [];
  /** Every socket create() made, in order. */
  readonly made: net.Socket[] = [];
  rules: SessionRules;
  /** Throws from the report named here (a bug in a listener of it). */
  throwIn: string | undefined;

  constructor(
    rules: Partial<SessionRules>,
    private readonly dial: (ep: Endpoint, n: number) => net.Socket,
  ) {
    this.rules = { ...RULES, ...rules };
    this.cluster.on('changed', () => {
      for (const s of [...this.waiting]) s.wake(this.cluster.healthy());
    });
  }

  readonly create = (ep: Endpoint): net.Socket => {
    const s = this.dial(ep, this.made.length);
    this.made.push(s);
    return s;
  };

  private note(what: string, line: string): void {
    this.log.push(line);
    if (this.throwIn === what) throw new Error(`bug in ${what}`);
  }

  pick(busy: readonly Endpoint[], failed: FailedTries): Pick {
    return pickEndpoint(this.cluster, this.balancer, Infinity, busy, failed);
  }
  /** Runs after each piece of evidence (a listener ejecting the endpoint and cancelling connects to it). */
  afterEvidence: ((ep: Endpoint, code: string | undefined) => void) | undefined;
  evidence(ep: Endpoint, code: string | undefined): void {
    this.note('evidence', `evidence ${ep.id} ${code ?? 'ok'}`);
    this.afterEvidence?.(ep, code);
  }
  waitForEndpoint(s: ClientSession): void {
    this.waiting.add(s);
  }
  stopWaiting(s: ClientSession): void {
    this.waiting.delete(s);
  }
  accepted(): void {
    this.note('accepted', 'accepted');
  }
  connectFailed(_s: ClientSession, ep: Endpoint, code: string, phase: ConnectFailurePhase): void {
    this.note('connectFailed', `failed ${ep.id} ${code}${phase === 'handshake' ? ' (handshake)' : ''}`);
  }
  failover(_s: ClientSession, from: Endpoint, to: Endpoint): void {
    this.note('failover', `failover ${from.id}->${to.id}`);
  }
  raced(_s: ClientSession, ep: Endpoint): void {
    this.note('raced', `raced ${ep.id}`);
  }
  lost(_s: ClientSession, attempt: ConnectAttempt): void {
    this.note('lost', `lost ${attempt.ep.id}`);
    attempt.drop();
  }
  opened(s: ClientSession): void {
    this.note('opened', `opened ${s.endpoint!.id} #${s.attempts}`);
  }
  closed(s: ClientSession, result: PipeResult): void {
    s.markClosed(result);
  }
  ended(s: ClientSession, reason: EndReason): void {
    s.client.destroy();
    s.markClosed();
    this.note('ended', `ended ${reason ?? 'quietly'}`);
  }
  refused(s: ClientSession, reply: Buffer): void {
    s.client.destroy();
    s.markClosed();
    this.note('refused', `refused '${reply.toString()}'`);
  }
  faulted(_s: ClientSession, error: unknown): void {
    this.faults.push(error);
  }
}

interface Setup {
  host: RecordingHost;
  s: ClientSession;
  /** The client's end of its connection. */
  peer: net.Socket;
  /** Endpoints by id. */
  ep: Record<string, Endpoint>;
}

/** A session for a fresh client, with endpoints `eps` (id → port) in its cluster; started. */
async function session(
  t: TestContext,
  eps: [string, number][],
  rules: Partial<SessionRules> = {},
  dial: (ep: Endpoint, n: number) => net.Socket = (ep) => net.connect({ host: ep.host, port: ep.port }),
): Promise<Setup> {
  const host = new RecordingHost(rules, dial);
  host.cluster.setEndpoints('static', eps.map(([id, port]) => spec(id, port)));
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const peer = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  peer.on('error', () => {});
  const client = await accepted;
  server.close();
  client.read(0); // as ProxyServer does: bytes held, a reset noticed
  const s = new ClientSession(host, client);
  t.after(() => {
    s.close();
    peer.destroy();
    for (const m of host.made) m.destroy();
    host.cluster.close();
  });
  s.start();
  const ep: Record<string, Endpoint> = {};
  for (const e of host.cluster.endpoints()) ep[e.id] = e;
  return { host, s, peer, ep };
}

async function upstream(t: TestContext): Promise<number> {
  const up = await startServer({ greeting: 'up:' });
  t.after(() => up.close());
  return up.port;
}

const hung = (): net.Socket => new net.Socket(); // a connect that never completes (a SYN dropped)
const opened = (s: ClientSession): Promise<void> => waitFor(() => s.phase === 'open', 3000, 'open');
const ended = (s: ClientSession): Promise<void> => waitFor(() => s.phase === 'closed', 3000, 'closed');

test('pick → connect → open: the first endpoint connects (one attempt, its deadline cleared)', async (t) => {
  const { host, s, peer } = await session(t, [['a', await upstream(t)]]);
  assert.equal(s.phase, 'connect');
  assert.equal(host.deadlines.size, 1, 'the race point');
  await opened(s);
  assert.equal(s.state, 'open');
  assert.equal(host.deadlines.size, 0);
  assert.deepEqual(host.log, ['accepted', 'evidence a ok', 'opened a #1']);
  assert.equal((await readBytes(peer, 3)).toString(), 'up:', 'piped');
});

test('connect → pick → connect: a refused connect fails over to the next endpoint', async (t) => {
  const { host, s } = await session(t, [['dead', await refusedPort()], ['b', await upstream(t)]]);
  await opened(s);
  assert.deepEqual(host.log, ['accepted', 'evidence dead ECONNREFUSED', 'failed dead ECONNREFUSED', 'failover dead->b', 'evidence b ok', 'opened b #2']);
});

test('connect: a socket that cannot be made fails at once, and the client moves on', async (t) => {
  const good = await upstream(t);
  const { host, s } = await session(t, [['x', 1], ['b', good]], {}, (ep) => {
    if (ep.id === 'x') throw Object.assign(new Error('out of descriptors'), { code: 'EMFILE' });
    return net.connect({ host: ep.host, port: ep.port });
  });
  await opened(s);
  assert.deepEqual(host.log.slice(1, 4), ['evidence x EMFILE', 'failed x EMFILE', 'failover x->b']);
});

test('connect → (timeout) → pick: no race when the race delay is not shorter than the timeout', async (t) => {
  const good = await upstream(t);
  const { host, s } = await session(t, [['slow', 1], ['b', good]], { connectTimeoutMs: 300, raceDelayMs: 300 }, (ep) =>
    ep.id === 'slow' ? hung() : net.connect({ host: ep.host, port: ep.port }));
  host.clock.advance(299);
  assert.equal(s.phase, 'connect');
  host.clock.advance(1);
  assert.deepEqual(host.log.slice(1, 4), ['evidence slow ETIMEDOUT', 'failed slow ETIMEDOUT', 'failover slow->b']);
  assert.ok(host.made[0]!.destroyed, 'the timed-out socket is closed');
  await opened(s);
});

test('connect → race at the race point; race → open when the racer connects first (the slow one dropped, not blamed)', async (t) => {
  const good = await upstream(t);
  const { host, s } = await session(t, [['slow', 1], ['b', good]], {}, (ep) => (ep.id === 'slow' ? hung() : net.connect({ host: ep.host, port: ep.port })));
  host.clock.advance(249);
  assert.equal(s.phase, 'connect');
  host.clock.advance(1);
  assert.equal(s.phase, 'race');
  assert.deepEqual(host.log, ['accepted', 'raced b']);
  await opened(s);
  assert.deepEqual(host.log, ['accepted', 'raced b', 'lost slow', 'evidence b ok', 'opened b #2']);
  assert.ok(host.made[0]!.destroyed, 'the losing attempt given to the host (which closed it)');
  assert.equal(host.deadlines.size, 0);
});

test('connect with its attempts used up: no race point, only its timeout', async (t) => {
  const good = await upstream(t);
  const { host, s } = await session(t, [['slow', 1], ['b', good]], { maxConnectAttempts: 1 }, (ep) =>
    ep.id === 'slow' ? hung() : net.connect({ host: ep.host, port: ep.port }));
  host.clock.advance(250);
  assert.equal(s.phase, 'connect');
  assert.deepEqual(host.log, ['accepted'], 'not raced');
  assert.equal(host.made.length, 1);
  assert.equal(host.deadlines.size, 1, 'its timeout');
  host.clock.advance(2749);
  assert.equal(s.phase, 'connect');
  host.clock.advance(1);
  assert.equal(s.phase, 'closed');
  assert.deepEqual(host.log.slice(1), ['evidence slow ETIMEDOUT', 'failed slow ETIMEDOUT', 'ended all-failed']);
  assert.ok(host.made[0]!.destroyed);
});

test('connect at the race point with nothing to race (its endpoint left meanwhile): stays connect until its timeout', async (t) => {
  const { host, s, ep } = await session(t, [['slow', 1]], {}, hung);
  host.cluster.setEndpoints('static', []); // this host cancels nothing: the attempt stays pending
  assert.ok(ep.slow!.removed);
  host.clock.advance(250);
  assert.equal(s.phase, 'connect');
  assert.deepEqual(host.log, ['accepted'], 'not raced');
  assert.equal(host.made.length, 1);
  assert.equal(host.deadlines.size, 1, 'its timeout');
  host.clock.advance(2749);
  assert.equal(s.phase, 'connect');
  host.clock.advance(1);
  assert.deepEqual(host.log.slice(1, 3), ['evidence slow ETIMEDOUT', 'failed slow ETIMEDOUT']);
  assert.ok(host.made[0]!.destroyed);
  assert.equal(s.phase, 'wait', 'nothing else to try');
});

test('race: with one endpoint the racer goes to the same one; the first completing after all carries the client', async (t) => {
  const good = await upstream(t);
  let late: net.Socket | undefined;
  const { host, s } = await session(t, [['only', good]], {}, (ep, n) => {
    if (n === 0) return (late = hung());
    return hung(); // the racer never completes
  });
  host.clock.advance(250);
  assert.equal(s.phase, 'race');
  assert.deepEqual(host.log, ['accepted', 'raced only']);
  late!.connect({ host: '127.0.0.1', port: good }); // the first SYN's retransmission got through
  await opened(s);
  assert.ok(host.made[1]!.destroyed, 'the racer closed');
  assert.deepEqual(host.log.slice(2), ['lost only', 'evidence only ok', 'opened only #2']);
});

test('race → connect: the racer fails; the first goes on alone, raced again since it is past its race point', async (t) => {
  const dead = await refusedPort();
  const { host, s } = await session(t, [['slow', 1], ['dead', dead], ['c', 2]], {}, (ep) =>
    ep.id === 'dead' ? net.connect({ host: ep.host, port: ep.port }) : hung());
  host.clock.advance(250);
  assert.deepEqual(host.log, ['accepted', 'raced dead']);
  await waitFor(() => host.log.includes('failed dead ECONNREFUSED'), 3000, 'racer refused');
  assert.equal(s.phase, 'race', 'raced again at once');
  assert.deepEqual(host.log.slice(2), ['evidence dead ECONNREFUSED', 'failed dead ECONNREFUSED', 'failover dead->c', 'raced c']);
  assert.equal(s.attempts, 3);
});

test('race → connect: the older attempt times out (ETIMEDOUT); the racer goes on alone until its own race point', async (t) => {
  const { host, s } = await session(t, [['a', 1], ['b', 2]], { connectTimeoutMs: 1000, raceDelayMs: 600, maxConnectAttempts: 3 }, hung);
  host.clock.advance(600);
  assert.equal(s.phase, 'race');
  host.clock.advance(400); // a's timeout; b started 400 ms ago
  assert.equal(s.phase, 'connect');
  assert.deepEqual(host.log.slice(1), ['raced b', 'evidence a ETIMEDOUT', 'failed a ETIMEDOUT']);
  assert.ok(host.made[0]!.destroyed);
  host.clock.advance(200); // b's race point
  assert.equal(s.phase, 'race');
  assert.deepEqual(host.log.slice(4), ['failover a->b', 'raced b'], 'nothing else usable and fresh: a second SYN to b');
  host.clock.advance(400); // b's first attempt times out; attempts used up: its second goes on alone, not raced
  assert.equal(s.phase, 'connect');
  assert.deepEqual(host.log.slice(6), ['evidence b ETIMEDOUT', 'failed b ETIMEDOUT']);
  host.clock.advance(600);
  assert.equal(s.phase, 'closed');
  assert.deepEqual(host.log.slice(-2), ['failed b ETIMEDOUT', 'ended all-failed']);
});

test('connect → pick: a connect that completes to an endpoint that moved meanwhile is tried again where it is now, not blamed', async (t) => {
  const before = await upstream(t);
  const after = await upstream(t);
  let first: net.Socket | undefined;
  const { host, s, ep } = await session(t, [['a', before]], {}, (e, n) => (n === 0 ? (first = hung()) : net.connect({ host: e.host, port: e.port })));
  host.cluster.setEndpoints('static', [spec('a', after)]); // moved: a new port
  first!.connect({ host: '127.0.0.1', port: before }); // the old address still answers
  await opened(s);
  assert.deepEqual(host.log, ['accepted', 'evidence a ok', 'evidence a ok', 'opened a #2']);
  assert.ok(first!.destroyed, 'the connect to the old address is closed');
  assert.equal(s.endpointGeneration, ep.a!.generation);
  assert.equal(s.upstream?.remotePort, after);
});

test('connect → pick: an endpoint removed while connecting is left for another, not blamed', async (t) => {
  const good = await upstream(t);
  const other = await upstream(t);
  let first: net.Socket | undefined;
  const { host, s } = await session(t, [['a', good], ['b', other]], {}, (e, n) => (n === 0 ? (first = hung()) : net.connect({ host: e.host, port: e.port })));
  host.cluster.setEndpoints('static', [spec('b', other)]);
  first!.connect({ host: '127.0.0.1', port: good });
  await opened(s);
  assert.deepEqual(host.log, ['accepted', 'evidence a ok', 'evidence b ok', 'opened b #2']);
});

test('endpointGone: a pending attempt gives up (EENDPOINTDOWN, not blamed) and the client moves on', async (t) => {
  const good = await upstream(t);
  const { host, s, ep } = await session(t, [['a', 1], ['b', good]], {}, (e) => (e.id === 'a' ? hung() : net.connect({ host: e.host, port: e.port })));
  s.endpointGone(ep.b!); // not its endpoint: nothing
  assert.equal(s.phase, 'connect');
  s.endpointGone(ep.a!);
  assert.deepEqual(host.log.slice(1, 3), ['failed a EENDPOINTDOWN', 'failover a->b']);
  await opened(s);
});

test('re-entry: evidence that takes the endpoint down cancels the other attempt to it meanwhile; the session stays consistent', async (t) => {
  const dead = await refusedPort();
  const good = await upstream(t);
  const { host, s } = await session(t, [['only', good]], {}, (ep, n) =>
    n === 0 ? hung() : net.connect({ host: ep.host, port: n === 1 ? dead : good }));
  // As the listener does when a failure ejects an endpoint: its pending connects give up.
  host.afterEvidence = (ep, code) => {
    if (code === 'ECONNREFUSED') s.endpointGone(ep);
  };
  host.clock.advance(250); // the racer (to the same endpoint) is refused
  await opened(s);
  assert.deepEqual(host.log, [
    'accepted', 'raced only', 'evidence only ECONNREFUSED',
    'failed only EENDPOINTDOWN', 'failover only->only', // inside the evidence: the first attempt cancelled, a third started
    'failed only ECONNREFUSED',
    'evidence only ok', 'opened only #3',
  ]);
  assert.ok(host.made[0]!.destroyed && host.made[1]!.destroyed);
  assert.equal(host.deadlines.size, 0);
});

test('pick → wait → pick: nothing usable; the client goes on when an endpoint appears', async (t) => {
  const good = await upstream(t);
  const { host, s, peer } = await session(t, []);
  assert.equal(s.phase, 'wait');
  assert.ok(host.waiting.has(s));
  assert.equal(host.deadlines.size, 1);
  host.cluster.setEndpoints('static', [spec('late', good)]);
  assert.equal(s.phase, 'connect');
  assert.equal(host.waiting.size, 0);
  await opened(s);
  assert.equal((await readBytes(peer, 3)).toString(), 'up:');
});

test('wait: an endpoint that already failed for this client (same address) does not wake it; one that moved does', async (t) => {
  const dead = await refusedPort();
  const good = await upstream(t);
  const { host, s } = await session(t, [['a', dead]], { maxConnectAttempts: 5 });
  await waitFor(() => s.phase === 'wait', 3000, 'waiting after the failure');
  host.cluster.setEndpoints('static', [spec('a', dead, { label: 'a again' })]); // a change, not a move
  assert.equal(s.phase, 'wait');
  host.cluster.setEndpoints('static', [spec('a', good)]); // moved: a new port
  assert.equal(s.phase, 'connect');
  await opened(s);
  assert.deepEqual(host.log.slice(-3), ['failover a->a', 'evidence a ok', 'opened a #2']);
});

test('wait → closed at its deadline: no-endpoint, or all-failed when something failed', async (t) => {
  const { host, s } = await session(t, [], { noEndpointWaitMs: 1000 });
  host.clock.advance(999);
  assert.equal(s.phase, 'wait');
  host.clock.advance(1);
  assert.equal(s.phase, 'closed');
  assert.deepEqual(host.log, ['accepted', 'ended no-endpoint']);
  assert.equal(host.waiting.size, 0);
  const dead = await refusedPort();
  const second = await session(t, [['a', dead]], { noEndpointWaitMs: 1000 });
  await waitFor(() => second.s.phase === 'wait', 3000, 'waiting');
  second.host.clock.advance(1000);
  assert.deepEqual(second.host.log.slice(-1), ['ended all-failed']);
});

test('pick → closed: attempts used up (all-failed); every usable endpoint full (max-per-endpoint)', async (t) => {
  // Two backends (one host:port is one endpoint in a cluster).
  const { host, s } = await session(t, [['a', await refusedPort()], ['b', await refusedPort()]], { maxConnectAttempts: 2 });
  await ended(s);
  assert.deepEqual(host.log.slice(-2), ['failed b ECONNREFUSED', 'ended all-failed']);
  const full = new RecordingHost({}, () => hung());
  full.cluster.setEndpoints('static', [spec('a', 1)]);
  full.pick = (busy, failed) => pickEndpoint(full.cluster, full.balancer, 1, busy, failed);
  full.cluster.endpoints()[0]!.active = 1;
  const peer = new net.Socket();
  const s2 = new ClientSession(full, peer);
  s2.start();
  assert.deepEqual(full.log, ['accepted', 'ended max-per-endpoint']);
  full.cluster.close();
});

test('connect → handshake → open: the hook runs on the connected upstream; success is reported after it', async (t) => {
  const good = await upstream(t);
  let release!: () => void;
  const hook: Handshake = (up) => new Promise<void>((r) => (release = () => (up.write('AUTH\r\n'), r())));
  const { host, s } = await session(t, [['a', good]], { handshake: hook });
  await waitFor(() => s.phase === 'handshake', 3000, 'handshaking');
  assert.deepEqual(host.log, ['accepted'], 'no success before the handshake');
  assert.equal(host.deadlines.size, 1, 'the handshake timeout');
  release();
  await opened(s);
  assert.deepEqual(host.log, ['accepted', 'evidence a ok', 'opened a #1']);
});

test('handshake → pick: a failing handshake fails over; one that says nothing of the endpoint is not held against it', async (t) => {
  const hook: Handshake = async (_u, ep) => {
    if (ep.id === 'a') throw Object.assign(new Error('boom'), { code: 'EAUTH' });
    if (ep.id === 'b') throw new HandshakeError('LOADING', 'LOADING', { blameEndpoint: false });
  };
  const { host, s, ep } = await session(t, [['a', await upstream(t)], ['b', await upstream(t)], ['c', await upstream(t)]], { handshake: hook });
  await opened(s);
  assert.deepEqual(host.log.slice(1), [
    'evidence a EAUTH', 'failed a EAUTH (handshake)', 'failover a->b',
    'failed b LOADING (handshake)', 'failover b->c',
    'evidence c ok', 'opened c #3',
  ]);
  assert.equal(ep.b!.failures, 1, 'counted, not blamed');
});

test('handshake → closed: rejected (retry: false) ends the client with the verdict\'s message', async (t) => {
  const good = await upstream(t);
  const hook: Handshake = () => Promise.reject(new HandshakeError('upstream authentication failed (WRONGPASS)', 'WRONGPASS', { retry: false }));
  const { host, s } = await session(t, [['a', good], ['b', await upstream(t)]], { handshake: hook });
  await ended(s);
  assert.deepEqual(host.log.slice(-2), ['failed a WRONGPASS (handshake)', 'ended rejected']);
  assert.equal(s.lastFailure.message, 'upstream authentication failed (WRONGPASS)');
});

test('handshake: its deadline (ETIMEDOUT, the hook\'s signal aborted) and the upstream closing (ECONNRESET) fail it', async (t) => {
  const signals: AbortSignal[] = [];
  let upstreams: net.Socket[] = [];
  const hook: Handshake = (up, _ep, signal) => {
    signals.push(signal);
    upstreams.push(up);
    return new Promise<void>(() => {}); // never settles by itself
  };
  const { host, s } = await session(t, [['a', await upstream(t)], ['b', await upstream(t)]], { handshake: hook, handshakeTimeoutMs: 1000, maxConnectAttempts: 2 });
  await waitFor(() => s.phase === 'handshake', 3000, 'handshaking');
  host.clock.advance(1000);
  assert.equal(signals[0]!.aborted, true);
  assert.deepEqual(host.log.slice(1, 4), ['evidence a ETIMEDOUT', 'failed a ETIMEDOUT (handshake)', 'failover a->b']);
  await waitFor(() => upstreams.length === 2, 3000, 'second handshake');
  upstreams[1]!.destroy();
  await ended(s);
  assert.deepEqual(host.log.slice(-2), ['failed b ECONNRESET (handshake)', 'ended all-failed']);
  upstreams = [];
});

test('close() before open ends the session quietly in every phase: attempts dropped, deadline and wait cleared, handshake aborted', async (t) => {
  // connect
  const c1 = await session(t, [['a', 1]], {}, hung);
  c1.s.close();
  assert.equal(c1.s.phase, 'closed');
  assert.ok(c1.host.made[0]!.destroyed);
  assert.equal(c1.host.deadlines.size, 0);
  assert.deepEqual(c1.host.log, ['accepted', 'ended quietly']);
  // race
  const c2 = await session(t, [['a', 1], ['b', 2]], {}, hung);
  c2.host.clock.advance(250);
  assert.equal(c2.s.phase, 'race');
  c2.s.close();
  assert.ok(c2.host.made.every((m) => m.destroyed));
  assert.equal(c2.host.deadlines.size, 0);
  assert.deepEqual(c2.host.log.slice(-1), ['ended quietly']);
  // wait
  const c3 = await session(t, []);
  c3.s.close();
  assert.equal(c3.host.waiting.size, 0);
  assert.equal(c3.host.deadlines.size, 0);
  // handshake
  const good = await upstream(t);
  let signal: AbortSignal | undefined;
  const c4 = await session(t, [['a', good]], { handshake: (_u, _e, sig) => ((signal = sig), new Promise<void>(() => {})) });
  await waitFor(() => c4.s.phase === 'handshake', 3000, 'handshaking');
  c4.s.close();
  assert.equal(signal!.aborted, true);
  assert.ok(c4.host.made[0]!.destroyed);
  assert.deepEqual(c4.host.log, ['accepted', 'ended quietly']);
  // A client that resets while its connect is pending: the same.
  const c5 = await session(t, [['a', 1]], {}, hung);
  c5.peer.resetAndDestroy();
  await ended(c5.s);
  assert.deepEqual(c5.host.log, ['accepted', 'ended quietly']);
});

test('an exception in a transition is an internal error: reported once, the client closed, nothing thrown', async (t) => {
  // In a socket callback (the failover after a refused connect).
  const dead = await refusedPort();
  const good = await upstream(t);
  const a = await session(t, [['dead', dead], ['b', good]]);
  a.host.throwIn = 'failover';
  await ended(a.s);
  assert.equal(a.host.faults.length, 1);
  assert.match(String(a.host.faults[0]), /bug in failover/);
  assert.equal(a.host.made.length, 1, 'no attempt after the fault');
  await waitFor(() => a.peer.destroyed || a.peer.readableEnded, 3000, 'client closed');
  // In a deadline (the race point).
  const b = await session(t, [['a', 1], ['b', 2]], {}, hung);
  b.host.throwIn = 'raced';
  b.host.clock.advance(250);
  assert.equal(b.s.phase, 'closed');
  assert.equal(b.host.faults.length, 1);
  assert.ok(b.host.made.every((m) => m.destroyed));
  assert.equal(b.host.deadlines.size, 0);
  // Once open: the pipe is torn down.
  const c = await session(t, [['a', good]]);
  c.host.throwIn = 'opened';
  await waitFor(() => c.host.faults.length === 1, 3000, 'fault');
  await waitFor(() => c.s.state === 'closed', 3000, 'closed');
  assert.equal(c.s.result?.error, 'EINTERNAL');
});

/** A greeting the test settles by hand. */
function heldGreeting() {
  const g = {
    signal: undefined as AbortSignal | undefined,
    settle: undefined as ((hello: ClientHello | Error) => void) | undefined,
    greet: ((_client, signal) => {
      g.signal = signal;
      return new Promise<ClientHello>((resolve, reject) => (g.settle = (h) => (h instanceof Error ? reject(h) : resolve(h))));
    }) as Greeting,
  };
  return g;
}

test('greet → pick: nothing is picked before the greeting; its hello reaches the handshake', async (t) => {
  const g = heldGreeting();
  const hellos: unknown[] = [];
  const handshake: Handshake = async (_u, _ep, _signal, hello) => void hellos.push(hello);
  const { host, s, peer } = await session(t, [['a', await upstream(t)]], { greet: g.greet, handshake });
  assert.equal(s.phase, 'greet');
  assert.deepEqual(host.log, ['accepted']);
  assert.equal(host.made.length, 0);
  assert.equal(host.deadlines.size, 1, 'the greeting is bounded');
  g.settle!({ kind: 'session', hello: 'x' });
  await opened(s);
  assert.deepEqual(hellos, ['x']);
  assert.deepEqual(host.log, ['accepted', 'evidence a ok', 'opened a #1']);
  assert.equal((await readBytes(peer, 3)).toString(), 'up:');
  assert.equal(g.signal!.aborted, false, 'a greeting that ended well is not aborted');
});

test('greet → connect (routed): one attempt to its endpoint, not the balancer\'s, even when down; no handshake, no evidence', async (t) => {
  const good = await upstream(t);
  const dead = await refusedPort();
  const handshake: Handshake = async () => assert.fail('no handshake on a routed connection');
  const a = heldGreeting();
  let late: net.Socket | undefined;
  const ok = await session(t, [['first', dead], ['b', good]], { greet: a.greet, handshake }, () => (late = hung()));
  ok.host.cluster.reportConnectFailure(ok.ep.b!, 'ECONNREFUSED'); // its health says nothing here
  a.settle!({ kind: 'route', endpoint: ok.ep.b! });
  await waitFor(() => ok.s.phase !== 'greet', 3000, 'greeted');
  assert.equal(ok.s.phase, 'connect');
  ok.s.endpointGone(ok.ep.b!);
  assert.equal(ok.s.phase, 'connect', 'going down does not cancel it');
  ok.host.clock.advance(2999);
  assert.equal(ok.s.phase, 'connect', 'not raced');
  late!.connect({ host: '127.0.0.1', port: good });
  await opened(ok.s);
  assert.deepEqual(ok.host.log, ['accepted', 'opened b #1']);
  // Failed: closed, no other endpoint tried.
  const f = heldGreeting();
  const bad = await session(t, [['dead', dead], ['b', good]], { greet: f.greet });
  f.settle!({ kind: 'route', endpoint: bad.ep.dead! });
  await ended(bad.s);
  assert.deepEqual(bad.host.log, ['accepted', 'failed dead ECONNREFUSED', 'ended all-failed']);
  assert.equal(bad.host.made.length, 1);
});

test('greet → closed: refused with its reply; a failed, timed-out or abandoned greeting closes quietly and is aborted', async (t) => {
  const good = await upstream(t);
  const r = heldGreeting();
  const refused = await session(t, [['a', good]], { greet: r.greet });
  r.settle!({ kind: 'refuse', reply: Buffer.from('no') });
  await ended(refused.s);
  assert.deepEqual(refused.host.log, ['accepted', "refused 'no'"]);
  assert.equal(refused.host.deadlines.size, 0);
  // It failed (garbage, the client's FIN).
  const f = heldGreeting();
  const failed = await session(t, [['a', good]], { greet: f.greet });
  f.settle!(new Error('garbage'));
  await ended(failed.s);
  assert.deepEqual(failed.host.log, ['accepted', 'ended quietly']);
  assert.ok(failed.s.client.destroyed);
  // Timed out.
  const tg = heldGreeting();
  const slow = await session(t, [['a', good]], { greet: tg.greet, handshakeTimeoutMs: 700 });
  slow.host.clock.advance(699);
  assert.equal(slow.s.phase, 'greet');
  slow.host.clock.advance(1);
  assert.equal(slow.s.phase, 'closed');
  assert.ok(tg.signal!.aborted);
  assert.deepEqual(slow.host.log, ['accepted', 'ended quietly']);
  tg.settle!({ kind: 'session', hello: 'late' }); // too late: nothing happens
  await new Promise((res) => setImmediate(res));
  assert.equal(slow.host.made.length, 0);
  // The client reset meanwhile.
  const cg = heldGreeting();
  const gone = await session(t, [['a', good]], { greet: cg.greet });
  gone.peer.resetAndDestroy();
  await ended(gone.s);
  assert.ok(cg.signal!.aborted);
  assert.deepEqual(gone.host.log, ['accepted', 'ended quietly']);
  assert.equal(gone.host.deadlines.size, 0);
});
