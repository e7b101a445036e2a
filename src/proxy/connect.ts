import type net from 'node:net';
import type { Endpoint } from '../cluster/endpoint.js';
import { codeOf } from './pipe.js';

/** Who hears how a ConnectAttempt ended. */
export interface AttemptOwner {
  /** `socket` once connected; undefined and an errno-style `code` once failed (the socket is destroyed then). */
  attemptDone(attempt: ConnectAttempt, socket: net.Socket | undefined, code: string): void;
}

/**
 * One connect to an endpoint, callbacks only: opens a socket and reports to its owner once it is
 * usable — 'connect' for plain sockets, 'secureConnect' for TLS sockets (so a tls.connect() hook
 * works unchanged) — or has failed (error, close, cancel(code)). Three listeners on the socket,
 * removed when it settles; no promise, no timer: its owner keeps the time (see ClientSession).
 */
export class ConnectAttempt {
  socket: net.Socket | undefined;
  /** The endpoint's generation (its address) when the attempt started. */
  readonly generation: number;
  /** The address dialled (a peer may have several: IPv4 and IPv6). */
  readonly dialled: string;
  private settled = false;
  private readyEvent: 'connect' | 'secureConnect' = 'connect';

  constructor(
    /** Reassignable: an attempt that lost a race can be handed to someone who waits for its outcome. */
    public owner: AttemptOwner,
    readonly ep: Endpoint,
    /** Clock ms (the owner's clock). */
    readonly startedAt: number,
  ) {
    this.generation = ep.generation;
    this.dialled = ep.host;
  }

  /**
   * Opens the socket. A socket that cannot even be made (EMFILE, a hook that throws) is reported
   * at once, synchronously: the owner must be ready for attemptDone before calling this.
   */
  open(create: (ep: Endpoint) => net.Socket): void {
    let socket: net.Socket;
    try {
      socket = create(this.ep);
    } catch (err) {
      this.settled = true;
      this.owner.attemptDone(this, undefined, codeOf(err));
      return;
    }
    this.socket = socket;
    // A tls.TLSSocket says so (`encrypted`); not importing node:tls keeps it out of plaintext processes.
    if ((socket as { encrypted?: unknown }).encrypted === true) this.readyEvent = 'secureConnect';
    socket.on(this.readyEvent, this.onReady);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  get pending(): boolean {
    return !this.settled;
  }

  /** Give up now with `code` (the deadline passed, the endpoint went down): reported to the owner. */
  cancel(code: string): void {
    if (!this.settle()) return;
    destroyQuietly(this.socket!);
    this.owner.attemptDone(this, undefined, code);
  }

  /** Give up now, telling nobody (the client went away, or another attempt won). */
  drop(): void {
    if (this.settle()) destroyQuietly(this.socket!);
  }

  private readonly onReady = (): void => {
    if (this.settle()) this.owner.attemptDone(this, this.socket, '');
  };

  private readonly onError = (err: Error): void => this.cancel(codeOf(err));
  private readonly onClose = (): void => this.cancel('ECONNRESET');

  /** Ends the attempt: false if it had ended already. */
  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    const socket = this.socket!;
    socket.removeListener(this.readyEvent, this.onReady);
    socket.removeListener('error', this.onError);
    socket.removeListener('close', this.onClose);
    return true;
  }
}

/** Destroy a socket nobody listens to any more: errors racing the destroy must not go unhandled. */
export function destroyQuietly(socket: net.Socket): void {
  socket.on('error', noop);
  socket.destroy();
}

export function noop(): void {}
