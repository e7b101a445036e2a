import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { SocketPipe } from './pipe.js';
import { connectWithReader, readerOf } from './reader.js';

/**
 * A one-connection proxy on loopback built from the same pieces as the listeners: the accepted
 * client forwards its 'data' chunks, the upstream reads with a reader.
 */
async function proxyTo(targetPort: number): Promise<{ port: number; pipes: SocketPipe[]; close: () => void }> {
  const pipes: SocketPipe[] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (client) => {
    client.read(0);
    const upstream = connectWithReader('127.0.0.1', targetPort);
    assert.ok(readerOf(upstream), 'upstream socket got a reader');
    upstream.once('connect', () => pipes.push(new SocketPipe(client, upstream)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, pipes, close: () => server.close() };
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

test('reader pipe: 8 MB each way intact through a slow reader, with half-close', async () => {
  const up = randomBytes(8 * 1024 * 1024);
  const down = randomBytes(8 * 1024 * 1024);
  let received: Buffer[] = [];
  // Target: reads slowly (pauses often, so the proxy meets back-pressure), answers with `down`
  // after the client's FIN.
  const target = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (c: Buffer) => {
      received.push(Buffer.from(c));
      if (received.length % 8 === 0) {
        s.pause();
        setTimeout(() => s.resume(), 2);
      }
    });
    s.on('end', () => s.end(down));
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const proxy = await proxyTo((target.address() as net.AddressInfo).port);
  const c = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
  const back: Buffer[] = [];
  c.on('data', (d: Buffer) => {
    back.push(d);
    if (back.length % 8 === 0) {
      c.pause();
      setTimeout(() => c.resume(), 2);
    }
  });
  const ended = new Promise<void>((r) => c.on('end', r));
  c.end(up);
  await ended;
  c.destroy();
  const result = await proxy.pipes[0]!.closed;
  assert.equal(sha(Buffer.concat(received)), sha(up));
  assert.equal(sha(Buffer.concat(back)), sha(down));
  assert.equal(result.error, undefined);
  assert.equal(result.clientBytesRead, up.length);
  assert.equal(result.upstreamBytesRead, down.length);
  received = [];
  proxy.close();
  target.close();
});

test('reader pipe: bytes sent before the upstream connects, and a server that speaks first', async () => {
  const target = net.createServer((s) => {
    s.write('hello\n');
    s.on('data', (d) => s.write(`echo:${d.toString()}`));
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const port = (target.address() as net.AddressInfo).port;
  let client: net.Socket | undefined;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (accepted) => {
    client = accepted;
    client.read(0);
    // Upstream late: the client's first bytes wait in its Readable buffer.
    setTimeout(() => {
      const upstream = connectWithReader('127.0.0.1', port);
      upstream.once('connect', () => setTimeout(() => new SocketPipe(client!, upstream), 30));
    }, 50);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  c.write('early');
  let got = '';
  c.on('data', (d) => (got += d.toString()));
  const deadline = Date.now() + 3000;
  while (!got.includes('echo:early') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.ok(got.startsWith('hello\n'), `greeting first, got ${JSON.stringify(got)}`);
  assert.ok(got.includes('echo:early'), `early bytes forwarded, got ${JSON.stringify(got)}`);
  c.destroy();
  server.close();
  target.close();
});

test('reader socket before piping: data listeners, pause and unshift work as on a plain socket', async () => {
  const target = net.createServer((s) => s.write('+OK\r\nrest'));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const s = connectWithReader('127.0.0.1', (target.address() as net.AddressInfo).port);
  const chunk = await new Promise<Buffer>((resolve) => {
    const onData = (d: Buffer): void => {
      s.pause();
      s.off('data', onData);
      resolve(d);
    };
    s.on('data', onData);
  });
  const text = chunk.toString();
  assert.ok(text.startsWith('+OK\r\n'));
  s.unshift(Buffer.from(text.slice(5)));
  const sink = new net.Socket();
  const writes: string[] = [];
  // A fake destination: capture what the reader flushes first.
  (sink as unknown as { write: (b: Buffer) => boolean }).write = (b: Buffer) => {
    writes.push(b.toString());
    return true;
  };
  readerOf(s)!.pipeTo(sink);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(writes.join('').startsWith('rest'), `unshifted bytes first, got ${JSON.stringify(writes)}`);
  s.destroy();
  target.close();
});

test('reader buffers: 16 KiB reads for small messages, 64 KiB once a read fills the buffer', async () => {
  const payload = randomBytes(4 * 1024 * 1024);
  // Target: answers each 'ping' with 'pong', then, on 'bulk', sends the payload and ends.
  const target = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (c: Buffer) => {
      const text = c.toString();
      if (text === 'ping') s.write('pong');
      else if (text === 'bulk') s.end(payload);
    });
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const sizes: number[] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    client.read(0);
    const upstream = connectWithReader('127.0.0.1', (target.address() as net.AddressInfo).port);
    upstream.once('connect', () => {
      new SocketPipe(client, upstream);
      upstream.on('data', (c: Buffer) => sizes.push(c.length)); // an observer: sees every chunk read
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((r) => c.once('connect', r));
  for (let i = 0; i < 5; i++) {
    c.write('ping');
    await new Promise((r) => c.once('data', r));
  }
  assert.deepEqual(sizes, [4, 4, 4, 4, 4], 'five pongs, five reads');
  const received: Buffer[] = [];
  c.on('data', (d: Buffer) => received.push(d));
  c.write('bulk');
  await new Promise((r) => c.once('end', r));
  c.destroy();
  const bulk = sizes.slice(5);
  assert.ok(Math.max(...bulk) > 16 * 1024, `bulk reads grew past 16 KiB: max ${Math.max(...bulk)}`);
  assert.ok(Math.max(...bulk) <= 64 * 1024, `and stay within 64 KiB: max ${Math.max(...bulk)}`);
  assert.ok(bulk[0]! <= 16 * 1024, `the first bulk read still used the 16 KiB buffer: ${bulk[0]}`);
  assert.equal(sha(Buffer.concat(received)), sha(payload), 'every byte arrived in order');
  server.close();
  target.close();
});
