import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import {
  type DirectoryWatch, type RegistryClient, type Registration, type RegistryClientOptions, RegistryClientBase,
  backoffMs, jitterMs, readCredentials,
} from './client.js';

/**
 * etcd v3 through its JSON gateway (`POST /v3/kv/range`, `/v3/watch`, `/v3/lease/keepalive`…,
 * served by every etcd 3.x member on its client port), on node:http.
 *
 * Why not the `etcd3` package (gRPC): it loads @grpc/grpc-js, @grpc/proto-loader and protobufjs,
 * +25 MB resident per process measured here (this client: none beyond node:http, which the admin
 * endpoint loads anyway), and it decides for us what we most need to decide ourselves: when a
 * lease is to be taken for lost (it reports that after 2 × TTL), how a watch resumes and what a
 * compaction does. The gateway speaks the same protocol buffers as JSON (bytes as base64).
 */

interface KeyValue {
  key?: string;
  value?: string;
  mod_revision?: string;
  lease?: string;
}

interface Header {
  revision?: string;
}

class EtcdError extends Error {
  constructor(message: string, readonly status: number, readonly grpcCode?: number) {
    super(message);
  }
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string => (s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8'));
/** The end of the range of every key starting with `prefix` (its last byte plus one). */
function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, 'utf8');
  b[b.length - 1]!++;
  return b.toString('base64');
}


export class EtcdClient extends RegistryClientBase implements RegistryClient {
  private memberIndex = 0;
  private token: string | undefined;
  private tlsFiles: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  private readonly agent: http.Agent;
  private lease: { id: string; lastOk: number } | undefined;
  private readonly registrations = new Map<string, Registration>();
  private readonly watches = new Set<EtcdWatch>();
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  private ticking: Promise<void> | undefined;
  readonly requestTimeoutMs: number;
  readonly checkMs: number;

  constructor(opts: RegistryClientOptions) {
    super('etcd', opts);
    this.requestTimeoutMs = opts.requestTimeoutMs ?? Math.min(3000, Math.floor(opts.ttlMs / 3));
    this.checkMs = opts.checkMs ?? 10_000;
    this.agent = opts.tls ? new https.Agent({ keepAlive: true, maxSockets: 4 }) : new http.Agent({ keepAlive: true, maxSockets: 4 });
  }

  start(): void {
    this.loadTls();
    this.schedule(0);
    this.watchFirstConnect(this.requestTimeoutMs * this.opts.members.length + 500);
  }

  private loadTls(): void {
    const o = this.opts;
    if (!o.tls) return;
    try {
      this.tlsFiles = {
        ca: o.caFile ? readFileSync(o.caFile) : undefined,
        cert: o.certFile ? readFileSync(o.certFile) : undefined,
        key: o.keyFile ? readFileSync(o.keyFile) : undefined,
      };
    } catch (err) {
      this.problem(`cannot read the registry's TLS files: ${(err as Error).message}`);
    }
  }

  private problem(message: string): void {
    this.status.lastError = message;
    this.emit('problem', message);
  }

  /** The next maintenance round: lease keep-alive (every TTL / 3) and writes owed. */
  private schedule(ms: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => (this.ticking = undefined));
    }, ms);
    this.timer.unref?.();
  }

  private async tick(): Promise<void> {
    try {
      if (this.registrations.size === 0) {
        // Nothing to keep alive: one cheap request tells whether the registry is there.
        if (this.status.state !== 'connected' && this.watches.size === 0) await this.call('/v3/maintenance/status', {}, true);
      } else {
        await this.keepLease();
        for (const [path, r] of [...this.registrations]) {
          if (!r.written) this.emit((await this.write(path, r)) === 'taken' ? 'taken' : 'registered', r.dir, r.name);
        }
      }
      this.failures = 0;
      this.schedule(this.registrations.size > 0 ? Math.floor(this.opts.ttlMs / 3) : this.checkMs);
    } catch (err) {
      this.schedule(backoffMs(this.failures++, 500, Math.min(15_000, this.opts.ttlMs)));
      void err; // status and state were set by call()
    }
  }

  /**
   * Keeps our lease alive; takes a new one (and writes every registration again) when it is lost:
   * the registry says so (TTL 0), or our own deadline passed — no keep-alive acknowledged for a
   * whole TTL, so the registry has expired it, whatever it will say once we reach it again.
   */
  private async keepLease(): Promise<void> {
    const now = Date.now();
    if (this.lease && now - this.lease.lastOk < this.opts.ttlMs) {
      const r = await this.call('/v3/lease/keepalive', { ID: this.lease.id }) as { result?: { TTL?: string } };
      if (Number(r.result?.TTL ?? 0) > 0) {
        this.lease.lastOk = now;
        return;
      }
    }
    const lost = this.lease !== undefined;
    const r = await this.call('/v3/lease/grant', { TTL: Math.ceil(this.opts.ttlMs / 1000) }) as { ID?: string };
    if (!r.ID) throw new EtcdError('lease grant: no ID in the answer', 0);
    const old = this.lease;
    this.lease = { id: r.ID, lastOk: now };
    if (lost) {
      this.status.sessionsRenewed++;
      this.emit('session-renewed', 'lease');
      // The old one is gone or going; revoking it removes nothing of ours (every key is rewritten below).
      void this.call('/v3/lease/revoke', { ID: old!.id }).catch(() => {});
    }
    for (const reg of this.registrations.values()) reg.written = false;
  }

  async register(dir: string, name: string, value: string, sameOwner: (existing: string) => boolean): Promise<'ok' | 'taken' | 'pending'> {
    const path = this.path(dir, name);
    const reg: Registration = { dir, name, value, sameOwner, written: false };
    this.registrations.set(path, reg);
    try {
      await this.keepLease();
      const r = await this.write(path, reg);
      if (this.registrations.size === 1) this.schedule(Math.floor(this.opts.ttlMs / 3));
      return r;
    } catch {
      this.schedule(500);
      return 'pending';
    }
  }

  /** Writes one registration under the current lease: created, or overwritten when it is ours (or our predecessor's). */
  private async write(path: string, reg: Registration): Promise<'ok' | 'taken'> {
    const key = b64(path);
    const lease = this.lease!.id;
    const r = await this.call('/v3/kv/txn', {
      compare: [{ key, target: 'CREATE', result: 'EQUAL', create_revision: '0' }],
      success: [{ request_put: { key, value: b64(reg.value), lease } }],
      failure: [{ request_range: { key } }],
    }) as { succeeded?: boolean; responses?: Array<{ response_range?: { kvs?: KeyValue[] } }> };
    if (!r.succeeded) {
      const kv = r.responses?.[0]?.response_range?.kvs?.[0];
      // Ours (this lease), or a registration this same advertiser left before a restart or a lost lease.
      if (kv && kv.lease !== lease && !reg.sameOwner(unb64(kv.value))) {
        if (this.registrations.get(path) === reg) this.registrations.delete(path);
        return 'taken';
      }
      await this.call('/v3/kv/put', { key, value: b64(reg.value), lease });
    }
    if (this.registrations.get(path) === reg) reg.written = true;
    return 'ok';
  }

  async unregister(dir: string, name: string): Promise<void> {
    const path = this.path(dir, name);
    if (!this.registrations.delete(path)) return;
    await this.call('/v3/kv/deleterange', { key: b64(path) }).catch(() => {
      // Unreachable: the lease ends it when it expires (or the next write of this name replaces it).
    });
  }

  async services(): Promise<string[]> {
    const base = `${this.opts.prefix}/`;
    const r = await this.call('/v3/kv/range', { key: b64(base), range_end: prefixEnd(base), keys_only: true }, true) as { kvs?: KeyValue[] };
    return [...new Set((r.kvs ?? []).map((kv) => unb64(kv.key).slice(base.length).split('/')[0]!).filter((d) => d !== ''))];
  }

  watch(dir: string): DirectoryWatch {
    const w = new EtcdWatch(this, dir, this.path(dir) + '/');
    this.watches.add(w);
    w.once('stopped', () => this.watches.delete(w));
    w.begin();
    return w;
  }

  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    for (const w of [...this.watches]) w.stop();
    const work = (async () => {
      await this.ticking?.catch(() => {});
      const paths = [...this.registrations.keys()];
      this.registrations.clear();
      await Promise.all(paths.map((p) => this.call('/v3/kv/deleterange', { key: b64(p) }).catch(() => {})));
      if (this.lease) await this.call('/v3/lease/revoke', { ID: this.lease.id }).catch(() => {});
    })();
    await Promise.race([work, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    this.setState('closed');
    this.agent.destroy();
  }

  // ------------------------------------------------------------------------------------------
  // Requests

  /** Options of one HTTP request to member `i`. */
  requestOptions(i: number, path: string, body: string): http.RequestOptions & https.RequestOptions {
    const m = this.opts.members[i]!;
    const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
    if (this.token) headers.authorization = this.token;
    // A member cut off from its cluster's leader cancels our watch instead of staying silent.
    headers['grpc-metadata-hasleader'] = 'true';
    return {
      host: m.host, port: m.port, method: 'POST', path, headers,
      ...(this.opts.tls ? { ca: this.tlsFiles.ca, cert: this.tlsFiles.cert, key: this.tlsFiles.key } : {}),
    };
  }

  get protocol(): typeof http | typeof https {
    return this.opts.tls ? https : http;
  }

  memberName(i: number): string {
    const m = this.opts.members[i]!;
    return m.host.includes(':') ? `[${m.host}]:${m.port}` : `${m.host}:${m.port}`;
  }

  get currentMember(): number {
    return this.memberIndex;
  }

  /**
   * One request, to the member in use, then to each other member in turn (a dead member, one
   * without quorum, a timeout). Throws the last error when none answered.
   */
  async call(path: string, body: object, read = false): Promise<unknown> {
    if (this.closed && !path.includes('deleterange') && !path.includes('revoke')) throw new EtcdError('closed', 0);
    const n = this.opts.members.length;
    let last: Error | undefined;
    for (let k = 0; k < n; k++) {
      const i = (this.memberIndex + k) % n;
      try {
        const out = await this.tryMember(i, path, body, read);
        if (i !== this.memberIndex) this.memberIndex = i;
        this.status.member = this.memberName(i);
        if (this.status.state !== 'closed') this.setState('connected');
        return out;
      } catch (err) {
        last = err as Error;
        // Refused credentials or a bad request: another member would say the same.
        if (err instanceof EtcdError && (err.status === 400 || err.grpcCode === 3 || err.grpcCode === 7)) break;
      }
    }
    if (last instanceof EtcdError && (last.status === 400 || last.status === 401 || last.status === 403 || last.grpcCode === 3 || last.grpcCode === 7)) {
      // Reachable, but refusing us (no or wrong credentials, no permission): said once per reason.
      if (this.status.lastError !== last.message) {
        this.status.lastError = last.message;
        this.emit('problem', `refused: ${last.message}`);
      }
      throw last;
    }
    if (this.status.state !== 'closed') this.setState(this.status.state === 'connecting' ? 'connecting' : 'reconnecting', last?.message);
    this.status.lastError = last?.message ?? null;
    throw last ?? new EtcdError('no member', 0);
  }

  private async tryMember(i: number, path: string, body: object, read: boolean, retried = false): Promise<unknown> {
    if (this.opts.authFile && this.token === undefined) await this.authenticate(i);
    try {
      return await this.post(i, path, body, read);
    } catch (err) {
      if (!retried && this.opts.authFile && err instanceof EtcdError && (err.status === 401 || /auth token/.test(err.message))) {
        // Simple tokens expire (5 min idle by default): log in again once.
        this.token = undefined;
        return this.tryMember(i, path, body, read, true);
      }
      throw err;
    }
  }

  private async authenticate(i: number): Promise<void> {
    let creds;
    try {
      creds = readCredentials(this.opts.authFile!);
    } catch (err) {
      throw new EtcdError((err as Error).message, 400);
    }
    const r = await this.post(i, '/v3/auth/authenticate', { name: creds.user, password: creds.password }, false) as { token?: string };
    if (!r.token) throw new EtcdError('etcd accepted the credentials but gave no token (is auth enabled?)', 400);
    this.token = r.token;
    this.status.authenticated = true;
  }

  private post(i: number, path: string, body: object, read: boolean): Promise<unknown> {
    const text = JSON.stringify(body);
    this.status.requests++;
    if (read) this.status.reads++;
    return new Promise((resolve, reject) => {
      const req = this.protocol.request({ ...this.requestOptions(i, path, text), agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          let json: Record<string, unknown>;
          try {
            json = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
          } catch {
            return reject(new EtcdError(`${this.memberName(i)}: answer is not JSON (HTTP ${res.statusCode}): is this etcd's client port?`, res.statusCode ?? 0));
          }
          if (res.statusCode !== 200) {
            const msg = String(json.message ?? json.error ?? `HTTP ${res.statusCode}`);
            return reject(new EtcdError(`${this.memberName(i)}: ${msg}`, res.statusCode ?? 0, json.code as number | undefined));
          }
          resolve(json);
        });
        res.on('error', (err) => reject(err));
      });
      const timer = setTimeout(() => req.destroy(new EtcdError(`${this.memberName(i)}: no answer within ${this.requestTimeoutMs} ms`, 0)), this.requestTimeoutMs);
      req.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(err instanceof EtcdError ? err : new EtcdError(`${this.memberName(i)}: ${networkReason(err)}`, 0));
      });
      req.end(text);
    });
  }

  /** A watch stream on member `i` (its own connection). */
  openStream(i: number, body: object): http.ClientRequest {
    const text = JSON.stringify(body);
    this.status.requests++;
    this.status.reads++;
    const req = this.protocol.request({ ...this.requestOptions(i, '/v3/watch', text), agent: false });
    req.end(text);
    return req;
  }
}

/**
 * One directory followed: listed once, then watched from the revision after the listing; the
 * stream resumes from the last revision seen after a break (another member), and a compacted
 * revision makes it list again. Every `checkMs` a keys-only range (no values) compares what the
 * registry holds with what the watch said: a lost event is caught within one check.
 */
class EtcdWatch extends EventEmitter implements DirectoryWatch {
  private readonly values = new Map<string, { value: string; mod: string }>();
  private revision = '0';
  private stream: http.ClientRequest | undefined;
  private streamFailures = 0;
  private stopped = false;
  private checkTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private mismatchSince: string | undefined;
  private resuming = false;
  synced = false;
  listings = 0;

  constructor(private readonly client: EtcdClient, readonly dir: string, private readonly keyPrefix: string) {
    super();
  }

  get entries(): ReadonlyMap<string, string> {
    const out = new Map<string, string>();
    for (const [k, v] of this.values) out.set(k, v.value);
    return out;
  }

  begin(): void {
    void this.relist();
    this.scheduleCheck();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.checkTimer);
    clearTimeout(this.restartTimer);
    this.stream?.destroy();
    this.emit('stopped');
  }

  private nameOf(key: string): string {
    return key.slice(this.keyPrefix.length);
  }

  /** Lists the directory, replaces what we knew, and watches from the revision after. */
  private async relist(): Promise<void> {
    if (this.stopped) return;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.stream?.destroy();
    this.stream = undefined;
    let r: { header?: Header; kvs?: KeyValue[] };
    try {
      r = await this.client.call('/v3/kv/range', { key: b64(this.keyPrefix), range_end: prefixEnd(this.keyPrefix) }, true) as typeof r;
    } catch {
      this.restartTimer = setTimeout(() => void this.relist(), backoffMs(this.streamFailures++));
      return;
    }
    if (this.stopped) return;
    this.listings++;
    this.values.clear();
    for (const kv of r.kvs ?? []) {
      const name = this.nameOf(unb64(kv.key));
      if (name !== '' && !name.includes('/')) this.values.set(name, { value: unb64(kv.value), mod: kv.mod_revision ?? '0' });
    }
    this.revision = r.header?.revision ?? '0';
    this.synced = true;
    this.mismatchSince = undefined;
    this.emit('change');
    this.openStream();
  }

  private openStream(): void {
    if (this.stopped) return;
    const i = this.client.currentMember;
    const req = this.client.openStream(i, {
      create_request: { key: b64(this.keyPrefix), range_end: prefixEnd(this.keyPrefix), start_revision: String(BigInt(this.revision) + 1n) },
    });
    this.stream = req;
    let buf = '';
    const broken = (why: string) => {
      if (this.stream !== req || this.stopped) return;
      this.stream = undefined;
      req.destroy();
      // Resumed from the last revision seen, after a jittered pause (a restarted member must not
      // meet every connector at the same millisecond).
      this.restartTimer = setTimeout(() => this.resume(), backoffMs(this.streamFailures++, 250, 10_000));
      this.emit('stream-broken', why);
    };
    req.on('response', (res) => {
      if (res.statusCode !== 200) return broken(`HTTP ${res.statusCode}`);
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line !== '') this.onMessage(line, broken);
        }
      });
      res.on('end', () => broken('stream ended'));
      res.on('error', () => broken('stream error'));
    });
    req.on('error', (err: NodeJS.ErrnoException) => broken(networkReason(err)));
  }

  /** The stream broke: watch again from where we were (a fresh member if this one is gone). */
  private resume(): void {
    this.restartTimer = undefined;
    if (this.stopped || this.resuming) return;
    this.resuming = true;
    // A cheap request first: it fails over to a live member, and the stream follows it there.
    this.client.call('/v3/maintenance/status', {}, false).then(() => {
      this.resuming = false;
      if (!this.stream) this.openStream();
    }, () => {
      this.resuming = false;
      this.restartTimer = setTimeout(() => this.resume(), backoffMs(this.streamFailures++, 250, 10_000));
    });
  }

  private onMessage(line: string, broken: (why: string) => void): void {
    let msg: { result?: { header?: Header; created?: boolean; canceled?: boolean; compact_revision?: string; cancel_reason?: string;
      events?: Array<{ type?: string; kv?: KeyValue }> }; error?: unknown };
    try {
      msg = JSON.parse(line);
    } catch {
      return broken('unreadable watch message');
    }
    const res = msg.result;
    if (!res) return broken(`watch error: ${JSON.stringify(msg.error ?? msg).slice(0, 200)}`);
    if (res.canceled) {
      if (res.compact_revision && res.compact_revision !== '0') {
        // What happened between our revision and the compaction is gone: list again.
        this.emit('compacted', res.compact_revision);
        void this.relist();
        return;
      }
      return broken(`watch cancelled: ${res.cancel_reason ?? 'no reason given'}`);
    }
    this.streamFailures = 0;
    if (res.created) return;
    let changed = false;
    for (const e of res.events ?? []) {
      const key = unb64(e.kv?.key);
      const name = this.nameOf(key);
      if (name === '' || name.includes('/')) continue;
      if (e.type === 'DELETE') changed = this.values.delete(name) || changed;
      else {
        this.values.set(name, { value: unb64(e.kv?.value), mod: e.kv?.mod_revision ?? '0' });
        changed = true;
      }
    }
    if (res.header?.revision && BigInt(res.header.revision) > BigInt(this.revision)) this.revision = res.header.revision;
    if (changed) this.emit('change');
  }

  private scheduleCheck(ms = jitterMs(this.client.checkMs * 0.8, this.client.checkMs * 1.2)): void {
    if (this.stopped) return;
    clearTimeout(this.checkTimer);
    this.checkTimer = setTimeout(() => void this.check().then((next) => this.scheduleCheck(next)), ms);
    this.checkTimer.unref?.();
  }

  /**
   * The consistency check: keys and mod revisions (no values) of the directory against ours. A
   * difference that the watch has not caught up with by the next look (a second later) is a lost
   * event or a dead stream: list again.
   */
  async check(): Promise<number | undefined> {
    if (this.stopped || !this.synced) return undefined;
    let r: { header?: Header; kvs?: KeyValue[] };
    try {
      r = await this.client.call('/v3/kv/range', { key: b64(this.keyPrefix), range_end: prefixEnd(this.keyPrefix), keys_only: true }, true) as typeof r;
    } catch {
      return undefined;
    }
    if (this.stopped) return undefined;
    const theirs = new Map<string, string>();
    for (const kv of r.kvs ?? []) {
      const name = this.nameOf(unb64(kv.key));
      if (name !== '' && !name.includes('/')) theirs.set(name, kv.mod_revision ?? '0');
    }
    const same = theirs.size === this.values.size && [...theirs].every(([k, mod]) => this.values.get(k)?.mod === mod);
    if (same) {
      this.mismatchSince = undefined;
      if (!this.stream && !this.restartTimer && !this.resuming) this.resume();
      return undefined;
    }
    if (this.mismatchSince === undefined && this.stream) {
      // Perhaps only in flight: look again in a second.
      this.mismatchSince = r.header?.revision ?? '0';
      return 1000;
    }
    this.emit('stale', 'the watch missed a change (consistency check)');
    await this.relist();
    return undefined;
  }
}

/**
 * Why a request failed, short: a socket errno as its code (ECONNREFUSED), a TLS failure in words
 * with its code ("unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE)",
 * "TLS alert bad certificate (…)" when the server refused ours):
 * the code alone does not tell an operator which certificate is wrong.
 */
function networkReason(err: NodeJS.ErrnoException): string {
  if (err.code && /^E[A-Z]+$/.test(err.code)) return err.code;
  // OpenSSL's own text is a line of internals; its code says it: "TLS alert bad certificate".
  // (OpenSSL 3 in Node 24 names them ERR_SSL_SSL/TLS_ALERT_…, Node 20 ERR_SSL_SSLV3_ALERT_…)
  if (err.code?.startsWith('ERR_SSL_')) return `TLS ${err.code.replace(/^ERR_SSL_(SSLV3_|TLSV1_|TLSV13_|SSL\/TLS_)?/, '').toLowerCase().replace(/_/g, ' ')} (${err.code})`;
  // Node 24 appends a hint about --use-system-ca: not ours to give (the CA is the URL's ca=).
  const message = err.message.split('; ')[0]!;
  return err.code && !message.includes(err.code) ? `${message} (${err.code})` : message;
}
