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
 * socket (50 clients: 1.6 instead of 6.4 MB) and bulk transfers still read 64 KiB at a time. Measured in bench/ (issue 7): about 20 % less proxy CPU per request, bulk
 * throughput up, peak RSS under bulk down by a third.
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
   * (bytes read or unshifted before piping), then every chunk as it arrives; end `dst` at EOF.
   */
  pipeTo(dst: net.Socket): void {
    const src = this.socket!;
    for (let c = src.read() as Buffer | null; c !== null; c = src.read() as Buffer | null) dst.write(c);
    this.dst = dst;
    // A peer that closed before piping started (e.g. a TCP health check: connect, then FIN) may
    // have had its 'end' emitted already while the socket waited for its upstream; Readable.pipe()
    // handles that case too. Without this the FIN never reached the other side, and the
    // connection stayed open until a drain timeout.
    if (src.readableEnded) dst.end();
    else src.once('end', () => dst.end());
    src.once('close', () => this.release());
    src.resume();
  }

  private release(): void {
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

/** net.connect with a UserBufferReader. */
export function connectWithReader(options: net.TcpNetConnectOpts): net.Socket {
  const reader = new UserBufferReader();
  const socket = net.connect({ ...options, onread: reader.onread });
  reader.socket = socket;
  readers.set(socket, reader);
  return socket;
}

/**
 * Give an accepted socket (from a net.Server created with `pauseOnConnect: true`) a
 * UserBufferReader. net.Server has no `onread` option, so the connection's handle is moved to a
 * new net.Socket that has one; the original object is retired (it owns no file descriptor any
 * more). Returns the socket unchanged when this Node.js does not allow it.
 */
export function adoptWithReader(accepted: net.Socket): net.Socket {
  const holder = accepted as unknown as { _handle: unknown };
  const handle = holder._handle;
  if (!handle || accepted.destroyed || accepted.readableFlowing === true) return accepted;
  const reader = new UserBufferReader();
  let socket: net.Socket;
  try {
    socket = new net.Socket({
      handle,
      allowHalfOpen: true,
      readable: true,
      writable: true,
      pauseOnCreate: true,
      onread: reader.onread,
    } as net.SocketConstructorOpts);
  } catch {
    return accepted;
  }
  holder._handle = null;
  accepted.destroy(); // bookkeeping only (server connection count); closes no descriptor
  reader.socket = socket;
  readers.set(socket, reader);
  return socket;
}
