// A client whose FIN arrives before piping starts (a TCP health check: connect, then close; or a
// client that gives up while its connection waits for an endpoint) must not leave the proxied
// connection open: the FIN is forwarded, the upstream closes, the connection ends.
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../cluster/cluster.js';
import { sleep, spec, startServer, waitFor, type TestServer } from '../testing/tcp-kit.js';
import { ConnectListener } from './listener.js';
import { RelayListener } from './relay.js';

async function echo(t: TestContext): Promise<TestServer & { ended: number }> {
  const s = Object.assign(await startServer({
    onSocket: (sock) => {
      sock.on('data', (d) => sock.write(d));
      sock.on('end', () => {
        s.ended++;
        sock.end();
      });
    },
  }), { ended: 0 });
  t.after(() => s.close());
  return s;
}

/** Connects, then ends (optionally after writing) at once; resolves when the socket closed. */
function hitAndRun(port: number, how: 'destroy' | 'end', data?: string): Promise<void> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => {
      if (data) c.write(data);
      if (how === 'destroy') c.destroy();
      else c.end();
    });
    c.on('error', () => {});
    c.on('close', () => resolve());
    c.resume();
  });
}

test('relay: a client that connects and closes at once (like a health check) leaves no connection open', async (t) => {
  const target = await echo(t);
  const relay = new RelayListener({ target: { host: '127.0.0.1', port: target.port }, host: '127.0.0.1' });
  const { port } = await relay.listen();
  t.after(() => relay.close());
  for (const [how, data] of [['destroy', undefined], ['end', undefined], ['end', 'PING\r\n'], ['destroy', 'PING\r\n']] as const) {
    await hitAndRun(port, how, data);
    await waitFor(() => relay.connections.size === 0, 2000, `relay connection closed after ${how} ${data ?? ''}`);
  }
  assert.equal(target.ended, 4, 'every FIN reached the target');
  const t0 = Date.now();
  await relay.close({ drainMs: 5000 });
  assert.ok(Date.now() - t0 < 1000, 'nothing left to drain');
});

test('connect listener: a client that half-closes while waiting for an endpoint is forwarded and closed', async (t) => {
  const target = await echo(t);
  const cluster = new Cluster('svc');
  const listener = new ConnectListener({ cluster, port: 0, noEndpointWaitMs: 3000 });
  const { port } = await listener.listen();
  t.after(async () => {
    await listener.close();
    cluster.close();
  });
  const closed = hitAndRun(port, 'end');
  await sleep(100); // the FIN arrives while the connection is pending
  cluster.setEndpoints('static', [spec('a', target.port)]);
  await closed;
  await waitFor(() => listener.connections.size === 0, 2000, 'connection closed');
  assert.equal(target.ended, 1);
});
