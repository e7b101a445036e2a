import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { release, SocketPipe } from './pipe.js';
import { connectWithReader } from './reader.js';

/** ArrayBuffer.prototype.transfer (ES2024): Node 22 and later; Node 20 has none, and nothing is released. */
const canTransfer = typeof (new ArrayBuffer(1) as { transfer?: unknown }).transfer === 'function';

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * A one-connection proxy on loopback built like the listeners (accepted client forwarding its
 * 'data' chunks, upstream with a reader); `piped` runs once the pipe exists, e.g. to add an
 * observer after the pipe's own 'data' listener, as the retiring watch does.
 */
async function proxyTo(
  targetPort: number,
  piped: (client: net.Socket, upstream: net.Socket) => void,
): Promise<{ port: number; pipe: () => SocketPipe; close: () => void }> {
  let pipe: SocketPipe | undefined;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (client) => {
    client.read(0);
    const upstream = connectWithReader('127.0.0.1', targetPort);
    upstream.once('connect', () => {
      pipe = new SocketPipe(client, upstream);
      piped(client, upstream);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, pipe: () => pipe!, close: () => server.close() };
}

test('release: frees a chunk only when it is the sole view of its ArrayBuffer', () => {
  const own = Buffer.alloc(4096, 1); // Buffer.alloc never takes from the pool: its own ArrayBuffer
  release(own);
  assert.equal(own.byteLength, canTransfer ? 0 : 4096);

  const pooled = Buffer.from('PING\r\n'); // a slice of Node's shared 8 KiB pool
  release(pooled);
  assert.equal(pooled.toString(), 'PING\r\n');

  const whole = Buffer.alloc(1024, 2);
  const part = whole.subarray(0, 512); // a view of part of another buffer
  release(part);
  assert.equal(part.byteLength, 512);
  assert.equal(whole.byteLength, 1024);
  assert.equal(whole[1023], 2);
});

test('pipe: an upload from an accepted socket arrives intact, and its chunks are released as they are written', async () => {
  const up = randomBytes(16 * 1024 * 1024);
  const received: Buffer[] = [];
  const target = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (c: Buffer) => received.push(Buffer.from(c)));
    s.on('end', () => s.end('done'));
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const targetPort = (target.address() as net.AddressInfo).port;

  let chunks = 0;
  let released = 0;
  // An observer after the pipe's listener, as the retiring watch is: it sees what the pipe left.
  const proxy = await proxyTo(targetPort, (client) =>
    client.on('data', (c: Buffer) => {
      chunks++;
      if (c.byteLength === 0) released++;
    }),
  );
  const c = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
  const back: Buffer[] = [];
  c.on('data', (d: Buffer) => back.push(d));
  const ended = new Promise<void>((r) => c.on('end', r));
  await new Promise<void>((r) => c.once('connect', r));
  c.end(up);
  await ended;
  c.destroy();
  const result = await proxy.pipe().closed;
  proxy.close();
  target.close();

  assert.equal(sha(Buffer.concat(received)), sha(up), 'every byte arrived, in order');
  assert.equal(Buffer.concat(back).toString(), 'done');
  assert.equal(result.upstreamBytesWritten, up.length);
  assert.ok(chunks > 0);
  if (canTransfer) assert.ok(released > 0, `some of ${chunks} chunks written at once were released (released ${released})`);
  else assert.equal(released, 0, 'without ArrayBuffer.prototype.transfer nothing is released');
});

test('pipe: chunks still queued for a destination that does not read are kept until written', async () => {
  const up = randomBytes(24 * 1024 * 1024);
  const received: Buffer[] = [];
  let sink: net.Socket | undefined;
  // The target reads nothing at first: the proxy's writes queue (and back-pressure stops the
  // client); then it reads everything. A queued chunk released early would arrive as garbage.
  const target = net.createServer({ allowHalfOpen: true }, (s) => {
    sink = s;
    s.pause();
    s.on('data', (c: Buffer) => received.push(Buffer.from(c)));
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const targetPort = (target.address() as net.AddressInfo).port;
  let queuedWrites = 0;
  const proxy = await proxyTo(targetPort, (client, upstream) =>
    client.on('data', () => {
      if (upstream.writableLength > 0) queuedWrites++;
    }),
  );
  const c = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
  const ended = new Promise<void>((r) => c.on('end', r));
  c.on('data', () => {});
  await new Promise<void>((r) => c.once('connect', r));
  c.end(up);
  // Bounded wait for the writes to back up, then let the target read.
  for (let i = 0; i < 100 && queuedWrites === 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(queuedWrites > 0, 'the proxy had writes queued for the target');
  sink!.resume();
  await ended;
  c.destroy();
  await proxy.pipe().closed;
  proxy.close();
  target.close();
  assert.equal(sha(Buffer.concat(received)), sha(up));
});
