import net from 'node:net';

/**
 * Reads into reusable buffers instead of a new Buffer per chunk (net.Socket `onread`).
 *
 * A plain net.Socket allocates a fresh 64 KiB ArrayBuffer for every read, pushes it through the
 * Readable machinery and leaves it to the garbage collector. On the proxy's hot path that is
 * most of the JavaScript work per chunk, and under bulk traffic the garbage piles up (peak RSS
 * over 100 MB). With a UserBufferReader, libuv reads straight into the socket's current buffer
 * and the chunk is written to the destination at once:
 *  - the write completed synchronously (the usual case): the same buffer takes the next read;
 *  - the destination still holds the chunk (queued write): the next read gets another buffer;
 *  - the destination is over its high-water mark: reading stops until its 'drain'.
 * Buffers of closed sockets go back to a small free list, so a new connection costs no
 * allocation either. A socket starts with a 16 KiB buffer (HAProxy's default buffer size) and
 * moves to 64 KiB the first time a read fills it, so request/response traffic holds 16 KiB per
 * socket (50 clients: 1.6 instead of 6.4 MB) and bulk transfers still read 64 KiB at a time:
 * less CPU per request and a third less peak RSS under bulk (bench/RESULTS.md, "What each change
 * bought").
 *
 * Only sockets this package connects have one (net.connect's documented `onread` option):
 * net.Server has no such option for accepted sockets, which forward their 'data' chunks.
 *
 * Before piping starts (e.g. during a Redis handshake) every chunk is copied into the socket's
 * Readable side, so 'data' listeners, pause() and unshift() behave as usual. While piping,
 * 'data' listeners (observers) are still called, with a view that is only valid during the call.
 */
export class UserBufferReader {
  socket: net.Socket | undefined;
  private buf: Buffer | undefined;
  private size: BufferSize = SMALL;
  private dst: net.Socket | undefined;
  private readonly resume = (): void => {
    this.socket?.resume();
  };

  readonly onread = {
    buffer: (): Buffer => (this.buf ??= takeBuffer(this.size)),
    callback: (n: number, b: Buffer): boolean => this.onData(n, b),
  };

  private onData(n: number, b: Buffer): boolean {
    const chunk = n === b.length ? b : b.subarray(0, n);
    const dst = this.dst;
    const src = this.socket!;
    if (dst === undefined) return src.push(Buffer.from(chunk));
    if (src.listenerCount('data') > 0) src.emit('data', chunk);
    const ok = dst.write(chunk);
    // The write did not complete at once: the destination keeps a reference to this buffer.
    if (dst.writableLength > 0) this.buf = undefined;
    // A full read: more is waiting, so this is bulk traffic; read it in larger chunks.
    if (n === b.length && this.size === SMALL) {
      this.size = LARGE;
      if (this.buf !== undefined) giveBack(this.buf);
      this.buf = undefined;
    }
    if (!ok) {
      dst.once('drain', this.resume);
      return false;
    }
    return true;
  }

  /**
   * Forward everything read from `socket` to `dst`: first what sits in the Readable buffer
   * (bytes read or unshifted before piping), then every chunk as it arrives. The end of the
   * input ('end') is the caller's to pass on (SocketPipe), and so is release() once closed.
   */
  pipeTo(dst: net.Socket): void {
    const src = this.socket!;
    for (let c = src.read() as Buffer | null; c !== null; c = src.read() as Buffer | null) dst.write(c);
    this.dst = dst;
    src.resume();
  }

  /** The socket is closed: its buffer goes back to the free list. */
  release(): void {
    if (this.buf !== undefined) giveBack(this.buf);
    this.buf = undefined;
  }
}

const SMALL = 16 * 1024;
const LARGE = 64 * 1024;
type BufferSize = typeof SMALL | typeof LARGE;
/** Free buffers kept for new connections, per size (at most 1 MiB each). */
const free: Record<BufferSize, Buffer[]> = { [SMALL]: [], [LARGE]: [] };
const MAX_FREE: Record<BufferSize, number> = { [SMALL]: 64, [LARGE]: 16 };

function takeBuffer(size: BufferSize): Buffer {
  return free[size].pop() ?? Buffer.allocUnsafeSlow(size);
}

function giveBack(b: Buffer): void {
  const size = b.length as BufferSize;
  const list = free[size];
  if (list !== undefined && list.length < MAX_FREE[size]) list.push(b);
}

const readers = new WeakMap<net.Socket, UserBufferReader>();

export function readerOf(socket: net.Socket): UserBufferReader | undefined {
  return readers.get(socket);
}

/**
 * A half-open TCP connection to host:port with a UserBufferReader (net.connect's documented
 * `onread` option). The options are one literal of always the same shape: an object spread here
 * sent V8 through its slow property-definition path on every connect, and a `noDelay` option
 * (Node 20) made the option reads in net.Socket's constructor miss V8's inline caches on every
 * socket, thousands of instructions each; TCP_NODELAY is set by the pipe instead.
 */
export function connectWithReader(host: string, port: number): net.Socket {
  const reader = new UserBufferReader();
  const socket = net.connect({ host, port, allowHalfOpen: true, onread: reader.onread });
  reader.socket = socket;
  readers.set(socket, reader);
  return socket;
}
