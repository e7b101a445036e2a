#!/usr/bin/env node
// Experiment for the data path study (issue 7), NOT a technique the product uses: a TCP proxy on
// Node's internal libuv handle bindings (process.binding('tcp_wrap') / ('stream_wrap')), with no
// net.Socket and no stream layer at all. Each chunk: libuv reads into the handle's own buffer,
// one JS call, one writeBuffer() on the other handle. It measures how much of the gap to HAProxy
// is the net.Socket/stream machinery (which the ambassador uses) and how much is the cost of
// crossing into JavaScript per event (which no JavaScript proxy can avoid). Internal bindings
// are undocumented and change between Node versions: fine for a measurement, not for a product.
//
//   node bench/proxies/raw-handle-proxy.mjs --listen PORT=HOST:PORT [--listen …]
import { listenArgs } from '../lib/args.mjs';

const { TCP, TCPConnectWrap, constants: TCPConstants } = process.binding('tcp_wrap');
const { WriteWrap, ShutdownWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = process.binding('stream_wrap');

const UV_EOF = -4095;
const SMALL = 16 * 1024;
const LARGE = 64 * 1024;

const listens = listenArgs();

/** One direction: reads from `src` go to `dst`. */
class Half {
  constructor(src, dst, pair) {
    this.src = src;
    this.dst = dst;
    this.pair = pair;
    this.buf = Buffer.allocUnsafeSlow(SMALL);
    this.req = undefined; // a spare WriteWrap, reused while writes complete synchronously
    this.pending = 0; // asynchronous writes in flight
    this.eof = false;
  }

  start() {
    this.src.useUserBuffer(this.buf);
    const half = this;
    // CustomBufferJSListener: nread in streamBaseState; the return value is the next buffer.
    this.src.onread = function () {
      return half.onread(streamBaseState[kReadBytesOrError]);
    };
    this.src.readStart();
  }

  onread(nread) {
    if (nread < 0) {
      if (nread === UV_EOF) {
        this.eof = true;
        if (this.pending === 0) this.shutdown();
      } else this.pair.close();
      return undefined;
    }
    const chunk = this.buf.subarray(0, nread);
    let req = this.req ?? new WriteWrap();
    this.req = undefined;
    req.handle = this.dst;
    req.oncomplete = onWriteComplete;
    req.half = this;
    req.async = false;
    req.buffer = null;
    const err = this.dst.writeBuffer(req, chunk);
    if (err) {
      this.pair.close();
      return undefined;
    }
    let next;
    if (streamBaseState[kLastWriteWasAsync]) {
      // The kernel took only part: libuv keeps writing from this buffer; read into another one
      // and stop reading until the write is done (back-pressure).
      req.buffer = chunk;
      this.pending++;
      this.src.readStop();
      next = this.buf = Buffer.allocUnsafeSlow(this.buf.length);
    } else {
      this.req = req;
    }
    if (nread === this.buf.length && this.buf.length === SMALL) next = this.buf = Buffer.allocUnsafeSlow(LARGE);
    return next;
  }

  shutdown() {
    const req = new ShutdownWrap();
    req.handle = this.dst;
    req.oncomplete = () => {
      this.pair.halfClosed++;
      if (this.pair.halfClosed === 2) this.pair.close();
    };
    if (this.dst.shutdown(req) !== 0) this.pair.close();
  }
}

function onWriteComplete(status) {
  const half = this.half;
  half.pending--;
  if (status < 0) return half.pair.close();
  if (half.pending === 0) {
    if (half.eof) half.shutdown();
    else half.src.readStart();
  }
}

class Pair {
  constructor(client, upstream) {
    this.client = client;
    this.upstream = upstream;
    this.halfClosed = 0;
    this.closed = false;
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    new Half(client, upstream, this).start();
    new Half(upstream, client, this).start();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
    this.upstream.close();
  }
}

for (const l of listens) {
  const server = new TCP(TCPConstants.SERVER);
  const err = server.bind('127.0.0.1', l.port) || server.listen(511);
  if (err) {
    console.error(`raw-handle-proxy: cannot listen on ${l.port} (${err})`);
    process.exit(1);
  }
  server.onconnection = (status, client) => {
    if (status !== 0 || !client) return;
    const upstream = new TCP(TCPConstants.SOCKET);
    const req = new TCPConnectWrap();
    req.oncomplete = (st) => {
      if (st !== 0) {
        client.close();
        upstream.close();
        return;
      }
      new Pair(client, upstream);
    };
    req.address = l.host;
    req.port = l.tport;
    if (upstream.connect(req, l.host, l.tport) !== 0) {
      client.close();
      upstream.close();
    }
  };
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
console.error(`raw-handle-proxy: ${listens.map((l) => `${l.port} → ${l.host}:${l.tport}`).join(', ')}`);
