#!/usr/bin/env node
// Minimal Node TCP proxies for the data path study (issue 7): each isolates one technique, so
// the harness can measure it side by side with HAProxy and the ambassador.
//
//   node bench/proxies/node-proxy.mjs --listen PORT=HOST:PORT [--listen …]
//        [--mode pipe|manual] [--no-delay 0|1] [--hwm BYTES] [--workers N]
//        [--semi MB]
//
//   pipe    Readable.pipe() both ways (what src/proxy/pipe.ts does)
//   manual  'data' → write(), pause on false, resume on 'drain'
//   --hwm   readable/writable highWaterMark of both sockets
//   --workers N  N processes sharing the listening socket (cluster, SCHED_NONE: the kernel
//                spreads accepts, as SO_REUSEPORT would)
//   --reuse-port N  N independent processes, each with its own listening socket on the same
//                port (listen({ reusePort: true }), Node 22.12+ / 23.1+): the kernel spreads
//                connections over them
import cluster from 'node:cluster';
import { fork } from 'node:child_process';
import net from 'node:net';
import { benchArgs, listenArgs } from '../lib/args.mjs';

// --mode socketpipe: the ambassador's own SocketPipe (dist/proxy/pipe.js) in this bare process
const SocketPipe = argv_mode() === 'socketpipe' ? (await import('../../dist/proxy/pipe.js')).SocketPipe : undefined;
function argv_mode() {
  const i = process.argv.indexOf('--mode');
  return i >= 0 ? process.argv[i + 1] : 'pipe';
}

const { opt } = benchArgs();
const listens = listenArgs();
const mode = opt('mode', 'pipe');
const noDelay = opt('no-delay', '1') === '1';
const hwm = opt('hwm') ? Number(opt('hwm')) : undefined;
const workers = Number(opt('workers', '1'));
const reusePort = Number(opt('reuse-port', '0'));

if (reusePort > 1 && process.env.NODE_PROXY_CHILD !== '1') {
  const children = [];
  for (let i = 0; i < reusePort; i++) children.push(fork(process.argv[1], process.argv.slice(2), { env: { ...process.env, NODE_PROXY_CHILD: '1' } }));
  process.on('SIGTERM', () => {
    for (const c of children) c.kill('SIGTERM');
    process.exit(0);
  });
} else if (workers > 1 && cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  for (const l of listens) {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay, highWaterMark: hwm }, (accepted) => {
      let client = accepted;
      if (mode === 'onread3') {
        const handle = accepted._handle;
        accepted._handle = null;
        client = new net.Socket({ handle, allowHalfOpen: true, pauseOnCreate: true, onread: rotatingBuffer(Number(opt('onread-size', 65536)), () => upstreamRef, () => client) });
      } else if (mode === 'onread2') {
        // Measurement only: re-wrap the accepted handle so the client side gets a user buffer too.
        const handle = accepted._handle;
        accepted._handle = null;
        client = new net.Socket({ handle, allowHalfOpen: true, onread: userBuffer(Number(opt('onread-size', 65536)), () => upstreamRef, () => client) });
      }
      let upstreamRef;
      const upOpts = { host: l.host, port: l.tport, allowHalfOpen: true, noDelay, highWaterMark: hwm };
      if (mode === 'onread3') {
        upOpts.onread = rotatingBuffer(Number(opt('onread-size', 65536)), () => client, () => upstreamRef);
      } else if (mode === 'onread' || mode === 'onread2') {
        // Upstream reads land in one buffer owned by this connection (no Buffer per chunk, no
        // Readable machinery); reading pauses while a write to the client is not yet flushed.
        const buf = Buffer.allocUnsafe(Number(opt('onread-size', 65536)));
        upOpts.onread = {
          buffer: buf,
          callback: (n, b) => {
            client.write(b.subarray(0, n));
            if (client.writableLength > 0) {
              client.once('drain', () => upstream.resume());
              return false;
            }
          },
        };
      }
      const upstream = net.connect(upOpts);
      upstreamRef = upstream;
      const destroy = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', destroy);
      upstream.on('error', destroy);
      upstream.once('connect', () => {
        if (noDelay) upstream.setNoDelay(true);
        if (mode === 'socketpipe') {
          new SocketPipe(client, upstream, {});
        } else if (mode === 'manual') {
          pump(client, upstream);
          pump(upstream, client);
        } else if (mode === 'onread3') {
          client.on('end', () => upstream.end());
          upstream.on('end', () => client.end());
          client.resume();
          upstream.resume();
        } else if (mode === 'onread' || mode === 'onread2') {
          if (mode === 'onread') pump(client, upstream);
          else client.on('end', () => upstream.end());
          upstream.on('end', () => client.end());
        } else {
          client.pipe(upstream);
          upstream.pipe(client);
        }
        client.resume();
      });
    });
    server.listen({ port: l.port, host: '127.0.0.1', reusePort: reusePort > 1 });
  }
  process.on('SIGTERM', () => process.exit(0));
}

/** onread options: reads land in `size` bytes owned by the socket; pause while a write is queued. */
function userBuffer(size, getDst, getSrc) {
  const buf = Buffer.allocUnsafe(size);
  return {
    buffer: buf,
    callback: (n, b) => {
      const dst = getDst();
      dst.write(b.subarray(0, n));
      if (dst.writableLength > 0) {
        dst.once('drain', () => getSrc().resume());
        return false;
      }
      return true;
    },
  };
}

/**
 * onread options with buffer rotation: reads land in the socket's current buffer; when a write
 * could not be flushed at once (the destination still holds the chunk), the next read gets a
 * fresh buffer; when the destination is over its high-water mark, reading pauses until 'drain'.
 */
function rotatingBuffer(size, getDst, getSrc) {
  let cur = Buffer.allocUnsafe(size);
  let resume;
  return {
    buffer: () => cur,
    callback: (n, b) => {
      const dst = getDst();
      const ok = dst.write(n === b.length ? b : b.subarray(0, n));
      if (dst.writableLength > 0) cur = Buffer.allocUnsafe(size);
      if (!ok) {
        resume ??= () => getSrc().resume();
        dst.once('drain', resume);
        return false;
      }
      return true;
    },
  };
}

function pump(src, dst) {
  src.on('data', (chunk) => {
    if (!dst.write(chunk)) src.pause();
  });
  dst.on('drain', () => src.resume());
  src.on('end', () => dst.end());
}
