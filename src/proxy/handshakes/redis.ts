import { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { Endpoint } from '../../cluster/endpoint.js';
import { HandshakeError, type Handshake } from '../listener.js';
import { type CredentialGate, provenIdentity } from './credential-gate.js';
import { Credentials, CredentialsFile, readCredentialsLine } from './credentials-file.js';
import { emptyStats, type HandshakeStats, type ProtocolHandshake, type ProtocolOptions } from './protocol.js';
import { encodeCommand, encodeError, MAX_BULK, parseReply, RespProtocolError, type RespReply } from './resp.js';

/** Credentials for Redis: the `AUTH [user] password` command is encoded once per file read. */
export class RedisCredentials extends Credentials {
  readonly #auth: Buffer;

  constructor(password: string, user?: string) {
    super(password, user);
    this.#auth = encodeCommand(user === undefined ? ['AUTH', password] : ['AUTH', user, password]);
  }

  /** The AUTH command, RESP-encoded (a copy). */
  authCommand(): Buffer {
    return Buffer.from(this.#auth);
  }
}

/** Parse an auth file (see readCredentialsLine) into Redis credentials. */
export function parseAuthFile(text: string, path: string): RedisCredentials {
  const { user, password } = readCredentialsLine(text, path);
  if (Buffer.byteLength(text.trim()) > MAX_BULK) throw new Error(`auth-file '${path}': line too long`);
  return new RedisCredentials(password, user);
}

type Step = 'AUTH' | 'SELECT';

/**
 * Credentials injection for Redis: on every new upstream connection sends `AUTH [user] password`
 * and/or `SELECT db` (pipelined: one round trip), checks the replies, and only then lets the
 * client's bytes flow. The client needs no credentials and no change.
 *
 * Verdicts (see HandshakeError):
 * - credentials refused (WRONGPASS, old "invalid password"), a Redis without any password while
 *   an auth-file is given, an ACL denial (NOPERM) or a bad db index: a configuration problem,
 *   not the endpoint's health. The client gets a RESP error at once and is closed; other
 *   endpoints are not tried (with the same credentials they would refuse the same way, each
 *   refusal costs a round trip and shows up as failed logins on the servers), and the endpoint
 *   is not ejected (it serves correctly configured clients fine, and ejecting every endpoint
 *   would turn a clear WRONGPASS into a vague "no endpoint" for the next clients).
 * - anything else (LOADING, BUSY, MASTERDOWN, a reply that is not RESP, a reset, a timeout):
 *   the endpoint's fault; counted towards outlier ejection and the next endpoint is tried.
 */
export class RedisProtocol extends EventEmitter implements ProtocolHandshake {
  readonly name = 'redis';
  readonly stats: HandshakeStats = emptyStats();
  readonly authFile: string | undefined;
  readonly db: number | undefined;
  private readonly file: CredentialsFile<RedisCredentials> | undefined;
  private readonly mayReceiveCredentials: CredentialGate;

  constructor(opts: ProtocolOptions) {
    super();
    this.authFile = opts.authFile;
    this.db = opts.db;
    this.file = opts.authFile === undefined ? undefined : new CredentialsFile(opts.authFile, parseAuthFile, this, opts.reloadIntervalMs);
    this.mayReceiveCredentials = opts.credentialGate ?? provenIdentity;
  }

  get handshake(): Handshake | undefined {
    return this.authFile === undefined && !this.db ? undefined : this.run;
  }

  /** Whether credentials are loaded (never the credentials themselves). */
  get hasCredentials(): boolean {
    return this.file?.current !== undefined;
  }

  errorReply(message: string): Buffer {
    return encodeError(`ERR ${message}`);
  }

  async start(): Promise<void> {
    await this.file?.start();
  }

  stop(): void {
    this.file?.stop();
  }

  /** Re-read the auth file now (also done automatically when it changes). */
  reload(): Promise<boolean> {
    return this.file?.reload() ?? Promise.resolve(false);
  }

  private readonly run: Handshake = (upstream, ep, signal) => {
    const creds = this.file?.current;
    const steps: Step[] = [];
    const out: Buffer[] = [];
    if (creds && !this.mayReceiveCredentials(upstream, ep)) {
      // Not the endpoint's fault (it may serve others fine), and another endpoint may be proven.
      return Promise.reject(this.failed(ep, new HandshakeError(
        `not sending credentials to ${ep.label}: its identity is not proven (an mDNS announcement; use mutual TLS, --static/--srv, or --trusted-lan)`,
        'EUNTRUSTED', { retry: true, blameEndpoint: false })));
    }
    if (creds) {
      steps.push('AUTH');
      out.push(creds.authCommand());
    }
    if (this.db) {
      steps.push('SELECT');
      out.push(encodeCommand(['SELECT', String(this.db)]));
    }
    if (steps.length === 0) return Promise.resolve();
    const started = performance.now();
    return exchange(upstream, Buffer.concat(out), steps.length, signal).then(
      (replies) => {
        for (let i = 0; i < steps.length; i++) {
          const r = replies[i]!;
          if (r.type === 'error') throw this.failed(ep, classify(steps[i]!, r.value, creds, this.db));
        }
        this.stats.ok++;
        this.emit('handshake-ok', ep, performance.now() - started);
      },
      (err: unknown) => {
        if (err instanceof HandshakeError) throw this.failed(ep, err);
        throw err;
      },
    );
  };

  private failed(ep: Endpoint, err: HandshakeError): HandshakeError {
    this.stats.failed++;
    this.stats.failedByCode[err.code] = (this.stats.failedByCode[err.code] ?? 0) + 1;
    this.emit('handshake-failed', ep, err.code, err.message);
    return err;
  }
}

/**
 * Write `request`, read `count` replies, then hand the socket back as the listener expects:
 * paused, our listeners removed, any byte after the replies pushed back with unshift().
 */
function exchange(upstream: net.Socket, request: Buffer, count: number, signal: AbortSignal): Promise<RespReply[]> {
  return new Promise((resolve, reject) => {
    const replies: RespReply[] = [];
    let buf: Buffer = Buffer.alloc(0);
    const cleanup = (): void => {
      upstream.pause();
      upstream.off('data', onData);
      signal.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      cleanup();
      reject(new HandshakeError('handshake aborted (timeout or connection closed)', 'EABORTED'));
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      let at = 0;
      try {
        while (replies.length < count) {
          const r = parseReply(buf, at);
          if (!r) break;
          replies.push(r.reply);
          at = r.next;
        }
      } catch (err) {
        cleanup();
        const why = err instanceof RespProtocolError ? err.message : String(err);
        reject(new HandshakeError(`endpoint did not answer like Redis (${why})`, 'EPROTO'));
        return;
      }
      buf = buf.subarray(at);
      if (replies.length < count) return;
      cleanup();
      if (buf.length > 0) upstream.unshift(buf);
      resolve(replies);
    };
    if (signal.aborted) {
      reject(new HandshakeError('handshake aborted', 'EABORTED'));
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    upstream.on('data', onData);
    upstream.write(request);
  });
}

/** Turn an error reply to AUTH or SELECT into a verdict. Server text is redacted before use. */
export function classify(step: Step, text: string, creds: RedisCredentials | undefined, db?: number): HandshakeError {
  const said = (creds ? creds.redact(text) : text).slice(0, 200);
  const code = /^[A-Z]+/.exec(said)?.[0] ?? 'ERR';
  const config = { retry: false, blameEndpoint: false };
  if (step === 'AUTH') {
    if (code === 'WRONGPASS' || /^ERR invalid (username-)?password/i.test(said)) {
      return new HandshakeError(`upstream authentication failed (${said})`, 'WRONGPASS', config);
    }
    if (/without any password configured|no password is set/i.test(said)) {
      return new HandshakeError(
        `upstream authentication failed: this Redis has no password configured, but the auth-file gives one (${said})`,
        'NOPASS', config);
    }
    if (code === 'NOPERM') return new HandshakeError(`upstream authentication failed (${said})`, 'NOPERM', config);
    return new HandshakeError(`upstream AUTH failed (${said})`, code === 'ERR' ? 'EAUTH' : code);
  }
  if (code === 'NOPERM' || code === 'NOAUTH') {
    return new HandshakeError(`upstream refused SELECT ${db ?? ''} (${said})`, code, config);
  }
  if (/DB index|invalid DB/i.test(said)) {
    return new HandshakeError(`upstream refused SELECT ${db ?? ''} (${said})`, 'EDBINDEX', config);
  }
  return new HandshakeError(`upstream SELECT failed (${said})`, code === 'ERR' ? 'ESELECT' : code);
}
