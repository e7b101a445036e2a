// The admin endpoint in-process: a real Connector (static endpoints on loopback, one of them with
// a failing protocol handshake), scraped over HTTP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { pino } from 'pino';
import { Connector } from './connector.js';
import { parseConnect } from '../config/specs.js';
import { StaticSource } from '../discovery/static.js';
import { AdminServer, type AdminSubject } from '../admin/http-server.js';
import { redactTxt } from '../base/redaction.js';
import { STATUS_PAGE_SCRIPT } from '../admin/status-page.js';

const silent = pino({ level: 'silent' });

async function echoServer(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port };
}

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

function roundTrip(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(payload));
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (got.length >= payload.length) {
        s.end();
        resolve(got);
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(got));
  });
}

interface Rig {
  subject: AdminSubject & { draining: boolean; started: boolean };
  admin: AdminServer;
  base: string;
  conn: Connector;
  close(): Promise<void>;
  good: number;
  bad: number;
}

/**
 * One connector `kv` with two static endpoints: `good` (echo) and `bad` (echo, but its handshake
 * fails). The status pages' rates and updates move only when a test says so (tick()).
 */
async function rig(): Promise<Rig> {
  const a = await echoServer();
  const b = await echoServer();
  const port = await freePort();
  const conn = new Connector(parseConnect(`kv=127.0.0.1:${port}`), [new StaticSource([{ host: '127.0.0.1', port: a.port }, { host: '127.0.0.1', port: b.port }])], silent, {
    healthIntervalMs: 200, healthTimeoutMs: 200, connectTimeoutMs: 1000, noEndpointWaitMs: 1000, keepConnections: false,
    handshake: async (_up, ep) => {
      if (ep.port === b.port) throw new Error('auth failed');
    },
  });
  const subject = { connectors: [conn], advertisements: [], draining: false, started: false };
  const admin = new AdminServer(subject, { host: '127.0.0.1', port: 0, defaultMetrics: true, statusTickMs: 3_600_000 });
  const addr = await admin.listen();
  admin.metrics.watchConnector(conn);
  await conn.bind();
  await conn.start();
  return {
    subject, admin, conn, base: `http://127.0.0.1:${addr.port}`, good: a.port, bad: b.port,
    async close() {
      await admin.close();
      await conn.stop(0);
      a.server.close();
      b.server.close();
    },
  };
}

function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => ls[k] === v)) return Number(m[4]);
  }
  return undefined;
}

test('/healthz: 503 while starting, 200 when started, 503 while draining', async () => {
  const r = await rig();
  try {
    let res = await fetch(`${r.base}/healthz`);
    assert.equal(res.status, 503);
    assert.equal((await res.json() as { status: string }).status, 'starting');
    r.subject.started = true;
    res = await fetch(`${r.base}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true, status: 'ok', listeners: 1, refusing: [] });
    r.subject.draining = true;
    res = await fetch(`${r.base}/healthz`);
    assert.equal(res.status, 503);
    assert.equal((await res.json() as { status: string }).status, 'draining');
  } finally {
    await r.close();
  }
});

test('unknown path → 404, other methods → 405 with Allow, HEAD works', async () => {
  const r = await rig();
  try {
    assert.equal((await fetch(`${r.base}/nope`)).status, 404);
    assert.deepEqual((await (await fetch(`${r.base}/nope`)).json() as { resources: string[] }).resources, ['/', '/healthz', '/peers', '/metrics', '/status', '/events']);
    const post = await fetch(`${r.base}/peers`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    assert.equal((await fetch(`${r.base}/metrics`, { method: 'DELETE' })).status, 405);
    const head = await fetch(`${r.base}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    assert.equal((await fetch(`${r.base}/peers?pretty=1`)).status, 200, 'query strings are ignored');
  } finally {
    await r.close();
  }
});

test('/metrics counts connections, bytes, retries, handshake failures; /peers shows endpoints', async () => {
  const r = await rig();
  try {
    r.subject.started = true;
    const payload = 'hello through the ambassador\n';
    for (let i = 0; i < 6; i++) assert.equal(await roundTrip(r.conn.listener.address()!.port, payload), payload);
    // the last connection may still be closing on the proxy's side
    for (let i = 0; i < 100 && r.conn.listener.connections.size > 0; i++) await new Promise((res) => setTimeout(res, 10));
    const text = await (await fetch(`${r.base}/metrics`)).text();
    const good = `127.0.0.1:${r.good}`;
    const bad = `127.0.0.1:${r.bad}`;
    assert.equal(sample(text, 'ambassador_connections_accepted_total', { cluster: 'kv' }), 6);
    assert.equal(sample(text, 'ambassador_connections_established_total', { cluster: 'kv', endpoint: good }), 6);
    assert.equal(sample(text, 'ambassador_connections_established_total', { cluster: 'kv', endpoint: bad }), undefined);
    const hs = sample(text, 'ambassador_handshake_failures_total', { cluster: 'kv', endpoint: bad, code: 'EHANDSHAKE' }) ?? 0;
    assert.ok(hs >= 1, `handshake failures counted: ${hs}`);
    assert.equal(sample(text, 'ambassador_connect_failures_total', { cluster: 'kv', endpoint: bad, code: 'EHANDSHAKE' }), hs);
    assert.equal(sample(text, 'ambassador_connect_retries_total', { cluster: 'kv' }), hs, 'each failed handshake was retried on the good endpoint');
    assert.equal(sample(text, 'ambassador_upstream_bytes_sent_total', { cluster: 'kv', endpoint: good }), 6 * payload.length);
    assert.equal(sample(text, 'ambassador_upstream_bytes_received_total', { cluster: 'kv', endpoint: good }), 6 * payload.length);
    assert.equal(sample(text, 'ambassador_connections_active', { cluster: 'kv', endpoint: good }), 0);
    assert.equal(sample(text, 'ambassador_endpoint_up', { cluster: 'kv', endpoint: good, source: 'static' }), 1);
    assert.equal(sample(text, 'ambassador_endpoint_transitions_total', { cluster: 'kv', endpoint: good, to: 'up', reason: 'discovered' }), 1);
    assert.ok((sample(text, 'ambassador_health_checks_total', { cluster: 'kv', endpoint: good, result: 'ok' }) ?? 0) >= 1);
    assert.equal(sample(text, 'ambassador_mdns_packets_received_total'), 0, 'no engine: zero, but present');
    assert.ok(sample(text, 'process_cpu_user_seconds_total') !== undefined, 'default process metrics');
    assert.match(text, /# TYPE ambassador_connections_accepted_total counter/);

    // live bytes of an open connection are included before it closes
    const s = net.connect(r.conn.listener.address()!.port, '127.0.0.1');
    s.write('x'.repeat(1000));
    await once(s, 'data');
    const live = await (await fetch(`${r.base}/metrics`)).text();
    assert.ok((sample(live, 'ambassador_upstream_bytes_sent_total', { cluster: 'kv', endpoint: good }) ?? 0) >= 6 * payload.length + 1000);
    assert.equal(sample(live, 'ambassador_connections_active', { cluster: 'kv', endpoint: good }), 1);
    const peers = await (await fetch(`${r.base}/peers`)).json() as { clusters: Array<{ name: string; listen: string; endpoints: Array<Record<string, unknown>> }> };
    s.destroy();
    const c = peers.clusters[0]!;
    assert.equal(c.name, 'kv');
    assert.equal(c.listen, `127.0.0.1:${r.conn.listener.address()!.port}`);
    const g = c.endpoints.find((e) => e.port === r.good)!;
    assert.equal(g.source, 'static');
    assert.equal(g.address, '127.0.0.1');
    assert.equal(g.state, 'up');
    assert.equal(g.activeConnections, 1);
    assert.equal(g.ttlLeft, null);
    assert.ok((g.bytesToEndpoint as number) >= 6 * payload.length + 1000);
    assert.match(String(g.lastSeen), /^\d{4}-\d\d-\d\dT/);
  } finally {
    await r.close();
  }
});

test('/metrics counts internal errors: a client closed by a bug', async () => {
  const r = await rig();
  try {
    let text = await (await fetch(`${r.base}/metrics`)).text();
    assert.equal(sample(text, 'ambassador_internal_errors_total', { cluster: 'kv' }), 0);
    r.conn.listener.once('upstream-connected', () => {
      throw new Error('bug in a listener');
    });
    await roundTrip(r.conn.listener.address()!.port, 'x').catch(() => ''); // closed: no reply, maybe a reset
    assert.equal(await roundTrip(r.conn.listener.address()!.port, 'y\n'), 'y\n', 'the next client is served');
    text = await (await fetch(`${r.base}/metrics`)).text();
    assert.equal(sample(text, 'ambassador_internal_errors_total', { cluster: 'kv' }), 1);
  } finally {
    await r.close();
  }
});

test('established connections stay counted after their endpoint leaves the cluster', async () => {
  const r = await rig();
  try {
    const payload = 'x';
    for (let i = 0; i < 3; i++) assert.equal(await roundTrip(r.conn.listener.address()!.port, payload), payload);
    const good = `127.0.0.1:${r.good}`;
    const before = await (await fetch(`${r.base}/metrics`)).text();
    assert.equal(sample(before, 'ambassador_connections_established_total', { cluster: 'kv', endpoint: good }), 3);
    r.conn.cluster.setEndpoints('static', []); // both endpoints leave
    const after = await (await fetch(`${r.base}/metrics`)).text();
    assert.equal(sample(after, 'ambassador_connections_established_total', { cluster: 'kv', endpoint: good }), 3);
    assert.equal(sample(after, 'ambassador_connections_accepted_total', { cluster: 'kv' }), 3);
  } finally {
    await r.close();
  }
});

test('two admin servers in one process keep separate registries', async () => {
  const r1 = await rig();
  const r2 = await rig();
  try {
    await roundTrip(r1.conn.listener.address()!.port, 'x');
    const t1 = await (await fetch(`${r1.base}/metrics`)).text();
    const t2 = await (await fetch(`${r2.base}/metrics`)).text();
    assert.equal(sample(t1, 'ambassador_connections_accepted_total', { cluster: 'kv' }), 1);
    assert.equal(sample(t2, 'ambassador_connections_accepted_total', { cluster: 'kv' }), 0);
  } finally {
    await r1.close();
    await r2.close();
  }
});

test('bind failure is one line naming the address', async () => {
  const r = await rig();
  try {
    const port = r.admin.address()!.port;
    const other = new AdminServer(r.subject, { host: '127.0.0.1', port, defaultMetrics: false });
    await assert.rejects(other.listen(), (err: Error) => {
      assert.equal(err.message, `cannot listen on 127.0.0.1:${port}: address already in use`);
      return true;
    });
  } finally {
    await r.close();
  }
});

test('TXT values of secret-looking keys are redacted', () => {
  assert.deepEqual(redactTxt({ env: 'prod', password: 'x', api_token: 'y', authKey: 'z', version: '1' }),
    { env: 'prod', password: '[redacted]', api_token: '[redacted]', authKey: '[redacted]', version: '1' });
});

/** Reads a Server-Sent Events stream: every message so far, parsed. */
function eventStream(url: string): Promise<{ status: number; events: Array<{ event: string; data: any }>; res: http.IncomingMessage; close(): void }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      const out = { status: res.statusCode ?? 0, events: [] as Array<{ event: string; data: any }>, res, close: () => req.destroy() };
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) out.events.push({ event, data: JSON.parse(data) });
        }
      });
      res.on('error', () => {});
      resolve(out);
    });
    req.on('error', reject);
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((res) => setTimeout(res, 10));
  assert.ok(cond(), what);
}

test('GET / is the status page: self-contained, its own script and style allowed by hash, nothing else', async () => {
  const r = await rig();
  try {
    const res = await fetch(`${r.base}/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    const html = await res.text();
    const csp = res.headers.get('content-security-policy')!;
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /connect-src 'self'/);
    const script = /<script>([\s\S]*)<\/script>/.exec(html)![1]!;
    const style = /<style>([\s\S]*)<\/style>/.exec(html)![1]!;
    const hash = (t: string) => `'sha256-${createHash('sha256').update(t).digest('base64')}'`;
    assert.ok(csp.includes(`script-src ${hash(script)}`), 'the inline script is the one the policy allows');
    assert.ok(csp.includes(`style-src ${hash(style)}`), 'the inline style is the one the policy allows');
    assert.equal(script, STATUS_PAGE_SCRIPT);
    assert.doesNotThrow(() => new Function(script), 'the script parses');
    // nothing from elsewhere: no src=, no absolute URL but the SVG namespace name
    assert.doesNotMatch(html, /\ssrc=/);
    assert.deepEqual([...html.matchAll(/https?:\/\/[^'"\s)]+/g)].map((m) => m[0]), ['http://www.w3.org/2000/svg']);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const head = await fetch(`${r.base}/`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  } finally {
    await r.close();
  }
});

test('/status: the /peers model plus who this is, health, per-second rates and endpoints that left', async () => {
  const r = await rig();
  try {
    r.subject.started = true;
    r.admin.history.sample();
    for (let i = 0; i < 3; i++) assert.equal(await roundTrip(r.conn.listener.address()!.port, 'x'), 'x');
    r.admin.history.sample();
    const m = await (await fetch(`${r.base}/status`)).json() as any;
    assert.match(m.ambassador.version, /^\d+\.\d+\.\d+/);
    assert.equal(m.ambassador.pid, process.pid);
    assert.equal(m.ambassador.health.status, 'ok');
    assert.equal(m.history.withRates, true);
    assert.ok(Math.abs(m.now - Date.now()) < 60_000);
    const c = m.clusters[0];
    assert.equal(c.dataPlane.kind, 'node');
    assert.deepEqual(Object.keys(c.limits).sort(), ['maxConnections', 'maxPending', 'maxPerEndpoint']);
    assert.equal(c.acceptedConnections, 3);
    assert.equal(c.acceptedRates.at(-1), 3);
    const good = c.endpoints.find((e: any) => e.port === r.good);
    assert.equal(good.rates.connections.at(-1), 3);
    assert.equal(good.historyKey, `127.0.0.1:${r.conn.spec.port} static/static:127.0.0.1:${r.good}`);
    assert.match(good.stateSince, /^\d{4}-/);
    assert.equal(good.health.ownCheck.last.ok, true);
    assert.deepEqual(c.departed, []);
    // one endpoint leaves: the next sample remembers it, and why (ejected for its failed handshakes, or not)
    const was = r.conn.cluster.endpoints().find((e) => e.port === r.bad)!.downReasonAt(Date.now()) ?? 'removed';
    r.conn.cluster.setEndpoints('static', [{ id: `static:127.0.0.1:${r.good}`, source: 'static', host: '127.0.0.1', port: r.good, priority: 0, weight: 0, txt: {}, label: `127.0.0.1:${r.good}` }]);
    r.admin.history.sample();
    const after = await (await fetch(`${r.base}/status`)).json() as any;
    assert.deepEqual(after.clusters[0].departed.map((d: any) => [d.label, d.reason]), [[`127.0.0.1:${r.bad}`, was]]);
    // /peers carries the same new fields (one builder), without the page's extras
    const peers = await (await fetch(`${r.base}/peers`)).json() as any;
    assert.equal(peers.clusters[0].endpoints[0].stateSince, after.clusters[0].endpoints[0].stateSince);
    assert.equal(peers.clusters[0].endpoints[0].rates, undefined);
  } finally {
    await r.close();
  }
});

test('/events: the whole model first, then samples and models; a change goes out at once; bounded pages', async () => {
  const r = await rig();
  const streams: Array<Awaited<ReturnType<typeof eventStream>>> = [];
  try {
    const s = await eventStream(`${r.base}/events`);
    streams.push(s);
    assert.equal(s.status, 200);
    assert.match(String(s.res.headers['content-type']), /^text\/event-stream/);
    await until(() => s.events.length >= 1, 'first event');
    assert.equal(s.events[0]!.event, 'model');
    assert.equal(s.events[0]!.data.history.withRates, true);
    assert.ok(Array.isArray(s.events[0]!.data.clusters[0].endpoints[0].rates.connections));
    // each tick: the newest sample, then the model without the history
    await roundTrip(r.conn.listener.address()!.port, 'x');
    r.admin.history.sample();
    const n = s.events.length;
    r.admin.stream.tick();
    await until(() => s.events.length >= n + 2, 'a tick');
    const [sample, model] = s.events.slice(n);
    assert.equal(sample!.event, 'sample');
    assert.equal(sample!.data.seq, r.admin.history.seq);
    assert.deepEqual(Object.values(sample!.data.listeners), [1]);
    assert.equal(model!.event, 'model');
    assert.equal(model!.data.history.withRates, false);
    assert.equal(model!.data.clusters[0].endpoints[0].rates, undefined);
    // a change in the cluster: a model goes out by itself, without waiting for a tick (a tick
    // would send a sample first)
    const m = s.events.length;
    r.conn.cluster.setEndpoints('static', []);
    await until(() => s.events.slice(m).some((e) => e.event === 'model' && e.data.clusters[0].endpoints.length === 0), 'the change pushed');
    assert.deepEqual(s.events.slice(m).map((e) => e.event), ['model']);
    // at most 16 pages: the 17th is told to come back later
    for (let i = 1; i < 16; i++) streams.push(await eventStream(`${r.base}/events`));
    await until(() => r.admin.stream.size === 16, '16 pages open');
    const extra = await eventStream(`${r.base}/events`);
    streams.push(extra);
    assert.equal(extra.status, 503);
    // closing a page frees its place
    streams[1]!.close();
    await until(() => r.admin.stream.size === 15, 'a page closed');
    // the server closing ends every stream
    const ended = once(s.res, 'end');
    await r.admin.close();
    await ended;
    assert.equal(r.admin.stream.size, 0);
  } finally {
    for (const x of streams) x.close();
    await r.close();
  }
});

test('/peers: a registry connection and another data plane appear when the ambassador has them, without credentials', async () => {
  const r = await rig();
  try {
    let peers = await (await fetch(`${r.base}/peers`)).json() as any;
    assert.equal(peers.registry, null);
    assert.deepEqual(peers.clusters[0].dataPlane, { kind: 'node' });
    Object.assign(r.subject, { registry: { status: () => ({ kind: 'etcd', url: 'etcd://amb:s3cret@10.0.0.1:2379,10.0.0.2:2379/mesh', state: 'unreachable', since: 1_700_000_000_000, reason: 'no quorum' }) } });
    Object.assign(r.conn, { dataPlane: { kind: 'haproxy', state: 'running' } });
    peers = await (await fetch(`${r.base}/status`)).json() as any;
    assert.deepEqual(peers.registry, { kind: 'etcd', url: 'etcd://10.0.0.1:2379,10.0.0.2:2379/mesh', state: 'unreachable', since: '2023-11-14T22:13:20.000Z', reason: 'no quorum', authenticated: null });
    assert.deepEqual(peers.clusters[0].dataPlane, { kind: 'haproxy', state: 'running' });
  } finally {
    await r.close();
  }
});
