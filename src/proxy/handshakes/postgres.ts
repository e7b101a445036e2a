import { createHash, X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import type tls from 'node:tls';
import type { Endpoint } from '../../cluster/endpoint.js';
import { type ClientHello, type Greeting, type Handshake, HandshakeError } from '../handshake.js';
import { noop } from '../connect.js';
import { codeOf } from '../pipe.js';
import { type CredentialGate, namedByOperator, provenIdentity } from './credential-gate.js';
import { Credentials, CredentialsFile, readCredentialsLine } from './credentials-file.js';
import { PostgresMessages } from './postgres-messages.js';
import {
  AUTH, byteString, errorResponse, type InitialPacket, MAX_STARTUP_PACKET, paramText,
  passwordMessage, PgWireError, readErrorFields, readInitialPacket, readSaslMechanisms, saslInitialResponse, saslResponse,
  sslRequest, type StartupParam, startupMessage, versionText,
} from './postgres-wire.js';
import { emptyStats, type HandshakeStats, type ProtocolHandshake, type ProtocolOptions, type ServerTlsMode } from './protocol.js';
import { saslprep } from './saslprep.js';
import { ScramClient, ScramError, ScramKeyCache } from './scram.js';

/** Credentials for PostgreSQL: `user password`, or `password` alone (the client's user is kept). */
export class PostgresCredentials extends Credentials {
  #scram: ScramKeyCache | undefined;

  /** SCRAM keys of this password (derived once per server salt, see ScramKeyCache). */
  get scramKeys(): ScramKeyCache {
    return (this.#scram ??= new ScramKeyCache(saslprep(this.password)));
  }

  /** The answer to AuthenticationMD5Password: "md5" + md5(md5(password + user) + salt). */
  md5Response(user: string, salt: Buffer): string {
    const inner = createHash('md5').update(this.password, 'utf8').update(user, 'utf8').digest('hex');
    return `md5${createHash('md5').update(inner, 'latin1').update(salt).digest('hex')}`;
  }
}

export function parsePostgresAuthFile(text: string, path: string): PostgresCredentials {
  const { user, password } = readCredentialsLine(text, path);
  // A password message is a C string, and the startup packet has a size limit.
  if (password.includes('\0') || (user?.includes('\0') ?? false)) throw new Error(`auth-file '${path}': contains a NUL character`);
  if (Buffer.byteLength(text) > MAX_STARTUP_PACKET) throw new Error(`auth-file '${path}': line too long`);
  return new PostgresCredentials(password, user);
}

/** What the greeting hands to the handshake: the client's startup message, user replaced. */
export interface StartupHello {
  version: number;
  params: StartupParam[];
  /** The user name the server will see (the file's, else the client's). */
  user: string;
}

/** SQLSTATEs after which the next endpoint is tried: the server cannot take a client now. */
const TRY_NEXT = new Set(['57P01', '57P02', '57P03', '53300', '53000']);

/** Our own verdicts that are a configuration problem and reach the client as 28000. */
const AUTH_CONFIG_CODES = new Set(['EAUTHMETHOD', 'ECLEARTEXT']);

/**
 * Credentials injection for PostgreSQL. The client speaks first, so most of the work is split
 * in two:
 * - the greeting (on the client, before any endpoint is picked) answers SSLRequest and
 *   GSSENCRequest with 'N' (the local hop is plaintext), reads the StartupMessage and puts the
 *   user of the auth file in it (database, options, application_name and everything else kept);
 *   a CancelRequest is routed to the endpoint whose server issued its key;
 * - the handshake (on each upstream) negotiates TLS with the server when asked to (server-tls),
 *   sends the startup message, answers the server's authentication request itself (SCRAM-SHA-256,
 *   MD5, cleartext only over verified TLS, mutual TLS, or to an endpoint the operator named),
 *   and at AuthenticationOk pushes that message and everything after it back into the upstream,
 *   so the pipe hands the client AuthenticationOk, ParameterStatus, BackendKeyData and
 *   ReadyForQuery as the server sent them. From there on, bytes are piped untouched.
 *
 * Without an auth file the client authenticates itself through the pipe; the greeting, the
 * errors in PostgreSQL's words and cancel routing still apply.
 *
 * Verdicts: 28P01/28000 and other refusals of the login are final (the client gets them with
 * the ambassador's words; no other endpoint is tried: the same credentials would fail again);
 * 57P03 (starting up), 57P01/57P02 (shutting down), 53300 (too many clients), a reset, a
 * timeout, anything that is not PostgreSQL: the next endpoint is tried before the client sees
 * anything.
 */
export class PostgresProtocol extends EventEmitter implements ProtocolHandshake {
  readonly name = 'postgres';
  readonly stats: HandshakeStats = emptyStats();
  readonly authFile: string | undefined;
  readonly serverTls: ServerTlsMode;
  /** Cancel keys (process id + secret, as bytes) of open sessions → the endpoint that issued them. */
  private readonly cancelKeys = new Map<string, Endpoint>();
  private readonly file: CredentialsFile<PostgresCredentials> | undefined;
  private readonly mayReceiveCredentials: CredentialGate;
  private readonly opts: ProtocolOptions;
  private tls: typeof tls | undefined;
  private serverCa: Buffer | undefined;

  constructor(opts: ProtocolOptions) {
    super();
    this.opts = opts;
    this.authFile = opts.authFile;
    this.serverTls = opts.serverTls ?? 'prefer';
    this.file = opts.authFile === undefined ? undefined : new CredentialsFile(opts.authFile, parsePostgresAuthFile, this, opts.reloadIntervalMs);
    this.mayReceiveCredentials = opts.credentialGate ?? provenIdentity;
  }

  get handshake(): Handshake {
    return this.run;
  }

  get greet(): Greeting {
    return this.greetClient;
  }

  /** Sessions whose cancel key is known now. */
  get cancelKeyCount(): number {
    return this.cancelKeys.size;
  }

  errorReply(message: string, code = 'no-endpoint'): Buffer {
    let sqlstate = '08006';
    if (/^[0-9A-Z]{5}$/.test(code)) sqlstate = code;
    else if (code.startsWith('max-')) sqlstate = '53300';
    else if (AUTH_CONFIG_CODES.has(code)) sqlstate = '28000';
    return errorResponse({ severity: 'FATAL', code: sqlstate, message });
  }

  async start(): Promise<void> {
    if (this.serverTls !== 'off') {
      // Loaded only here: a process with no TLS anywhere never loads node:tls (see tls-policy.ts).
      this.tls = await import('node:tls');
      if (this.opts.serverCa !== undefined) {
        try {
          this.serverCa = await readFile(this.opts.serverCa);
        } catch (err) {
          throw new Error(`server-ca '${this.opts.serverCa}': cannot read (${codeOf(err)})`);
        }
        try {
          // The first certificate parses (X509Certificate reads the first PEM block it finds).
          new X509Certificate(this.serverCa);
        } catch {
          throw new Error(`server-ca '${this.opts.serverCa}': no PEM certificate in it`);
        }
      }
    }
    await this.file?.start();
  }

  stop(): void {
    this.file?.stop();
  }

  /** Re-read the auth file now (also done automatically when it changes). */
  reload(): Promise<boolean> {
    return this.file?.reload() ?? Promise.resolve(false);
  }

  /** Whether credentials are loaded (never the credentials themselves). */
  get hasCredentials(): boolean {
    return this.file?.current !== undefined;
  }

  // ------------------------------------------------------------------------------------------
  // The client side

  /**
   * (The listener closes the client of a greeting it gives up on, so 'close' is enough: no
   * AbortSignal listener, which costs more than a socket's.)
   */
  private readonly greetClient: Greeting = (client) => new Promise<ClientHello>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let answered = 0;
    const cleanup = (): void => {
      client.pause();
      client.off('data', onData);
      client.off('end', onEnd);
      client.off('close', onEnd);
    };
    const fail = (why: string): void => {
      cleanup();
      reject(new PgWireError(why));
    };
    const onEnd = (): void => fail('the client closed before its startup message');
    const finish = (hello: ClientHello, rest: Buffer): void => {
      cleanup();
      if (rest.length > 0) client.unshift(rest);
      resolve(hello);
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        let read: { packet: InitialPacket; length: number } | undefined;
        try {
          read = readInitialPacket(buf);
        } catch (err) {
          this.emit('greeting-refused', 'EPROTO', `client refused: ${(err as Error).message}`);
          return fail((err as Error).message);
        }
        if (read === undefined) return;
        const { packet, length } = read;
        const rest = buf.subarray(length);
        buf = rest;
        if (packet.kind === 'ssl' || packet.kind === 'gssenc') {
          // Each once, as PostgreSQL allows: the local hop stays plaintext.
          const bit = packet.kind === 'ssl' ? 1 : 2;
          if (answered & bit) return fail(`a second ${packet.kind} request`);
          answered |= bit;
          client.write('N');
          continue;
        }
        if (packet.kind === 'cancel') {
          const ep = this.cancelKeys.get(packet.key.toString('latin1'));
          if (ep === undefined) {
            // What PostgreSQL does with an unknown key: close, without a word.
            this.emit('greeting-refused', 'ECANCELKEY', 'cancel request for no open session through this listener: dropped');
            return finish({ kind: 'refuse', reply: Buffer.alloc(0) }, Buffer.alloc(0));
          }
          return finish({ kind: 'route', endpoint: ep }, Buffer.concat([packet.raw, rest]));
        }
        return finish(this.startup(packet.version, packet.params), rest);
      }
    };
    if (client.destroyed) return reject(new PgWireError('the client closed before its startup message'));
    client.on('data', onData);
    client.on('end', onEnd);
    client.on('close', onEnd);
    client.resume();
  });

  /** The client's StartupMessage: a session to open, or a refusal in the client's terms. */
  private startup(version: number, clientParams: StartupParam[]): ClientHello {
    const refuse = (code: string, message: string, why: string): ClientHello => {
      this.emit('greeting-refused', code, why);
      return { kind: 'refuse', reply: errorResponse({ severity: 'FATAL', code, message: `ambassador: ${message}` }) };
    };
    if (version >>> 16 !== 3) {
      return refuse('0A000', `unsupported frontend protocol ${versionText(version)}: only 3.x is supported`,
        `client refused: protocol ${versionText(version)}`);
    }
    const replication = paramText(clientParams, 'replication');
    if (replication !== undefined && !/^(false|off|no|0)$/i.test(replication)) {
      return refuse('0A000', 'replication connections are not proxied', 'client refused: replication connection');
    }
    const creds = this.file?.current;
    const user = creds?.user ?? paramText(clientParams, 'user');
    if (user === undefined || user.length === 0) {
      return refuse('28000', 'no PostgreSQL user name specified in startup packet', 'client refused: no user name');
    }
    const params = clientParams.filter(([k]) => k !== 'user');
    params.unshift(['user', byteString(user)]);
    const hello: StartupHello = { version, params, user };
    return { kind: 'session', hello };
  }

  // ------------------------------------------------------------------------------------------
  // The server side

  private readonly run: Handshake = async (upstream, ep, _signal, hello) => {
    const h = hello as StartupHello | undefined;
    if (h === undefined) throw this.failed(ep, new HandshakeError('no startup message from the client', 'EPROTO'));
    const creds = this.file?.current;
    if (creds && !this.mayReceiveCredentials(upstream, ep)) {
      throw this.failed(ep, new HandshakeError(
        `not sending credentials to ${ep.label}: its identity is not proven (an mDNS announcement; use mutual TLS, --static/--srv, or --trusted-lan)`,
        'EUNTRUSTED', { retry: true, blameEndpoint: false }));
    }
    const started = performance.now();
    let sock: net.Socket = upstream;
    let secured: 'verified' | 'unverified' | undefined;
    try {
      const hopProven = (upstream as { authorized?: unknown }).authorized === true;
      // Over an ambassador's mutual TLS the hop is encrypted and authenticated already.
      if (this.serverTls === 'require' || (this.serverTls === 'prefer' && !hopProven)) {
        const t = await this.negotiateTls(upstream, ep);
        if (t !== undefined) {
          sock = t;
          secured = t.authorized ? 'verified' : 'unverified';
        }
      }
      const messages = new PostgresMessages(sock);
      sock.write(startupMessage(h.version, h.params));
      if (creds === undefined) {
        // The client logs in itself, through the pipe.
        messages.release();
        this.watchCancelKey(sock, ep);
        this.stats.ok++;
        this.emit('handshake-ok', ep, performance.now() - started);
        return sock === upstream ? undefined : sock;
      }
      const cleartextOk = secured === 'verified' || hopProven || namedByOperator(ep.source);
      await this.login(messages, creds, h.user, cleartextOk);
      this.watchCancelKey(sock, ep);
      this.stats.ok++;
      this.emit('handshake-ok', ep, performance.now() - started);
      return sock === upstream ? undefined : sock;
    } catch (err) {
      if (sock !== upstream) sock.destroy();
      throw this.failed(ep, this.verdict(err, creds));
    }
  };

  /**
   * Answers the server's authentication requests until AuthenticationOk, then pushes back the
   * messages the client must see: notices and NegotiateProtocolVersion met on the way, and
   * AuthenticationOk with everything after it.
   */
  private async login(messages: PostgresMessages, creds: PostgresCredentials, user: string, cleartextOk: boolean): Promise<void> {
    const forClient: Buffer[] = [];
    let scram: ScramClient | undefined;
    for (;;) {
      const m = await messages.next();
      if (m.type === 'E') throw serverError(readErrorFields(m.body), creds);
      if (m.type === 'N' || m.type === 'v') {
        forClient.push(Buffer.from(m.raw));
        continue;
      }
      if (m.type !== 'R' || m.body.length < 4) throw new HandshakeError(`endpoint did not answer like PostgreSQL (message '${m.type}' during authentication)`, 'EPROTO');
      const code = m.body.readInt32BE(0);
      switch (code) {
        case AUTH.ok:
          forClient.push(messages.release(m));
          messages.socket.unshift(Buffer.concat(forClient));
          return;
        case AUTH.cleartext:
          if (!cleartextOk) {
            throw new HandshakeError(
              'the server asks for the password in cleartext over a connection that is neither verified TLS nor to an endpoint the operator named: not sent (use scram-sha-256, server-tls=require, or --static/--srv)',
              'ECLEARTEXT', { retry: true, blameEndpoint: false });
          }
          messages.socket.write(passwordMessage(creds.password));
          break;
        case AUTH.md5:
          if (m.body.length < 8) throw new HandshakeError('malformed MD5 authentication request', 'EPROTO');
          messages.socket.write(passwordMessage(creds.md5Response(user, m.body.subarray(4, 8))));
          break;
        case AUTH.sasl: {
          const mechanisms = readSaslMechanisms(m.body);
          if (!mechanisms.includes('SCRAM-SHA-256')) {
            throw new HandshakeError(`the server offers no SASL mechanism the ambassador speaks (${mechanisms.join(', ').slice(0, 100)})`,
              'EAUTHMETHOD', { retry: false, blameEndpoint: false });
          }
          scram = new ScramClient(creds.scramKeys);
          messages.socket.write(saslInitialResponse('SCRAM-SHA-256', scram.firstMessage()));
          break;
        }
        case AUTH.saslContinue:
          if (scram === undefined) throw new HandshakeError('SASL continuation without a SASL exchange', 'EPROTO');
          messages.socket.write(saslResponse(await scram.finalMessage(m.body.subarray(4))));
          break;
        case AUTH.saslFinal:
          if (scram === undefined) throw new HandshakeError('SASL final message without a SASL exchange', 'EPROTO');
          scram.verifyServerFinal(m.body.subarray(4));
          break;
        case AUTH.kerberosV5:
        case AUTH.gss:
        case AUTH.gssContinue:
        case AUTH.sspi:
          throw new HandshakeError('the server asks for GSSAPI/SSPI authentication, which the ambassador cannot do for its clients',
            'EAUTHMETHOD', { retry: false, blameEndpoint: false });
        default:
          throw new HandshakeError(`endpoint did not answer like PostgreSQL (authentication request ${code})`, 'EPROTO');
      }
    }
  }

  /** SSLRequest; on 'S' a TLS session over the upstream, verified unless server-verify=none. */
  private async negotiateTls(upstream: net.Socket, ep: Endpoint): Promise<tls.TLSSocket | undefined> {
    const messages = new PostgresMessages(upstream);
    upstream.write(sslRequest());
    const answer = await messages.byte();
    if (answer === 0x4e /* N */) {
      messages.release();
      if (this.serverTls === 'require') {
        throw new HandshakeError(`the server does not do TLS (server-tls=require)`, 'ETLSREFUSED', { retry: true, blameEndpoint: false });
      }
      return undefined;
    }
    if (answer === 0x45 /* E: a server failing before it could answer */) {
      messages.unread(Buffer.from([answer]));
      const m = await messages.next();
      throw serverError(readErrorFields(m.body), undefined);
    }
    if (answer !== 0x53 /* S */) throw new HandshakeError('endpoint did not answer the SSLRequest like PostgreSQL', 'EPROTO');
    // Bytes after 'S' and before the TLS handshake could only have been injected on the way.
    if (messages.release().length > 0) throw new HandshakeError('the server sent data after agreeing to TLS', 'EPROTO');
    const verify = this.opts.serverVerify ?? 'full';
    const name = this.opts.serverName ?? nameOf(ep);
    const t = this.tls!.connect({
      socket: upstream,
      servername: net.isIP(name) === 0 ? name : undefined,
      ca: this.serverCa,
      minVersion: 'TLSv1.2',
      rejectUnauthorized: verify !== 'none',
      checkServerIdentity: (_host, cert) => (verify === 'full' ? this.tls!.checkServerIdentity(name, cert) : undefined),
    });
    // Until the pipe has its own: a late TLS error must not be an uncaught exception.
    t.on('error', noop);
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        t.off('secureConnect', onOk);
        t.off('error', done);
        t.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onOk = (): void => done();
      const onClose = (): void => done(new HandshakeError('the connection closed during the TLS handshake', 'ECONNRESET'));
      t.once('secureConnect', onOk);
      t.once('error', done);
      t.once('close', onClose);
    }).catch((err: unknown) => {
      t.destroy();
      if (err instanceof HandshakeError) throw err;
      const code = codeOf(err);
      throw new HandshakeError(
        `TLS with the server failed (${code}: ${(err as Error).message.slice(0, 160)}); trust its certificate with server-ca=FILE (and server-name=NAME), or server-verify=none`,
        code, { retry: true, blameEndpoint: false });
    });
    return t;
  }

  /**
   * Remembers the session's cancel key (BackendKeyData, after AuthenticationOk) for as long as
   * the session lives. It watches the server's bytes as they go to the client (a 'data' observer,
   * read before the pipe writes the chunk on) only until ReadyForQuery: nothing per query.
   */
  private watchCancelKey(sock: net.Socket, ep: Endpoint): void {
    let carry: Buffer | undefined;
    const stop = (): void => {
      sock.off('data', onData);
      sock.off('close', stop);
    };
    const onData = (chunk: Buffer): void => {
      // The chunk may be a view valid only during this call (reader.ts): what is kept is copied.
      const buf = carry === undefined ? chunk : Buffer.concat([carry, chunk]);
      carry = undefined;
      let at = 0;
      while (buf.length - at >= 5) {
        const type = buf[at]!;
        const length = buf.readInt32BE(at + 1);
        if (length < 4) return stop();
        if (type === 0x5a /* Z */ || type === 0x45 /* E */) return stop();
        if (buf.length < at + 1 + length) break;
        if (type === 0x4b /* K */) {
          const key = buf.toString('latin1', at + 5, at + 1 + length);
          this.cancelKeys.set(key, ep);
          sock.once('close', () => {
            if (this.cancelKeys.get(key) === ep) this.cancelKeys.delete(key);
          });
          return stop();
        }
        at += 1 + length;
      }
      if (buf.length - at > 64 * 1024) return stop();
      if (at < buf.length) carry = Buffer.from(buf.subarray(at));
    };
    sock.on('data', onData);
    sock.on('close', stop);
  }

  /** Any failure of the handshake as a verdict (see HandshakeError). */
  private verdict(err: unknown, creds: PostgresCredentials | undefined): HandshakeError {
    if (err instanceof HandshakeError) return err;
    if (err instanceof ScramError) {
      // A server that does not prove it knows the password's keys is not the one we want.
      return new HandshakeError(`SCRAM authentication failed: ${creds ? creds.redact(err.message, false) : err.message}`, 'ESCRAM');
    }
    if (err instanceof PgWireError) return new HandshakeError(`endpoint did not answer like PostgreSQL (${err.message})`, 'EPROTO');
    return new HandshakeError(`handshake failed (${codeOf(err)})`, codeOf(err) === 'Error' ? 'EHANDSHAKE' : codeOf(err));
  }

  private failed(ep: Endpoint, err: HandshakeError): HandshakeError {
    this.stats.failed++;
    this.stats.failedByCode[err.code] = (this.stats.failedByCode[err.code] ?? 0) + 1;
    this.emit('handshake-failed', ep, err.code, err.message);
    return err;
  }
}

/** The server refused: a verdict by SQLSTATE, with the server's words (secrets blanked). */
export function serverError(fields: Map<string, string>, creds: PostgresCredentials | undefined): HandshakeError {
  const code = fields.get('C') ?? 'XX000';
  // The user name is no secret: PostgreSQL's messages name it.
  const said = (creds ? creds.redact(fields.get('M') ?? '', false) : fields.get('M') ?? '').slice(0, 200);
  if (TRY_NEXT.has(code) || code.startsWith('08')) {
    // Not now, or not this server: the next endpoint, before the client sees anything.
    return new HandshakeError(`upstream cannot take the connection (${code}: ${said})`, code, { retry: true, blameEndpoint: !code.startsWith('53') });
  }
  if (code.startsWith('28')) {
    return new HandshakeError(`upstream authentication failed (${code}: ${said})`, code, { retry: false, blameEndpoint: false });
  }
  return new HandshakeError(`upstream refused the connection (${code}: ${said})`, code, { retry: false, blameEndpoint: false });
}

/** The name the server's certificate must carry by default: the operator's (static, SRV) or the address. */
function nameOf(ep: Endpoint): string {
  if (ep.source === 'static' || ep.source === 'srv') {
    const m = /^\[?(.*?)\]?:\d+$/.exec(ep.label);
    if (m && m[1]) return m[1];
  }
  return ep.host.replace(/%.*$/, '');
}

