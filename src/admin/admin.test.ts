// The admin endpoint in-process: a real Connector (static endpoints on loopback, one of them with
// a failing protocol handshake), scraped over HTTP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { pino } from 'pino';
import { Connector } from '../ambassador/connector.js';
import { parseConnect } from '../config/specs.js';
import { StaticSource } from '../discovery/static.js';
import type { ConnectListener } from '../proxy/listener.js';
import { AdminServer, type AdminSubject } from './server.js';
import { redactTxt } from './peers.js';

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

/** One connector `kv` with two static endpoints: `good` (echo) and `bad` (echo, but its handshake fails). */
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
  const admin = new AdminServer(subject, { host: '127.0.0.1', port: 0, defaultMetrics: true });
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
    assert.equal((await fetch(`${r.base}/`)).status, 404);
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
    for (let i = 0; i < 100 && (r.conn.listener as ConnectListener).connections.size > 0; i++) await new Promise((res) => setTimeout(res, 10));
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
