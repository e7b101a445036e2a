import type net from 'node:net';
import type { Endpoint } from '../cluster/endpoint.js';
import type { PipeResult, SocketPipe } from './pipe.js';

export type ConnectionState = 'pending' | 'open' | 'closed';

let nextId = 1;

const DONE = Promise.resolve();

/**
 * One accepted client connection through a listener, as others see it: 'pending' while an
 * upstream is being chosen/connected (client bytes are held), 'open' while piping, then
 * 'closed'. How it gets from one to the next is its ClientSession's (session.ts).
 *
 * Cheap to make: the `done` promise exists only once someone asks for it (a drain, a retirement),
 * not for every connection.
 */
export abstract class ProxyConnection {
  readonly id = nextId++;
  state: ConnectionState = 'pending';
  /** Endpoint being tried (pending) or piped to (open); a relay's is its target. */
  endpoint: Endpoint | undefined;
  /** Endpoint.generation (its address) when the connection was piped to it. */
  endpointGeneration = 0;
  upstream: net.Socket | undefined;
  pipe: SocketPipe | undefined;
  /** Connect attempts made (1 = first endpoint worked). */
  attempts = 0;
  /** Byte counts and error once closed (undefined when it never got an upstream). */
  result: PipeResult | undefined;
  /** The set of live connections this one leaves when it is marked closed. */
  registry: Set<ProxyConnection> | undefined;
  private remoteText: string | undefined;
  private donePromise: Promise<void> | undefined;
  private resolveDone: (() => void) | undefined;

  constructor(
    readonly client: net.Socket,
    /** Epoch ms (the listener's clock) of the accept. */
    readonly startedAt: number,
  ) {}

  /**
   * "address:port" of the client. Computed on first use (a getpeername() per accepted client
   * measured 10 % of the proxy's CPU under connection churn): read it while the connection is open.
   */
  get remote(): string {
    return (this.remoteText ??= `${this.client.remoteAddress ?? '?'}:${this.client.remotePort ?? 0}`);
  }

  /** Resolves once the connection is fully closed and accounted for. */
  get done(): Promise<void> {
    if (this.donePromise === undefined) {
      this.donePromise = this.state === 'closed' ? DONE : new Promise<void>((resolve) => (this.resolveDone = resolve));
    }
    return this.donePromise;
  }

  /** Close now. Pending: stop connecting and drop the client, quietly. Open: destroy both sides. */
  close(code = 'ECANCELED'): void {
    if (this.state === 'closed') return;
    if (this.state === 'pending') this.abandon(code);
    if (this.pipe) {
      this.pipe.destroy(code);
    } else {
      this.upstream?.destroy();
      this.client.destroy();
    }
  }

  /** Pending, closed from outside (client reset, drain, stop): give up on this client. */
  protected abstract abandon(code: string): void;

  /** The connection is gone: leaves the registry, resolves `done`. */
  markClosed(result?: PipeResult): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.result = result;
    this.registry?.delete(this);
    this.resolveDone?.();
  }
}
