import type net from 'node:net';
import { deferKeepAlive, withdrawKeepAlive, type KeepAliveTarget } from './keepalive.js';
import { readerOf, type UserBufferReader } from './reader.js';

export interface PipeOptions {
  /** Destroy both sides after this long without traffic in either direction. 0/undefined = never. */
  idleTimeoutMs?: number;
  /** TCP keep-alive initial delay on both sockets. Default 30000 ms. */
  keepAliveInitialDelayMs?: number;
  /** Called once, when both sockets are closed (what `closed` resolves with, without a promise). */
  onClosed?: (result: PipeResult) => void;
}

export interface PipeResult {
  /** Bytes read from / written to the downstream (client) socket. */
  clientBytesRead: number;
  clientBytesWritten: number;
  /** Bytes read from / written to the upstream socket (including any handshake bytes). */
  upstreamBytesRead: number;
  upstreamBytesWritten: number;
  /** Errno-style code of the first error that tore the pipe down ('ECONNRESET', 'EIDLE', …). */
  error: string | undefined;
  /** Which side failed first, if any. */
  errorSide: 'client' | 'upstream' | undefined;
}

type Side = 'client' | 'upstream';

/**
 * A bidirectional byte pipe between two connected sockets.
 *
 * Hot path: a socket opened by this package (the upstream) reads into reusable buffers and
 * writes each chunk straight to the other side (UserBufferReader, reader.ts); any other socket
 * (the accepted client, TLS, custom hooks) forwards its 'data' chunks. Both stop reading when
 * write() returns false and go on at 'drain', so back-pressure is honoured; nothing is logged
 * per chunk, and byte counts come from the sockets' own counters when the pipe closes.
 *
 * Half-close: both sockets get allowHalfOpen, and the end of one side's input ends the other
 * side's output, so a FIN travels through while the other direction keeps flowing. When that
 * other side has already sent its own FIN and every byte for it was handed to the kernel, it is
 * closed instead of shut down: close() sends the same FIN after the queued bytes, without a
 * shutdown() call and its round trip through the event loop. Any error, an abnormal close of one
 * side, or the idle timeout destroys both sockets.
 *
 * Per connection it adds no timer (keep-alive is switched on later, for connections that live,
 * see keepalive.ts; the idle timeout is the socket's own) and no promise unless `closed` is read.
 */
export class SocketPipe implements KeepAliveTarget {
  private error: string | undefined;
  private errorSide: Side | undefined;
  private open = 2;
  private finished = false;
  /** A side this pipe closed on purpose once both directions were done (not an abnormal close). */
  private clientDone = false;
  private upstreamDone = false;
  private result: PipeResult | undefined;
  private resultPromise: Promise<PipeResult> | undefined;
  private resolveResult: ((r: PipeResult) => void) | undefined;
  private readonly keepAliveDelay: number;
  private readonly onClosed: ((r: PipeResult) => void) | undefined;
  private readonly upstreamReader: UserBufferReader | undefined;
  private readonly clientReader: UserBufferReader | undefined;

  constructor(
    readonly client: net.Socket,
    readonly upstream: net.Socket,
    options: PipeOptions = {},
  ) {
    this.keepAliveDelay = options.keepAliveInitialDelayMs ?? 30_000;
    this.onClosed = options.onClosed;
    client.allowHalfOpen = true;
    upstream.allowHalfOpen = true;
    // A no-op (no system call) for a client accepted with TCP_NODELAY (ProxyServer).
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('error', this.onClientError);
    upstream.on('error', this.onUpstreamError);
    client.on('close', this.onClose);
    upstream.on('close', this.onClose);
    if (options.idleTimeoutMs && options.idleTimeoutMs > 0) {
      // Every byte in either direction passes through the client socket, so its inactivity
      // timer covers both directions.
      client.setTimeout(options.idleTimeoutMs, this.onIdle);
    }
    if (client.destroyed || upstream.destroyed) {
      this.fail(client.destroyed ? 'client' : 'upstream', 'ECONNRESET');
      // 'close' may already have fired: count what is closed.
      this.open = (client.closed ? 0 : 1) + (upstream.closed ? 0 : 1);
      if (this.open === 0) queueMicrotask(() => this.finish());
      return;
    }
    deferKeepAlive(this);
    client.on('end', this.onClientEnd);
    upstream.on('end', this.onUpstreamEnd);
    // A side whose input ended while the upstream was being connected (a client that sent its
    // request and half-closed; a server that closed during the handshake) had its 'end' already.
    if (client.readableEnded) this.onClientEnd();
    if (upstream.readableEnded) this.onUpstreamEnd();
    this.clientReader = readerOf(client);
    this.upstreamReader = readerOf(upstream);
    if (this.clientReader) this.clientReader.pipeTo(upstream);
    else forwardData(client, upstream);
    if (this.upstreamReader) this.upstreamReader.pipeTo(client);
    else forwardData(upstream, client);
  }

  /** Resolves once both sockets are closed. */
  get closed(): Promise<PipeResult> {
    if (this.resultPromise === undefined) {
      this.resultPromise = this.result
        ? Promise.resolve(this.result)
        : new Promise<PipeResult>((resolve) => (this.resolveResult = resolve));
    }
    return this.resultPromise;
  }

  /** Tear both sides down now (removal of the endpoint, end of a drain). */
  destroy(code = 'ECANCELED'): void {
    this.fail(undefined, code);
  }

  enableKeepAlive(): void {
    this.client.setKeepAlive(true, this.keepAliveDelay);
    this.upstream.setKeepAlive(true, this.keepAliveDelay);
  }

  private readonly onClientError = (err: Error): void => this.fail('client', codeOf(err));
  private readonly onUpstreamError = (err: Error): void => this.fail('upstream', codeOf(err));
  private readonly onIdle = (): void => this.fail(undefined, 'EIDLE');
  private readonly onClientEnd = (): void => {
    if (endOrClose(this.upstream)) this.upstreamDone = true;
  };
  private readonly onUpstreamEnd = (): void => {
    if (endOrClose(this.client)) this.clientDone = true;
  };

  private readonly onClose = (): void => {
    // A side that closed without both finishing reading and writing went away abnormally
    // (e.g. destroyed): the other side has nothing left to talk to.
    if (this.error === undefined) {
      if (this.client.closed && !this.clientDone && !(this.client.readableEnded && this.client.writableFinished)) {
        this.fail('client', 'ECONNRESET');
      } else if (this.upstream.closed && !this.upstreamDone && !(this.upstream.readableEnded && this.upstream.writableFinished)) {
        this.fail('upstream', 'ECONNRESET');
      }
    }
    if (--this.open <= 0) this.finish();
  };

  private fail(side: Side | undefined, code: string): void {
    if (this.error === undefined) {
      this.error = code;
      this.errorSide = side;
    }
    if (!this.client.destroyed) this.client.destroy();
    if (!this.upstream.destroyed) this.upstream.destroy();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    withdrawKeepAlive(this);
    this.clientReader?.release();
    this.upstreamReader?.release();
    if (this.client.timeout) this.client.setTimeout(0);
    const result: PipeResult = {
      clientBytesRead: this.client.bytesRead,
      clientBytesWritten: this.client.bytesWritten,
      upstreamBytesRead: this.upstream.bytesRead,
      upstreamBytesWritten: this.upstream.bytesWritten,
      error: this.error,
      errorSide: this.errorSide,
    };
    this.result = result;
    this.resolveResult?.(result);
    this.onClosed?.(result);
  }
}

/**
 * The input that feeds `dst` ended: pass the FIN on. Returns true when `dst` was closed instead
 * of shut down, because its own input had ended too and nothing waits to be written: close()
 * then sends the same FIN, after whatever the kernel still holds. (Not for TLS, whose orderly
 * end also sends a close_notify alert.)
 */
function endOrClose(dst: net.Socket): boolean {
  if (dst.readableEnded && dst.writableLength === 0 && !dst.destroyed && (dst as { encrypted?: boolean }).encrypted !== true) {
    dst.destroy();
    return true;
  }
  dst.end();
  return false;
}

/**
 * src → dst for a socket without a reader: every 'data' chunk is written on; reading pauses
 * while dst is over its high-water mark. Bytes that arrived before (held while the upstream was
 * being connected) come first: attaching the listener starts the flow from the buffer.
 *
 * Such a socket (the accepted client: net.Server has no `onread` option) gets a new Buffer from
 * Node for every read, and its memory lies outside V8's heap until a collection frees it. V8
 * answers every ~64 MB of such memory with a full mark-compact of the whole heap: under an upload
 * that was ~10 per second, and uploads ran at half the speed of downloads (bench/RESULTS.md,
 * "Bulk: two directions"). So a chunk that this pipe alone holds — it owns its whole ArrayBuffer
 * (Node's read buffers do; pooled slices never) and the write completed at once, so the kernel
 * has the bytes and nothing queues the chunk — is released at once with the standard
 * `ArrayBuffer.prototype.transfer(0)` (ES2024; Node 22 and later, skipped on Node 20): its memory
 * goes back at once, and no collection is needed for it (uploads about twice as fast, half the
 * peak RSS: figures in bench/RESULTS.md). Later 'data' listeners
 * (observers such as the retiring watch in listener.ts) may see an empty, detached chunk: they
 * must not read it.
 */
function forwardData(src: net.Socket, dst: net.Socket): void {
  let resume: (() => void) | undefined;
  src.on('data', (chunk: Buffer) => {
    const ok = dst.write(chunk);
    if (chunk.byteLength >= RELEASE_MIN_BYTES && dst.writableLength === 0) release(chunk);
    if (!ok) {
      src.pause();
      dst.once('drain', (resume ??= () => src.resume()));
    }
  });
  src.resume();
}

/**
 * Only chunks this large are released: the memory that forces collections comes from bulk reads
 * (64 KiB each), while releasing a small request (a new, empty ArrayBuffer per transfer) cost
 * ~1 µs of CPU per request at -P 1 and saved nothing measurable.
 */
const RELEASE_MIN_BYTES = 16 * 1024;

/** ES2024's ArrayBuffer.prototype.transfer, absent on Node 20 (and from this project's TypeScript lib). */
type TransferableArrayBuffer = ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };

/** Frees a chunk's memory now when the chunk is the only view of its ArrayBuffer (see forwardData). */
export function release(chunk: Buffer): void {
  const ab = chunk.buffer as TransferableArrayBuffer;
  if (chunk.byteOffset === 0 && chunk.byteLength === ab.byteLength && ab.transfer !== undefined) ab.transfer(0);
}

export function codeOf(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.name : 'EUNKNOWN';
}
