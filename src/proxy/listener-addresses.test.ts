// A peer with several addresses (IPv4 and IPv6, as mDNS resolves a dual-stack host): a failed
// connect to one moves on to the next before the endpoint is blamed; an endpoint that moves
// while a client's connect to its old address is pending is retried at the new one at once.
import net from 'node:net';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../cluster/cluster.js';
import { closed, connectTo, readBytes, refusedPort, spec, startServer } from '../testing/tcp-kit.js';
import { ConnectListener } from './listener.js';

test('a refused address of a peer moves on to its next address; the endpoint is not blamed', async (t) => {
  const up = await startServer({ greeting: 'hi:' });
  const dead = await refusedPort();
  const cluster = new Cluster('svc');
  // Same port, two "addresses": the first refuses (nothing on 127.0.0.2:port), the second works.
  const listener = new ConnectListener({
    cluster, port: 0,
    createConnection: (ep) => net.connect({ host: '127.0.0.1', port: ep.host === 'bad' ? dead : up.port }),
  });
  const codes: string[] = [];
  listener.on('connect-failed', (_c, _ep, code) => codes.push(code));
  const { port } = await listener.listen();
  t.after(async () => {
    await listener.close();
    cluster.close();
    await up.close();
  });
  cluster.setEndpoints('static', [spec('p', up.port, { host: 'bad', addresses: ['bad', 'good'] })]);
  const c = await connectTo(port);
  assert.equal((await readBytes(c, 3)).toString(), 'hi:');
  c.destroy();
  const ep = cluster.endpoints()[0]!;
  assert.deepEqual(codes, ['ECONNREFUSED'], 'one failed attempt, on the first address');
  assert.equal(ep.host, 'good', 'the next clients dial the address that worked');
  assert.equal(ep.consecutiveFailures, 0, 'not counted against the endpoint');
  assert.ok(ep.isUsable());
  // A new address list (the peer's addresses changed) starts over with its likeliest one.
  cluster.setEndpoints('static', [spec('p', up.port, { host: 'good', addresses: ['good', 'other'] })]);
  assert.equal(ep.generation, 0, 'the address in use is still the peer\'s: no move');
});

test('every address of the peer failing blames the endpoint once', async (t) => {
  const dead = await refusedPort();
  const cluster = new Cluster('svc', { outlier: { consecutiveFailures: 1, baseEjectionMs: 30_000, maxEjectionMs: 30_000 } });
  const listener = new ConnectListener({
    cluster, port: 0, noEndpointWaitMs: 200,
    createConnection: () => net.connect({ host: '127.0.0.1', port: dead }),
  });
  const { port } = await listener.listen();
  t.after(async () => {
    await listener.close();
    cluster.close();
  });
  cluster.setEndpoints('static', [spec('p', dead, { host: 'x', addresses: ['x', 'y'] })]);
  const c = await connectTo(port, false);
  await closed(c);
  const ep = cluster.endpoints()[0]!;
  assert.equal(ep.failures, 1, 'one failure for the endpoint, after both addresses');
  // The only endpoint: passive evidence never ejects the last usable one (cluster.ts), it is
  // counted as spared instead.
  assert.equal(cluster.sparedLast, 1);
  assert.equal(ep.downReason, undefined);
});

test('a connect pending to an address the endpoint just moved away from is retried at the new one at once', async (t) => {
  const up = await startServer({ greeting: 'hi:' });
  const cluster = new Cluster('svc');
  const hung: net.Socket[] = [];
  const listener = new ConnectListener({
    cluster, port: 0, connectTimeoutMs: 20_000,
    // The old address: a connect that never completes (as to a host that is gone).
    createConnection: (ep) => {
      if (ep.host === 'old') {
        const s = new net.Socket();
        hung.push(s);
        return s;
      }
      return net.connect({ host: '127.0.0.1', port: up.port });
    },
  });
  const { port } = await listener.listen();
  t.after(async () => {
    await listener.close();
    cluster.close();
    await up.close();
    for (const s of hung) s.destroy();
  });
  cluster.setEndpoints('static', [spec('p', up.port, { host: 'old' })]);
  const codes: string[] = [];
  listener.on('connect-failed', (_c, _ep, code) => codes.push(code));
  const c = await connectTo(port);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(hung.length, 1, 'the client is waiting on the old address');
  cluster.setEndpoints('static', [spec('p', up.port, { host: 'new' })]);
  // Served although the pending connect would only time out after 20 s.
  assert.equal((await readBytes(c, 3)).toString(), 'hi:');
  c.destroy();
  assert.deepEqual(codes, ['EENDPOINTDOWN'], 'the old attempt was given up, not failed');
  assert.equal(cluster.endpoints()[0]!.consecutiveFailures, 0);
});
