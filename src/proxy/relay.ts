import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { Endpoint } from '../cluster/endpoint.js';
import { destroyQuietly } from './connect.js';
import type { ProxyConnection } from './connection.js';
import { DeadlineQueue } from './deadlines.js';
import { MAX_LINGERING_REFUSALS } from './limits.js';
import type { Pick } from './pick.js';
import type { PipeResult } from './pipe.js';
import { connectWithReader } from './reader.js';
import { Refusals } from './refusal.js';
import { ProxyServer, type CloseOptions, type CreateServer } from './server.js';
import { ClientSession, type SessionHost, type SessionRules } from './session.js';

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
  /** An unexpected exception while serving a client (a bug): the client was closed, the process goes on. */
  'internal-error': [conn: ProxyConnection, error: unknown];
};

/**
 * Advertise side, for a service that listens only on loopback or on another host: a listener on
 * bind:port that forwards every connection to one fixed target, with the same pipe as
 * ConnectListener. Each client is a ClientSession whose pick is always the target: one attempt,
 * no race, no wait, no retry.
 */
export class RelayListener extends EventEmitter<RelayListenerEvents> {
  readonly target: RelayTarget;
  readonly connectTimeoutMs: number;
  readonly maxConnections: number;
  private readonly proxy: ProxyServer;
  private readonly sessions: RelaySessions;

  constructor(options: RelayListenerOptions) {
    super();
    this.target = { ...options.target };
    this.connectTimeoutMs = Math.max(1, options.connectTimeoutMs ?? 2000);
    this.sessions = new RelaySessions(this, options);
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
      const refusals = new Refusals();
      const refused = (): boolean => this.emit('client-refused', 'max-connections');
      this.proxy.setLimit(this.maxConnections, (client) => {
        refusals.close(client, undefined);
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
    const s = new ClientSession(this.sessions, client);
    this.proxy.track(s);
    s.start();
  };
}

/** The relay's side of its sessions: one endpoint, the target. */
class RelaySessions implements SessionHost {
  readonly rules: SessionRules;
  readonly deadlines = new DeadlineQueue();
  readonly create: () => net.Socket;
  private readonly target: Endpoint;

  constructor(
    private readonly relay: RelayListener,
    options: RelayListenerOptions,
  ) {
    const { host, port } = relay.target;
    this.target = new Endpoint({ id: 'target', source: 'static', host, port, priority: 0, weight: 0, txt: {}, label: `${host}:${port}` });
    this.rules = {
      connectTimeoutMs: relay.connectTimeoutMs,
      raceDelayMs: Infinity,
      maxConnectAttempts: 1,
      noEndpointWaitMs: 0,
      handshake: undefined,
      greet: undefined,
      handshakeTimeoutMs: 0,
      keepConnectionsOnRemoval: true,
      idleTimeoutMs: options.idleTimeoutMs,
      keepAliveInitialDelayMs: options.keepAliveInitialDelayMs,
    };
    const hook = options.createConnection;
    this.create = hook ? () => hook(relay.target) : () => connectWithReader(host, port);
  }

  pick(): Pick {
    return this.target;
  }

  evidence(): void {}
  waitForEndpoint(): void {}
  stopWaiting(): void {}
  failover(): void {}
  raced(): void {}
  lost(): void {} // one attempt: never raced

  accepted(s: ClientSession): void {
    this.relay.emit('connection', s);
  }

  connectFailed(s: ClientSession, _ep: Endpoint, code: string): void {
    this.relay.emit('connect-failed', s, code);
  }

  opened(s: ClientSession): void {
    const client = s.client;
    // A client that leaves without having sent a byte (a TCP health check, a port probe) waits
    // for no answer: close the target side too. Half-closing it instead would leave the
    // connection open for as long as a target that never reads keeps quiet (and a stop would
    // then wait out the whole drain).
    const onClientEnd = (): void => {
      if (client.bytesRead === 0) s.pipe!.destroy('ECLIENTEOF');
    };
    if (client.readableEnded) onClientEnd();
    else client.once('end', onClientEnd);
    this.relay.emit('upstream-connected', s);
  }

  closed(s: ClientSession, result: PipeResult): void {
    s.markClosed(result);
    this.relay.emit('connection-closed', s, result);
  }

  ended(s: ClientSession): void {
    if (s.upstream) destroyQuietly(s.upstream);
    destroyQuietly(s.client);
    s.markClosed();
    this.relay.emit('connection-closed', s, undefined);
  }

  /** (A relay has no greeting.) */
  refused(s: ClientSession): void {
    this.ended(s);
  }

  faulted(s: ClientSession, error: unknown): void {
    this.relay.emit('internal-error', s, error);
  }
}
