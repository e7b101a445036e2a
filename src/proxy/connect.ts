import type net from 'node:net';
import type { DeadlineQueue } from './deadlines.js';
import { codeOf } from './pipe.js';

/** Error from connectSocket; `code` is an errno-style string such as ECONNREFUSED or ETIMEDOUT. */
export class ConnectError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConnectError';
  }
}

/**
 * Open a socket with `create` and wait until it is usable: 'connect' for plain sockets,
 * 'secureConnect' for TLS sockets (so a tls.connect() hook works unchanged). Rejects with a
 * ConnectError on error, after `timeoutMs`, or when `signal` aborts; the socket is destroyed then.
 * While pending, the attempt's cancel function sits in `cancellers` (if given): calling it fails
 * the attempt with that code. (Cheaper than an AbortController per attempt.)
 * `onSlow` (if given) is called once when the attempt is still pending after `slowMs`; the attempt
 * goes on (the same timer, re-armed: nothing more on the fast path).
 */
export function connectSocket(
  create: () => net.Socket,
  timeoutMs: number,
  signal?: AbortSignal,
  cancellers?: Set<(code: string) => void>,
  slowMs?: number,
  onSlow?: () => void,
): Promise<net.Socket> {
  if (signal?.aborted) return Promise.reject(new ConnectError('ECANCELED', 'connect aborted'));
  let socket: net.Socket;
  try {
    socket = create();
  } catch (err) {
    return Promise.reject(new ConnectError(codeOf(err), err instanceof Error ? err.message : String(err)));
  }
  return awaitConnect(socket, timeoutMs, signal, cancellers, slowMs, onSlow);
}

/**
 * connectSocket for a socket already connecting (one a ConnectAttempt released): the same
 * settlement, timeout, abort and cancellation.
 */
export function awaitConnect(
  socket: net.Socket,
  timeoutMs: number,
  signal?: AbortSignal,
  cancellers?: Set<(code: string) => void>,
  slowMs?: number,
  onSlow?: () => void,
): Promise<net.Socket> {
  if (signal?.aborted) {
    socket.on('error', noop);
    socket.destroy();
    return Promise.reject(new ConnectError('ECANCELED', 'connect aborted'));
  }
  // A tls.TLSSocket says so (`encrypted`); not importing node:tls keeps it out of plaintext processes.
  const readyEvent = (socket as { encrypted?: unknown }).encrypted === true ? 'secureConnect' : 'connect';
  return new Promise<net.Socket>((resolve, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.removeListener(readyEvent, onReady);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      signal?.removeEventListener('abort', onAbort);
      cancellers?.delete(onCancel);
    };
    const failWith = (code: string, message: string): void => {
      cleanup();
      socket.on('error', noop); // errors racing the destroy must not go unhandled
      socket.destroy();
      reject(new ConnectError(code, message));
    };
    const onReady = (): void => {
      cleanup();
      // Until the caller attaches its own handlers, an error (which always destroys the socket,
      // observable through .destroyed / 'close') must not crash the process.
      socket.on('error', noop);
      resolve(socket);
    };
    const onError = (err: Error): void => failWith(codeOf(err), err.message);
    const onClose = (): void => failWith('ECONNRESET', 'socket closed while connecting');
    const onAbort = (): void => failWith('ECANCELED', 'connect aborted');
    const onCancel = (code: string): void => failWith(code, 'connect cancelled');
    let slowFirst = onSlow !== undefined && slowMs !== undefined && slowMs < timeoutMs;
    const onTimer = (): void => {
      if (!slowFirst) return failWith('ETIMEDOUT', `connect timed out after ${timeoutMs} ms`);
      slowFirst = false;
      timer = setTimeout(onTimer, timeoutMs - slowMs!);
      onSlow!();
    };
    let timer = setTimeout(onTimer, slowFirst ? slowMs! : timeoutMs);
    socket.once(readyEvent, onReady);
    socket.once('error', onError);
    socket.once('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
    cancellers?.add(onCancel);
  });
}

/**
 * One connect, callback style, for the common case (see ClientHandler in listener.ts): opens a
 * socket with `create` and reports through `done` once it is usable — 'connect' for plain
 * sockets, 'secureConnect' for TLS sockets — or has failed (error, close, cancel(code)). No
 * promise, no timer and no AbortSignal of its own: three listeners on the socket, removed when it
 * settles, and a deadline in a DeadlineQueue shared by every attempt of a listener, whose expiry
 * callback decides what a late attempt becomes (fail with timeout(), or release() it to a slower
 * path that keeps waiting).
 */
export class ConnectAttempt<T> {
  readonly socket: net.Socket | undefined;
  private settled = false;
  private readonly readyEvent: 'connect' | 'secureConnect' = 'connect';

  constructor(
    /** Who made the attempt (read by the queue's expiry callback and by cancellation scans). */
    readonly owner: T,
    create: () => net.Socket,
    private readonly deadlines: DeadlineQueue<ConnectAttempt<T>>,
    /** `done(socket)` once connected, `done(undefined, code, message)` once failed (the socket is destroyed then). */
    private readonly done: (socket: net.Socket | undefined, code: string, message: string) => void,
  ) {
    let socket: net.Socket;
    try {
      socket = create();
    } catch (err) {
      // Reported synchronously: the caller checks `pending` after construction.
      this.settled = true;
      done(undefined, codeOf(err), err instanceof Error ? err.message : String(err));
      return;
    }
    this.socket = socket;
    // A tls.TLSSocket says so (`encrypted`); not importing node:tls keeps it out of plaintext processes.
    if ((socket as { encrypted?: unknown }).encrypted === true) this.readyEvent = 'secureConnect';
    socket.on(this.readyEvent, this.onReady);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    deadlines.add(this);
  }

  get pending(): boolean {
    return !this.settled;
  }

  /** Give up now with `code` (the client went away, the endpoint went down, the deadline passed). */
  cancel(code: string, message = 'connect cancelled'): void {
    if (!this.settle()) return;
    const socket = this.socket!;
    socket.on('error', noop); // errors racing the destroy must not go unhandled
    socket.destroy();
    this.done(undefined, code, message);
  }

  /**
   * Stop watching the socket without closing it, and hand it over (to be awaited by someone
   * else, see awaitConnect). `done` is not called. Undefined if the attempt had settled.
   */
  release(): net.Socket | undefined {
    return this.settle() ? this.socket : undefined;
  }

  private readonly onReady = (): void => {
    if (this.settle()) this.done(this.socket, '', '');
  };

  private readonly onError = (err: Error): void => this.cancel(codeOf(err), err.message);
  private readonly onClose = (): void => this.cancel('ECONNRESET', 'socket closed while connecting');

  /** Ends the attempt: false if it had ended already. */
  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.deadlines.delete(this);
    const socket = this.socket!;
    socket.removeListener(this.readyEvent, this.onReady);
    socket.removeListener('error', this.onError);
    socket.removeListener('close', this.onClose);
    return true;
  }
}

export function noop(): void {}
