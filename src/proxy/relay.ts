import { EventEmitter } from 'node:events';
import net from 'node:net';
import { ConnectError, connectSocket } from './connect.js';
import { ProxyConnection } from './connection.js';
import { codeOf, SocketPipe, type PipeResult } from './pipe.js';
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
  /** Address to bind. Default 0.0.0.0 (the relay exists to be reachable by peers). */
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
  private readonly options: RelayListenerOptions;
  private readonly proxy: ProxyServer;
  private readonly create: () => net.Socket;

  constructor(options: RelayListenerOptions) {
    super();
    this.options = options;
    this.target = { ...options.target };
    this.connectTimeoutMs = Math.max(1, options.connectTimeoutMs ?? 2000);
    const hook = options.createConnection;
    this.create = hook
      ? () => hook(this.target)
      : () => connectWithReader(this.target.host, this.target.port);
    this.proxy = new ProxyServer(
      options.host ?? '0.0.0.0',
      options.port ?? 0,
      (client) => void this.handle(client),
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

  private async handle(client: net.Socket): Promise<void> {
    const conn = new ProxyConnection(client);
    this.proxy.track(conn);
    const onEarlyError = (): void => conn.close('ECONNRESET');
    client.on('error', onEarlyError);
    client.once('close', onEarlyError);
    this.emit('connection', conn);
    let upstream: net.Socket | undefined;
    try {
      conn.attempts = 1;
      upstream = await connectSocket(this.create, this.connectTimeoutMs, conn.signal);
    } catch (err) {
      if (!conn.signal.aborted) this.emit('connect-failed', conn, err instanceof ConnectError ? err.code : codeOf(err));
    }
    client.off('error', onEarlyError);
    client.off('close', onEarlyError);
    if (!upstream || conn.signal.aborted || client.destroyed) {
      upstream?.destroy();
      client.on('error', noop);
      client.destroy();
      conn.markClosed();
      this.emit('connection-closed', conn, undefined);
      return;
    }
    conn.upstream = upstream;
    const pipe = new SocketPipe(client, upstream, {
      idleTimeoutMs: this.options.idleTimeoutMs,
      keepAliveInitialDelayMs: this.options.keepAliveInitialDelayMs,
    });
    conn.pipe = pipe;
    conn.state = 'open';
    // A client that leaves without having sent a byte (a TCP health check, a port probe) waits
    // for no answer: close the target side too. Half-closing it instead would leave the
    // connection open for as long as a target that never reads keeps quiet (and a stop would
    // then wait out the whole drain).
    const onClientEnd = (): void => {
      if (client.bytesRead === 0) pipe.destroy('ECLIENTEOF');
    };
    if (client.readableEnded) onClientEnd();
    else client.once('end', onClientEnd);
    this.emit('upstream-connected', conn);
    const result = await pipe.closed;
    conn.markClosed(result);
    this.emit('connection-closed', conn, result);
  }
}

function noop(): void {}
