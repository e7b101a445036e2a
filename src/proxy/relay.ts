import { EventEmitter } from 'node:events';
import net from 'node:net';
import { ConnectAttempt, noop } from './connect.js';
import { ProxyConnection } from './connection.js';
import { DeadlineQueue } from './deadlines.js';
import { SocketPipe, type PipeResult } from './pipe.js';
import { MAX_LINGERING_REFUSALS } from './limits.js';
import { connectWithReader } from './reader.js';
import { ProxyServer, type CloseOptions, type CreateServer } from './server.js';

export interface RelayTarget {
  host: string;
  port: number;
}

export interface RelayListenerOptions {
  /** Where every connection is forwarded (e.g. the real service on 127.0.0.1). */
  target: RelayTarget;
  /** Port to listen on; 0 = ephemeral (read it back from listen()). */
  port?: number;
  /**
   * Address to bind. Default: every address, IPv6 and IPv4 (the relay exists to be reachable by
   * peers, at every address the host announces: its AAAA records too).
   */
  host?: string;
  /** Connect timeout to the target. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Close a connection after this long without traffic. Default 0 = never. */
  idleTimeoutMs?: number;
  keepAliveInitialDelayMs?: number;
  /** Opens the target socket (default net.connect); a TLSSocket is awaited until 'secureConnect'. */
  createConnection?: (target: RelayTarget) => net.Socket;
  /** Makes the accepting server (e.g. a tls.Server for mutual TLS); default a plain net.Server. */
  createServer?: CreateServer;
  /** Circuit breaker: clients open at once; one more is closed at once ('client-refused'). Default: none. */
  maxConnections?: number;
}

export type RelayListenerEvents = {
  connection: [conn: ProxyConnection];
  'upstream-connected': [conn: ProxyConnection];
  /** The target refused / timed out; the client is closed. */
  'connect-failed': [conn: ProxyConnection, code: string];
  'connection-closed': [conn: ProxyConnection, result: PipeResult | undefined];
  'listener-error': [error: Error];
  /** A client was closed at once: maxConnections were open. */
  'client-refused': [limit: 'max-connections'];
};

/**
 * Advertise side, for a service that listens only on loopback or on another host: a listener on
 * bind:port that forwards every connection to one fixed target, with the same pipe as
 * ConnectListener.
 */
export class RelayListener extends EventEmitter<RelayListenerEvents> {
  readonly target: RelayTarget;
  readonly connectTimeoutMs: number;
  readonly maxConnections: number;
  /** @internal (RelayClient) */
  readonly options: RelayListenerOptions;
  private readonly proxy: ProxyServer;
  /** @internal (RelayClient) */
  readonly create: () => net.Socket;
  /** @internal (RelayClient) Connects in flight, each timing out connectTimeoutMs after it started, on one timer. */
  readonly deadlines: DeadlineQueue<ConnectAttempt<RelayClient>>;

  constructor(options: RelayListenerOptions) {
    super();
    this.options = options;
    this.target = { ...options.target };
    this.connectTimeoutMs = Math.max(1, options.connectTimeoutMs ?? 2000);
    const hook = options.createConnection;
    this.create = hook
      ? () => hook(this.target)
      : () => connectWithReader(this.target.host, this.target.port);
    this.deadlines = new DeadlineQueue(this.connectTimeoutMs, expireRelayConnect);
    this.proxy = new ProxyServer(
      options.host,
      options.port ?? 0,
      this.onClient,
      (err) => this.emit('listener-error', err),
      options.createServer,
    );
    this.maxConnections = Math.max(1, options.maxConnections ?? Infinity);
    if (this.maxConnections !== Infinity) {
      // No error reply: a relay does not speak the service's protocol.
      const refused = (): boolean => this.emit('client-refused', 'max-connections');
      this.proxy.setLimit(this.maxConnections, (client) => {
        client.on('error', noop);
        client.destroy();
        refused();
      }, MAX_LINGERING_REFUSALS, refused);
    }
  }

  get connections(): ReadonlySet<ProxyConnection> {
    return this.proxy.connections;
  }

  get server(): net.Server {
    return this.proxy.server;
  }

  listen(): Promise<net.AddressInfo> {
    return this.proxy.listen();
  }

  address(): net.AddressInfo | undefined {
    return this.proxy.address();
  }

  /** Stop accepting; connections open or still connecting to the target drain for up to drainMs. */
  close(options: CloseOptions = {}): Promise<void> {
    return this.proxy.close({ cancelPending: false, ...options });
  }

  private readonly onClient = (client: net.Socket): void => {
    const conn = new ProxyConnection(client);
    this.proxy.track(conn);
    new RelayClient(this, conn).start();
  };
}

/**
 * One client of a RelayListener: connects to the target and pipes, callbacks only (one
 * ConnectAttempt, its deadline in the listener's shared queue; no promise, timer or AbortSignal).
 */
class RelayClient {
  private attempt: ConnectAttempt<RelayClient> | undefined;

  constructor(
    private readonly relay: RelayListener,
    private readonly conn: ProxyConnection,
  ) {}

  start(): void {
    const { relay, conn } = this;
    const client = conn.client;
    client.on('error', this.onEarlyError);
    client.on('close', this.onEarlyError);
    relay.emit('connection', conn);
    if (conn.cancelled) return this.closeWithout();
    conn.attempts = 1;
    const attempt = new ConnectAttempt(this, relay.create, relay.deadlines, this.onConnectDone);
    if (attempt.pending) {
      this.attempt = attempt;
      conn.onCancel = this.onCancel;
    }
  }

  /** The connect timeout passed (see expireRelayConnect). */
  expire(): void {
    this.attempt?.cancel('ETIMEDOUT', `connect timed out after ${this.relay.connectTimeoutMs} ms`);
  }

  private readonly onEarlyError = (): void => this.conn.close('ECONNRESET');
  private readonly onCancel = (): void => this.attempt?.cancel('ECANCELED', 'connect aborted');

  private readonly onConnectDone = (upstream: net.Socket | undefined, code: string): void => {
    const { relay, conn } = this;
    const client = conn.client;
    this.attempt = undefined;
    conn.onCancel = undefined;
    if (upstream === undefined) {
      if (!conn.cancelled) relay.emit('connect-failed', conn, code);
      return this.closeWithout();
    }
    if (conn.cancelled || client.destroyed) {
      upstream.on('error', noop);
      upstream.destroy();
      return this.closeWithout();
    }
    client.removeListener('error', this.onEarlyError);
    client.removeListener('close', this.onEarlyError);
    conn.upstream = upstream;
    const pipe = new SocketPipe(client, upstream, {
      idleTimeoutMs: relay.options.idleTimeoutMs,
      keepAliveInitialDelayMs: relay.options.keepAliveInitialDelayMs,
      onClosed: this.onPipeClosed,
    });
    conn.pipe = pipe;
    conn.state = 'open';
    // A client that leaves without having sent a byte (a TCP health check, a port probe) waits
    // for no answer: close the target side too. Half-closing it instead would leave the
    // connection open for as long as a target that never reads keeps quiet (and a stop would
    // then wait out the whole drain).
    if (client.readableEnded) this.onClientEnd();
    else client.once('end', this.onClientEnd);
    relay.emit('upstream-connected', conn);
  };

  private readonly onClientEnd = (): void => {
    if (this.conn.client.bytesRead === 0) this.conn.pipe!.destroy('ECLIENTEOF');
  };

  private readonly onPipeClosed = (result: PipeResult): void => {
    this.conn.markClosed(result);
    this.relay.emit('connection-closed', this.conn, result);
  };

  private closeWithout(): void {
    const { relay, conn } = this;
    const client = conn.client;
    client.removeListener('error', this.onEarlyError);
    client.removeListener('close', this.onEarlyError);
    conn.onCancel = undefined;
    client.on('error', noop);
    client.destroy();
    conn.markClosed();
    relay.emit('connection-closed', conn, undefined);
  }
}

function expireRelayConnect(attempt: ConnectAttempt<RelayClient>): void {
  attempt.owner.expire();
}
