import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import type net from 'node:net';
import { inspect } from 'node:util';
import type { Endpoint } from '../../cluster/endpoint.js';
import { HandshakeError, type Handshake } from '../listener.js';
import { FileWatch } from '../watch.js';
import { type CredentialGate, provenIdentity } from './credential-gate.js';
import { emptyStats, type HandshakeStats, type ProtocolHandshake, type ProtocolOptions } from './protocol.js';
import { encodeCommand, encodeError, MAX_BULK, parseReply, RespProtocolError, type RespReply } from './resp.js';

/**
 * Redis credentials from a file holding `password` or `user password` on one line. The values
 * live in private fields: they are not enumerable, not serialized (toJSON) and not shown by
 * util.inspect, so a stray log of this object prints nothing secret.
 */
export class RedisCredentials {
  readonly #user: string | undefined;
  readonly #password: string;
  readonly #auth: Buffer;

  constructor(password: string, user?: string) {
    this.#user = user;
    this.#password = password;
    this.#auth = encodeCommand(user === undefined ? ['AUTH', password] : ['AUTH', user, password]);
  }

  get hasUser(): boolean {
    return this.#user !== undefined;
  }

  /** The AUTH command, RESP-encoded (a copy). */
  authCommand(): Buffer {
    return Buffer.from(this.#auth);
  }

  /** `text` with the password (and user name) blanked: for messages from the server. */
  redact(text: string): string {
    let out = text;
    for (const s of [this.#password, this.#user]) {
      if (s && s.length > 0) out = out.split(s).join('***');
    }
    return out;
  }

  equals(other: RedisCredentials | undefined): boolean {
    return other !== undefined && other.#password === this.#password && other.#user === this.#user;
  }

  toJSON(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return 'RedisCredentials [redacted]';
  }
}

/**
 * Parse an auth file: one non-empty line, `password` or `user password` (split at the first run
 * of blanks, so a password may contain spaces when a user is given: `default my pass phrase`).
 * Errors name the file and the problem, never its content.
 */
export function parseAuthFile(text: string, path: string): RedisCredentials {
  const lines = text.split(/\r?\n/).filter((l) => l.trim().length > 0);
  if (lines.length === 0) throw new Error(`auth-file '${path}': is empty (expected 'password' or 'user password')`);
  if (lines.length > 1) {
    throw new Error(`auth-file '${path}': has ${lines.length} lines (expected one line: 'password' or 'user password')`);
  }
  const line = lines[0]!.trim();
  const m = /^(\S+)\s+(.+)$/.exec(line);
  const creds = m ? new RedisCredentials(m[2]!, m[1]!) : new RedisCredentials(line);
  if (Buffer.byteLength(line) > MAX_BULK) throw new Error(`auth-file '${path}': line too long`);
  return creds;
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
  private creds: RedisCredentials | undefined;
  private watch: FileWatch | undefined;
  private readonly reloadIntervalMs: number;
  private readonly mayReceiveCredentials: CredentialGate;

  constructor(opts: ProtocolOptions) {
    super();
    this.authFile = opts.authFile;
    this.db = opts.db;
    this.reloadIntervalMs = opts.reloadIntervalMs ?? 1000;
    this.mayReceiveCredentials = opts.credentialGate ?? provenIdentity;
  }

  get handshake(): Handshake | undefined {
    return this.authFile === undefined && !this.db ? undefined : this.run;
  }

  /** Whether credentials are loaded (never the credentials themselves). */
  get hasCredentials(): boolean {
    return this.creds !== undefined;
  }

  errorReply(message: string): Buffer {
    return encodeError(`ERR ${message}`);
  }

  async start(): Promise<void> {
    if (this.authFile === undefined) return;
    this.creds = await this.load(this.authFile);
    this.watch = new FileWatch([this.authFile], () => void this.reload(), this.reloadIntervalMs);
    await this.watch.start();
  }

  stop(): void {
    this.watch?.stop();
    this.watch = undefined;
  }

  /** Re-read the auth file now (also done automatically when it changes). */
  async reload(): Promise<boolean> {
    if (this.authFile === undefined) return false;
    try {
      const creds = await this.load(this.authFile);
      const changed = !creds.equals(this.creds);
      this.creds = creds;
      this.stats.reloads++;
      this.emit('credentials-loaded', changed);
      return true;
    } catch (err) {
      this.stats.reloadErrors++;
      this.emit('credentials-error', `${(err as Error).message}; keeping the previous credentials`);
      return false;
    }
  }

  private async load(path: string): Promise<RedisCredentials> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`auth-file '${path}': cannot read (${code === 'ENOENT' ? 'no such file' : code})`);
    }
    return parseAuthFile(text, path);
  }

  private readonly run: Handshake = (upstream, ep, signal) => {
    const creds = this.creds;
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
