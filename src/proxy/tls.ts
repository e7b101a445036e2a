import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import { normalizeAddress } from '../base/address.js';
import type { Endpoint } from '../cluster/endpoint.js';
import type { CreateConnection } from './listener.js';
import { codeOf } from './pipe.js';
import { connectWithReader } from './reader.js';
import type { CreateServer } from './server.js';
import { FileWatch } from './watch.js';
import { TLS_TXT_KEY, wantsTls } from './tls-policy.js';

// The policy half (no node:tls) lives in tls-policy.ts, so a process without --tls-* never loads TLS.
export { plaintextConnection, TLS_TXT_KEY, wantsTls } from './tls-policy.js';

/** The TXT key an advertisement carries when its endpoint speaks only mutual TLS. */

export interface TlsFilePaths {
  cert: string;
  key: string;
  ca: string;
}

export interface TlsMaterialOptions {
  /** Lowest protocol version accepted and offered. Default 'TLSv1.3'. */
  minVersion?: tls.SecureVersion;
  /** How often the files are checked for changes. Default 1000 ms. */
  reloadIntervalMs?: number;
  /** Accepting side: a peer must finish its handshake within this. Default 5000 ms. */
  handshakeTimeoutMs?: number;
}

export interface TlsStats {
  /** Accepting side: handshakes completed with a certificate signed by the CA. */
  accepted: number;
  /** Accepting side: handshakes refused (no or untrusted client certificate, wrong version, …). */
  acceptFailed: number;
  /** Connecting side: handshakes completed with a server certificate we trust. */
  connected: number;
  /** Connecting side: handshakes that failed (untrusted server certificate, identity mismatch, …). */
  connectFailed: number;
  /** By error code, both sides (e.g. SELF_SIGNED_CERT_IN_CHAIN, ERR_TLS_CERT_ALTNAME_INVALID). */
  failedByCode: Record<string, number>;
  /** Successful reloads of the certificate files / reloads that failed (previous kept). */
  reloads: number;
  reloadErrors: number;
}

export interface TlsConnectOptions {
  /**
   * Identity the server certificate must carry (subjectAltName DNS entry, or CN when there is
   * none), checked on top of the CA signature. Undefined: any certificate the CA signed.
   */
  expectName?: string;
}

/**
 * Mutual TLS between ambassadors: one certificate, key and CA, loaded into a SecureContext that
 * both sides use, and swapped for a new one when the files change (rotation without restart;
 * connections already open keep the context they started with).
 *
 * Events: 'reloaded' (), 'reload-error' (message), 'accept-failed' (remote, code),
 * 'connect-failed' (endpoint, code) — for logs and metrics.
 */
export class TlsMaterial extends EventEmitter {
  readonly stats: TlsStats = {
    accepted: 0, acceptFailed: 0, connected: 0, connectFailed: 0, failedByCode: {}, reloads: 0, reloadErrors: 0,
  };
  readonly minVersion: tls.SecureVersion;
  readonly handshakeTimeoutMs: number;
  private ctx: tls.SecureContext;
  private pem: { cert: Buffer; key: Buffer; ca: Buffer };
  private readonly servers = new Set<tls.Server>();
  private watch: FileWatch | undefined;

  private constructor(readonly files: TlsFilePaths, pem: { cert: Buffer; key: Buffer; ca: Buffer }, ctx: tls.SecureContext, private readonly opts: TlsMaterialOptions) {
    super();
    this.pem = pem;
    this.ctx = ctx;
    this.minVersion = opts.minVersion ?? 'TLSv1.3';
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 5000;
  }

  /** Load and check the files; rejects with a one-line message naming the problem. */
  static async load(files: TlsFilePaths, opts: TlsMaterialOptions = {}): Promise<TlsMaterial> {
    const minVersion = opts.minVersion ?? 'TLSv1.3';
    const pem = await readPem(files);
    const ctx = makeContext(pem, minVersion);
    return new TlsMaterial(files, pem, ctx, opts);
  }

  /** The current context (what new connections use). */
  get context(): tls.SecureContext {
    return this.ctx;
  }

  /** Watch the files; a change that loads cleanly replaces the context. */
  async start(): Promise<void> {
    if (this.watch) return;
    const f = this.files;
    this.watch = new FileWatch([f.cert, f.key, f.ca], () => void this.reload(), this.opts.reloadIntervalMs ?? 1000);
    await this.watch.start();
  }

  stop(): void {
    this.watch?.stop();
    this.watch = undefined;
  }

  /**
   * Re-read the files now. A half-written rotation (certificate and key not matching yet) is
   * refused and the previous context kept; the next change retries.
   */
  async reload(): Promise<boolean> {
    try {
      const pem = await readPem(this.files);
      const ctx = makeContext(pem, this.minVersion);
      this.pem = pem;
      this.ctx = ctx;
      for (const s of this.servers) s.setSecureContext(this.serverContextOptions());
      this.stats.reloads++;
      this.emit('reloaded');
      return true;
    } catch (err) {
      this.stats.reloadErrors++;
      this.emit('reload-error', `${(err as Error).message}; keeping the previous certificate`);
      return false;
    }
  }

  private serverContextOptions(): tls.SecureContextOptions {
    return { cert: this.pem.cert, key: this.pem.key, ca: this.pem.ca, minVersion: this.minVersion };
  }

  private countFailure(code: string): void {
    this.stats.failedByCode[code] = (this.stats.failedByCode[code] ?? 0) + 1;
  }

  /**
   * Connecting side (ConnectListener createConnection): originates TLS, presents our
   * certificate, and verifies the server's against the CA (and `expectName`). The listener
   * waits for 'secureConnect', so no client byte is written before the server is verified; a
   * failure is a connect failure (the endpoint is counted towards ejection, the next is tried).
   */
  createConnection(options: TlsConnectOptions = {}): CreateConnection {
    const expectName = options.expectName;
    return (ep: Endpoint) => {
      const socket = tls.connect({
        host: ep.host,
        port: ep.port,
        secureContext: this.ctx,
        minVersion: this.minVersion,
        servername: expectName && net.isIP(expectName) === 0 ? expectName : undefined,
        rejectUnauthorized: true,
        // Addresses come from unauthenticated announcements: they are no identity. The CA
        // signature is; plus the expected name when configured.
        checkServerIdentity: (_host, cert) => (expectName ? tls.checkServerIdentity(expectName, cert) : undefined),
        // Passed on to the TLSSocket (not in the typings of tls.connect).
        ...({ allowHalfOpen: true } as object),
      });
      let secure = false;
      socket.once('secureConnect', () => {
        secure = true;
        this.stats.connected++;
      });
      socket.once('error', (err) => {
        if (secure) return;
        const code = codeOf(err);
        this.stats.connectFailed++;
        this.countFailure(code);
        this.emit('connect-failed', ep, code);
      });
      return socket;
    };
  }

  /**
   * Accepting side (RelayListener createServer): a tls.Server that asks for a client
   * certificate and drops the connection unless the CA signed it, before any application byte
   * is read. Clients reach `onClient` only after a successful handshake.
   */
  readonly createServer: CreateServer = (onClient) => {
    const server = tls.createServer(
      {
        ...this.serverContextOptions(),
        requestCert: true,
        // Verified below instead: tls.Server would drop an untrusted certificate silently,
        // and refusals must be counted and logged.
        rejectUnauthorized: false,
        // Not half-open while handshaking: a peer that connects and closes (a TCP health
        // check) must end the socket, not leave it waiting for the handshake timeout. The pipe
        // turns half-close on once the session is up.
        allowHalfOpen: false,
        handshakeTimeout: this.handshakeTimeoutMs,
      },
      (socket) => {
        if (!socket.authorized) {
          const code = String(socket.authorizationError ?? 'ECERTUNTRUSTED');
          this.stats.acceptFailed++;
          this.countFailure(code);
          this.emit('accept-failed', remoteOf(socket), code);
          socket.on('error', () => {});
          socket.destroy();
          return;
        }
        this.stats.accepted++;
        onClient(socket);
      },
    );
    // Sockets still in their handshake are not the proxy's yet: close them with the server.
    const handshaking = new Map<string, net.Socket>();
    const keyOf = (s: net.Socket): string => `${s.remoteAddress}|${s.remotePort}`;
    server.on('connection', (raw: net.Socket) => {
      const key = keyOf(raw);
      handshaking.set(key, raw);
      raw.once('close', () => handshaking.delete(key));
    });
    server.on('secureConnection', (s: tls.TLSSocket) => handshaking.delete(keyOf(s)));
    server.on('tlsClientError', (err: Error, s: tls.TLSSocket) => {
      handshaking.delete(keyOf(s));
      // A TCP health check connects and closes without a byte: not a failed handshake.
      const code = codeOf(err);
      if ((s.bytesRead ?? 0) === 0 && (code === 'ECONNRESET' || /socket hang up|disconnected before/i.test(err.message))) return;
      this.stats.acceptFailed++;
      this.countFailure(code);
      this.emit('accept-failed', remoteOf(s), code);
    });
    const close = server.close.bind(server);
    server.close = (cb?: (err?: Error) => void) => {
      for (const raw of handshaking.values()) raw.destroy();
      this.servers.delete(server);
      return close(cb);
    };
    this.servers.add(server);
    return server;
  };
}

async function readPem(files: TlsFilePaths): Promise<{ cert: Buffer; key: Buffer; ca: Buffer }> {
  const read = async (path: string, flag: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`${flag}: cannot read '${path}' (${code === 'ENOENT' ? 'no such file' : code})`);
    }
  };
  const [cert, key, ca] = await Promise.all([
    read(files.cert, '--tls-cert'), read(files.key, '--tls-key'), read(files.ca, '--tls-ca'),
  ]);
  return { cert, key, ca };
}

function makeContext(pem: { cert: Buffer; key: Buffer; ca: Buffer }, minVersion: tls.SecureVersion): tls.SecureContext {
  try {
    return tls.createSecureContext({ cert: pem.cert, key: pem.key, ca: pem.ca, minVersion });
  } catch (err) {
    // OpenSSL messages name the problem ("key values mismatch", "no start line"); never content.
    const msg = (err as Error).message.split('\n')[0]!.replace(/^error:[0-9A-F]+:/, '');
    throw new Error(`--tls-cert/--tls-key/--tls-ca: cannot use the certificate files (${msg})`);
  }
}

/** A client's address:port for logs, an IPv4 client of a dual-stack listener without its ::ffff: prefix. */
function remoteOf(s: net.Socket): string {
  return `${s.remoteAddress === undefined ? '?' : normalizeAddress(s.remoteAddress)}:${s.remotePort ?? 0}`;
}
