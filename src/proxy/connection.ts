import type net from 'node:net';
import type { Endpoint } from '../cluster/endpoint.js';
import type { PipeResult, SocketPipe } from './pipe.js';

export type ConnectionState = 'pending' | 'open' | 'closed';

let nextId = 1;

/**
 * Abort reason of a connection's signal: abort() without one builds a DOMException (with a
 * stack trace) per connection, measured at 6 % of the proxy's CPU under connection churn.
 */
const CLOSED = new Error('connection closed');
CLOSED.name = 'AbortError';

const DONE = Promise.resolve();

/**
 * One accepted client connection through a listener: 'pending' while an upstream is being
 * chosen/connected (client bytes are held), 'open' while piping, then 'closed'.
 *
 * Cheap to make: the AbortSignal and the `done` promise exist only once someone asks for them
 * (a handshake, a wait for an endpoint, a drain), not for every connection.
 */
export class ProxyConnection {
  readonly id = nextId++;
  readonly startedAt = Date.now();
  state: ConnectionState = 'pending';
  /** Endpoint being tried (pending) or piped to (open). Undefined for relay connections. */
  endpoint: Endpoint | undefined;
  /** Endpoint.generation (its address) when the connection was piped to it. */
  endpointGeneration = 0;
  upstream: net.Socket | undefined;
  pipe: SocketPipe | undefined;
  /** Connect attempts made (1 = first endpoint worked). */
  attempts = 0;
  /** Byte counts and error once closed (undefined when it never got an upstream). */
  result: PipeResult | undefined;
  /** close() was called while pending: the listener gives up on this client. */
  cancelled = false;
  /** While pending: how the listener stops what it is doing for this client (called by close()). */
  onCancel: ((code: string) => void) | undefined;
  /** The set of live connections this one leaves when it is marked closed. */
  registry: Set<ProxyConnection> | undefined;
  private remoteText: string | undefined;
  private controller: AbortController | undefined;
  private donePromise: Promise<void> | undefined;
  private resolveDone: (() => void) | undefined;

  constructor(readonly client: net.Socket) {}

  /**
   * "address:port" of the client. Computed on first use (a getpeername() per accepted client
   * measured 10 % of the proxy's CPU under connection churn): read it while the connection is open.
   */
  get remote(): string {
    return (this.remoteText ??= `${this.client.remoteAddress ?? '?'}:${this.client.remotePort ?? 0}`);
  }

  /** Aborted when the connection is closed while still pending (or once closed). */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.cancelled || this.state === 'closed') this.controller.abort(CLOSED);
    }
    return this.controller.signal;
  }

  /** Resolves once the connection is fully closed and accounted for. */
  get done(): Promise<void> {
    if (this.donePromise === undefined) {
      this.donePromise = this.state === 'closed' ? DONE : new Promise<void>((resolve) => (this.resolveDone = resolve));
    }
    return this.donePromise;
  }

  /** Close now. Pending: abort the connect and drop the client. Open: destroy both sides. */
  close(code = 'ECANCELED'): void {
    if (this.state === 'closed') return;
    if (!this.cancelled) {
      this.cancelled = true;
      this.controller?.abort(CLOSED);
      const cancel = this.onCancel;
      this.onCancel = undefined;
      cancel?.(code);
    }
    if (this.pipe) {
      this.pipe.destroy(code);
    } else {
      this.upstream?.destroy();
      this.client.destroy();
    }
  }

  /** Listener bookkeeping: the connection is gone. */
  markClosed(result?: PipeResult): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.result = result;
    this.onCancel = undefined;
    this.controller?.abort(CLOSED);
    this.registry?.delete(this);
    this.resolveDone?.();
  }
}
