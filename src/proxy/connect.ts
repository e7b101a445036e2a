import net from 'node:net';
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

function noop(): void {}
