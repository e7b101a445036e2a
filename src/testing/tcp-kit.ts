// Shared helpers for the unit tests (real TCP on 127.0.0.1, ephemeral ports). src/testing/ is
// compiled for the tests only (tsconfig.json leaves it out of dist/).
import net from 'node:net';
import type { EndpointSpec, SourceKind } from '../discovery/source.js';

export function spec(id: string, port: number, extra: Partial<EndpointSpec> = {}): EndpointSpec {
  const source: SourceKind = extra.source ?? 'static';
  return {
    id,
    source,
    host: '127.0.0.1',
    port,
    priority: 0,
    weight: 0,
    txt: {},
    label: id,
    ...extra,
  };
}

/** Deterministic PRNG (mulberry32) for balancer statistics. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `cond` every 5 ms until true; throws after timeoutMs. */
export async function waitFor(cond: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export interface TestServer {
  server: net.Server;
  port: number;
  sockets: Set<net.Socket>;
  accepted: number;
  close(): Promise<void>;
}

/**
 * A TCP server on 127.0.0.1:0. Default behaviour: write `greeting` (if any) on accept, then echo.
 * Pass `onSocket` to take over.
 */
export async function startServer(
  opts: { greeting?: string; onSocket?: (s: net.Socket) => void; port?: number } = {},
): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const ts: TestServer = {
    server: net.createServer({ allowHalfOpen: true }),
    port: 0,
    sockets,
    accepted: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => (ts.server.listening ? ts.server.close(() => r()) : r()));
    },
  };
  ts.server.on('connection', (s) => {
    ts.accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    if (opts.onSocket) return opts.onSocket(s);
    if (opts.greeting) s.write(opts.greeting);
    s.pipe(s);
  });
  await new Promise<void>((resolve, reject) => {
    ts.server.once('error', reject);
    ts.server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  ts.port = (ts.server.address() as net.AddressInfo).port;
  return ts;
}

/** A port on 127.0.0.1 that refuses connections (bound once, then released). */
export async function refusedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function connectTo(port: number, allowHalfOpen = true): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Read until `n` bytes arrived (resolves with them) or the socket ends/times out (rejects). */
export function readBytes(s: net.Socket, n: number, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const done = (err?: Error): void => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('close', onEnd);
      s.off('error', onErr);
      s.pause();
      if (err) return reject(err);
      const all = Buffer.concat(chunks);
      if (all.length > n) s.unshift(all.subarray(n));
      resolve(all.subarray(0, n));
    };
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= n) done();
    };
    const onEnd = (): void => done(new Error(`socket ended after ${got}/${n} bytes`));
    const onErr = (e: Error): void => done(e);
    const timer = setTimeout(() => done(new Error(`timed out after ${got}/${n} bytes`)), timeoutMs);
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('close', onEnd);
    s.once('error', onErr);
    s.resume();
  });
}

/**
 * Resolves when the peer closed the connection and the socket is closed (a half-open socket
 * answers the peer's FIN with its own end()); rejects after timeoutMs.
 */
export function closed(s: net.Socket, timeoutMs = 3000): Promise<void> {
  if (s.closed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('socket did not close')), timeoutMs);
    s.on('error', () => {});
    if (s.readableEnded) s.end();
    else s.once('end', () => s.end());
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.resume();
  });
}
