import net from 'node:net';
import { formatAddressPort } from '../base/address.js';
import type { ProxyConnection } from './connection.js';

/** Creates a server calling `onClient` with every accepted (ready to use) client socket. */
export type CreateServer = (onClient: (client: net.Socket) => void) => net.Server;

export interface CloseOptions {
  /**
   * Let open connections finish for up to this long before destroying them. Connections still
   * waiting for an upstream are dropped at once (unless cancelPending is false). Default 0.
   */
  drainMs?: number;
  /**
   * Drop connections still waiting for an upstream at once (default true). A relay passes false:
   * its pending connections are only connecting to its fixed local target, and the peer that
   * opened them already counts them as established, so they are part of the drain.
   */
  cancelPending?: boolean;
}

/**
 * The TCP side shared by ConnectListener and RelayListener: a net.Server with half-open sockets,
 * a registry of live connections, and stop-accepting-then-drain shutdown.
 */
export class ProxyServer {
  readonly server: net.Server;
  readonly connections = new Set<ProxyConnection>();
  /** Circuit breaker: a client accepted while this many connections are tracked goes to onOverflow. */
  private maxConnections = Infinity;
  private onOverflow: (client: net.Socket) => void = (client) => client.destroy();
  private closing: Promise<void> | undefined;
  /** Addresses accepted on besides `host`, same port (see alsoListenOn), and their servers once listening. */
  private readonly alsoHosts: string[] = [];
  private readonly alsoServers: net.Server[] = [];
  private readonly make: () => net.Server;

  constructor(
    /** Address to bind; undefined: every address, IPv6 and IPv4 (Node's default: `::` where the host has IPv6, else 0.0.0.0). */
    readonly host: string | undefined,
    readonly port: number,
    onClient: (client: net.Socket) => void,
    private readonly onError: (err: Error) => void,
    /**
     * Makes the server that accepts clients (e.g. a tls.Server, which hands over sockets once
     * their handshake is done). Default: a net.Server with half-open sockets and TCP_NODELAY
     * (set as part of the accept).
     */
    createServer: CreateServer = (onConn) =>
      net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, onConn),
  ) {
    const accept = (client: net.Socket): void => {
      if (this.closing) {
        client.destroy();
        return;
      }
      if (this.connections.size >= this.maxConnections) {
        this.onOverflow(client);
        return;
      }
      // Hold the client's first bytes (buffered up to the socket's high-water mark) until an
      // upstream is ready; the pipe flushes them in order. Reading goes on meanwhile, so a
      // client that resets while pending is noticed. (read(0) starts reading without switching
      // to flowing mode, also for sockets accepted with pauseOnConnect.)
      client.pause();
      client.read(0);
      onClient(client);
    };
    this.make = () => {
      const server = createServer(accept);
      server.on('error', (err) => {
        if (server.listening) onError(err);
      });
      return server;
    };
    this.server = this.make();
  }

  /**
   * Also accept on `host`, at the same port, with the same handling (before listen()): `::1`
   * beside `127.0.0.1`, so that `localhost` works whichever of its addresses a client tries. An
   * address this host does not have (no IPv6) is skipped; one in use stops listen().
   */
  alsoListenOn(host: string): void {
    this.alsoHosts.push(host);
  }

  /**
   * At most `max` tracked connections: a client beyond goes to `onOverflow` (which must close it).
   * Node's own server.maxConnections backs this up with `headroom` more (refusals still closing),
   * closing further sockets before any JavaScript sees them; `onDrop` counts those.
   */
  setLimit(max: number, onOverflow: (client: net.Socket) => void, headroom: number, onDrop: () => void): void {
    this.maxConnections = max;
    this.onOverflow = onOverflow;
    this.limit = { headroom, onDrop };
    this.server.maxConnections = max + headroom;
    this.server.on('drop', onDrop);
  }

  private limit: { headroom: number; onDrop: () => void } | undefined;

  get isClosing(): boolean {
    return this.closing !== undefined;
  }

  async listen(): Promise<net.AddressInfo> {
    const addr = await this.listenOn(this.server, this.host, this.port);
    for (const host of this.alsoHosts) {
      const server = this.make();
      if (this.limit) {
        server.maxConnections = this.maxConnections + this.limit.headroom;
        server.on('drop', this.limit.onDrop);
      }
      try {
        await this.listenOn(server, host, addr.port);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT') continue; // no such address here
        await new Promise<void>((r) => this.server.close(() => r()));
        for (const s of this.alsoServers) s.close();
        throw err;
      }
      this.alsoServers.push(server);
    }
    return addr;
  }

  /** Every address:port accepted on (the main one first). */
  addresses(): net.AddressInfo[] {
    return [this.server, ...this.alsoServers].map((s) => s.address()).filter((a): a is net.AddressInfo => !!a && typeof a === 'object');
  }

  private listenOn(server: net.Server, host: string | undefined, port: number): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        server.off('listening', onListening);
        const where = host === undefined ? `port ${port}` : formatAddressPort(host, port);
        const why =
          err.code === 'EADDRINUSE'
            ? 'address already in use'
            : err.code === 'EADDRNOTAVAIL'
              ? 'address not available on this host'
              : err.code === 'EACCES'
                ? 'permission denied'
                : err.message;
        const e = new Error(`cannot listen on ${where}: ${why}`) as NodeJS.ErrnoException;
        if (err.code !== undefined) e.code = err.code;
        reject(e);
      };
      const onListening = (): void => {
        server.off('error', onError);
        resolve(server.address() as net.AddressInfo);
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen({ host, port });
    });
  }

  address(): net.AddressInfo | undefined {
    const a = this.server.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  /** Registers a live connection; it leaves the registry by itself when marked closed. */
  track(conn: ProxyConnection): void {
    this.connections.add(conn);
    conn.registry = this.connections;
  }

  close(options: CloseOptions = {}): Promise<void> {
    this.closing ??= this.doClose(Math.max(0, options.drainMs ?? 0), options.cancelPending ?? true);
    return this.closing;
  }

  private async doClose(drainMs: number, cancelPending: boolean): Promise<void> {
    const serverClosed = Promise.all([this.server, ...this.alsoServers].map((s) => new Promise<void>((resolve) => {
      if (!s.listening) resolve();
      else s.close(() => resolve());
    })));
    if (cancelPending) for (const c of this.connections) if (c.state === 'pending') c.close('ECANCELED');
    if (drainMs > 0 && this.connections.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...this.connections].map((c) => c.done)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs))),
      ]);
      clearTimeout(timer);
    }
    const left = [...this.connections];
    for (const c of left) c.close('EDRAIN');
    await Promise.all(left.map((c) => c.done));
    await serverClosed;
  }
}
