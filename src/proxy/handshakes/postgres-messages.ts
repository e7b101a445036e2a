import type net from 'node:net';
import { HandshakeError } from '../handshake.js';
import { type BackendMessage, readMessage } from './postgres-wire.js';

export interface RawBackendMessage extends BackendMessage {
  /** The whole message, type byte included (a view: copy it to keep it). */
  raw: Buffer;
}

type Waiter = { want: 'message' | 'byte'; resolve: (v: RawBackendMessage | number) => void; reject: (e: Error) => void };

/**
 * The server's messages during a handshake, one at a time (`await next()`), read from a socket
 * until release(): then the socket is paused, our listeners are gone, and what was read but not
 * consumed is handed back, so that the caller can push it back (unshift) for the pipe.
 * Rejects with a HandshakeError when the server ends the connection or the socket closes (the
 * listener destroys the upstream of a handshake it gives up on: a timeout, the client gone), so
 * it needs no AbortSignal listener (an EventTarget listener costs more than a socket's).
 */
export class PostgresMessages {
  private buf: Buffer = Buffer.alloc(0);
  private at = 0;
  private waiter: Waiter | undefined;
  private failure: Error | undefined;
  private released = false;

  constructor(readonly socket: net.Socket) {
    if (socket.destroyed) this.failure = new HandshakeError('the connection closed during the handshake', 'ECONNRESET');
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
    socket.resume();
  }

  next(): Promise<RawBackendMessage> {
    return this.wait('message') as Promise<RawBackendMessage>;
  }

  /** One byte (the answer to an SSLRequest). */
  byte(): Promise<number> {
    return this.wait('byte') as Promise<number>;
  }

  /** Put bytes back in front of what is still to be read. */
  unread(bytes: Buffer): void {
    this.buf = Buffer.concat([bytes, this.buf.subarray(this.at)]);
    this.at = 0;
  }

  /**
   * Stop reading; returns a copy of what was read and not consumed yet, after `again` (a message
   * already returned by next(), to include it once more).
   */
  release(again?: RawBackendMessage): Buffer {
    if (!this.released) {
      this.released = true;
      this.socket.pause();
      this.socket.off('data', this.onData);
      this.socket.off('end', this.onEnd);
      this.socket.off('close', this.onEnd);
      this.socket.off('error', this.onError);
    }
    const rest = this.buf.subarray(this.at);
    return again === undefined ? Buffer.from(rest) : Buffer.concat([again.raw, rest]);
  }

  private wait(want: Waiter['want']): Promise<RawBackendMessage | number> {
    return new Promise((resolve, reject) => {
      this.waiter = { want, resolve, reject };
      this.deliver();
    });
  }

  private deliver(): void {
    const w = this.waiter;
    if (w === undefined) return;
    try {
      if (w.want === 'byte') {
        if (this.at < this.buf.length) {
          this.waiter = undefined;
          w.resolve(this.buf[this.at++]!);
          return;
        }
      } else {
        const m = readMessage(this.buf, this.at);
        if (m !== undefined) {
          this.waiter = undefined;
          this.at = m.next;
          w.resolve({ type: m.type, body: m.body, start: m.start, next: m.next, raw: this.buf.subarray(m.start, m.next) });
          return;
        }
      }
    } catch (err) {
      this.waiter = undefined;
      w.reject(err as Error);
      return;
    }
    if (this.failure !== undefined) {
      this.waiter = undefined;
      w.reject(this.failure);
    }
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.at === this.buf.length ? chunk : Buffer.concat([this.buf.subarray(this.at), chunk]);
    this.at = 0;
    this.deliver();
  };

  private fail(err: Error): void {
    this.failure ??= err;
    this.deliver();
  }

  private readonly onEnd = (): void => this.fail(new HandshakeError('the server closed the connection during the handshake', 'ECONNRESET'));
  private readonly onError = (err: Error): void =>
    this.fail(new HandshakeError(`connection error during the handshake (${(err as NodeJS.ErrnoException).code ?? err.name})`, 'ECONNRESET'));
}
