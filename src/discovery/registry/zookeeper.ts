import { EventEmitter } from 'node:events';
import { requireCommonJs } from '../../base/commonjs.js';
import {
  type DirectoryWatch, type RegistryClient, type Registration, type RegistryClientOptions, RegistryClientBase,
  jitterMs, readCredentials,
} from './client.js';

/**
 * ZooKeeper through `node-zookeeper-client` (pure JavaScript; the `zookeeper` package binds the
 * C client and needs a compiler). That library was written for ZooKeeper 3.4: one-shot watches
 * only, no read timeout, and a session that expired while the network was cut is reported only
 * after reconnecting (its issues #13, #20). What this wrapper adds:
 * - a deadline of our own: cut off (disconnected, or requests unanswered) for a whole session
 *   timeout means the session is gone on the servers; a new client (new session) is made and
 *   every registration written again;
 * - every request bounded by a timeout;
 * - watches re-armed by listing again after every reconnect and every notification (gathered
 *   in a short jittered pause), and a cheap check of each directory's cversion every TTL / 3
 *   (which is also how a silent connection is noticed);
 * - a value changed as delete + create in one transaction, so the children watch sees it.
 */

interface ZkStat {
  cversion: number;
  ephemeralOwner: Buffer;
}
interface ZkException extends Error {
  getCode(): number;
}
interface ZkTransaction {
  remove(path: string, version?: number): ZkTransaction;
  create(path: string, data: Buffer, acls: unknown[], mode: number): ZkTransaction;
  commit(cb: (err: ZkException | null) => void): void;
}
interface ZkClient extends EventEmitter {
  connect(): void;
  close(): void;
  getSessionId(): Buffer;
  addAuthInfo(scheme: string, auth: Buffer): void;
  create(path: string, data: Buffer, acls: unknown[], mode: number, cb: (err: ZkException | null) => void): void;
  mkdirp(path: string, data: Buffer, acls: unknown[], mode: number, cb: (err: ZkException | null) => void): void;
  remove(path: string, version: number, cb: (err: ZkException | null) => void): void;
  getData(path: string, cb: (err: ZkException | null, data: Buffer | undefined, stat: ZkStat) => void): void;
  getChildren(path: string, watcher: (event: unknown) => void, cb: (err: ZkException | null, children: string[], stat: ZkStat) => void): void;
  exists(path: string, watcher: ((event: unknown) => void) | undefined, cb: (err: ZkException | null, stat: ZkStat | null) => void): void;
  transaction(): ZkTransaction;
}
interface ZkLibrary {
  createClient(connectionString: string, options: { sessionTimeout: number; spinDelay: number; retries: number }): ZkClient;
  ACL: { new(perms: number, id: unknown): unknown; OPEN_ACL_UNSAFE: unknown[] };
  Id: new (scheme: string, id: string) => unknown;
  Permission: { ALL: number };
  CreateMode: { PERSISTENT: number; EPHEMERAL: number };
  Exception: { NODE_EXISTS: number; NO_NODE: number; NOT_EMPTY: number; NO_AUTH: number };
}


export class ZooKeeperClient extends RegistryClientBase implements RegistryClient {
  private readonly lib: ZkLibrary;
  private zk: ZkClient | undefined;
  private session: string | undefined;
  private cutOffSince: number | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private liveness: NodeJS.Timeout | undefined;
  private readonly registrations = new Map<string, Registration>();
  private readonly watches = new Set<ZkWatch>();
  private closed = false;
  private acl: unknown[];
  readonly requestTimeoutMs: number;
  readonly checkMs: number;

  constructor(opts: RegistryClientOptions) {
    super('zookeeper', opts);
    // Loaded only with --registry zk://: ~10 MB resident that mDNS-only users do not pay.
    this.lib = requireCommonJs('node-zookeeper-client') as ZkLibrary;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? Math.min(3000, Math.floor(opts.ttlMs / 3));
    this.checkMs = opts.checkMs ?? Math.floor(opts.ttlMs / 3);
    this.acl = this.lib.ACL.OPEN_ACL_UNSAFE;
  }

  start(): void {
    this.connectNew();
    this.scheduleLiveness();
    this.watchFirstConnect(this.requestTimeoutMs * 2);
  }

  private connectString(): string {
    return this.opts.members.map((m) => (m.host.includes(':') ? `[${m.host}]:${m.port}` : `${m.host}:${m.port}`)).join(',');
  }

  /** A new client: a new session, once the old one is known (or presumed) expired. */
  private connectNew(): void {
    if (this.closed) return;
    const old = this.zk;
    if (old) {
      old.removeAllListeners();
      old.on('error', () => {});
      old.close();
    }
    const zk = this.lib.createClient(this.connectString(), { sessionTimeout: this.opts.ttlMs, spinDelay: 1000, retries: 0 });
    this.zk = zk;
    zk.on('connected', () => this.onConnected(zk));
    zk.on('connectedReadOnly', () => this.onCutOff('connected to a read-only server'));
    zk.on('disconnected', () => this.onCutOff('disconnected'));
    zk.on('expired', () => {
      this.problem('session expired');
      this.connectNew();
    });
    zk.on('authenticationFailed', () => {
      this.status.authenticated = false;
      this.problem('authentication failed (auth-file credentials refused)');
    });
    if (this.opts.authFile) {
      try {
        const c = readCredentials(this.opts.authFile);
        zk.addAuthInfo('digest', Buffer.from(`${c.user}:${c.password}`));
        // Nodes we create: every right for whoever authenticates as this user, nothing for others.
        this.acl = [new this.lib.ACL(this.lib.Permission.ALL, new this.lib.Id('auth', ''))];
      } catch (err) {
        this.problem((err as Error).message);
      }
    }
    zk.connect();
  }

  private problem(message: string): void {
    this.status.lastError = message;
    this.emit('problem', message);
  }

  private onConnected(zk: ZkClient): void {
    if (zk !== this.zk || this.closed) return;
    clearTimeout(this.deadline);
    this.deadline = undefined;
    this.cutOffSince = undefined;
    const session = zk.getSessionId().toString('hex');
    const renewed = this.session !== undefined && session !== this.session;
    if (session !== this.session) {
      for (const r of this.registrations.values()) r.written = false;
      if (renewed) {
        this.status.sessionsRenewed++;
        this.emit('session-renewed', 'session');
      }
      this.session = session;
    }
    if (this.opts.authFile) this.status.authenticated = true;
    this.status.member = null;
    this.setState('connected');
    void this.writeOwed();
    // Watches are one-shot and may have fired while we were away: list again, which re-arms them.
    for (const w of this.watches) w.scheduleRelist();
  }

  /**
   * Disconnected, or requests unanswered: the library reconnects by itself (same session) to
   * any member; if that has not happened within the session timeout, the servers have expired
   * the session and the library will not say so until it reaches one: a new session now.
   */
  private onCutOff(why: string): void {
    if (this.closed) return;
    this.status.lastError = why;
    this.cutOffSince ??= Date.now();
    this.setState(this.session === undefined ? 'connecting' : 'reconnecting', why);
    if (this.deadline) return;
    const left = this.cutOffSince + this.opts.ttlMs - Date.now();
    this.deadline = setTimeout(() => {
      this.deadline = undefined;
      if (this.status.state === 'connected') return;
      this.problem(`cut off for a whole session timeout (${this.opts.ttlMs} ms): the session is expired; starting a new one`);
      this.cutOffSince = Date.now();
      this.connectNew();
      this.onCutOff('new session: connecting');
    }, Math.max(0, left));
  }

  /** Every TTL / 3: each watched directory's cversion (or the prefix); no answer is a cut-off. */
  private scheduleLiveness(): void {
    if (this.closed) return;
    this.liveness = setTimeout(() => {
      const checks = this.watches.size > 0 ? [...this.watches].map((w) => w.check()) : [this.call<ZkStat | null>((zk, cb) => zk.exists(this.opts.prefix, undefined, cb), true).then(() => {})];
      void Promise.all(checks).then(
        () => {
          if (this.cutOffSince !== undefined && this.status.state !== 'connected' && this.zk) this.onConnected(this.zk);
        },
        (err: Error) => this.onCutOff(err.message),
      ).finally(() => this.scheduleLiveness());
    }, jitterMs(this.checkMs * 0.8, this.checkMs * 1.2));
    this.liveness.unref?.();
  }

  /** One request on the current client, bounded by the request timeout. */
  call<T>(fn: (zk: ZkClient, cb: (err: ZkException | null, value?: T) => void) => void, read = false): Promise<T> {
    const zk = this.zk;
    if (!zk || this.closed) return Promise.reject(new Error('closed'));
    this.status.requests++;
    if (read) this.status.reads++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer within ${this.requestTimeoutMs} ms`)), this.requestTimeoutMs);
      fn(zk, (err, value) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value as T);
      });
    });
  }

  /** Two values per call (data and stat, children and stat). */
  call2<A, B>(fn: (zk: ZkClient, cb: (err: ZkException | null, a: A, b: B) => void) => void, read = true): Promise<[A, B]> {
    return this.call<[A, B]>((zk, cb) => fn(zk, (err, a, b) => cb(err, [a, b])), read);
  }

  code(err: unknown): number | undefined {
    return typeof (err as ZkException)?.getCode === 'function' ? (err as ZkException).getCode() : undefined;
  }

  get exceptions(): ZkLibrary['Exception'] {
    return this.lib.Exception;
  }

  /** Paths whose ACL refused us, said once each (until they are readable again). */
  private readonly denied = new Set<string>();

  /** A watched directory's ACL refuses us: said once, or nothing would tell why it stays empty. */
  accessDenied(path: string): void {
    if (this.denied.has(path)) return;
    this.denied.add(path);
    this.problem(`not allowed to read ${path} (ZooKeeper NO_AUTH): its nodes belong to an authenticated user; give auth-file= with that user`);
  }

  accessGranted(path: string): void {
    this.denied.delete(path);
  }

  async register(dir: string, name: string, value: string, sameOwner: (existing: string) => boolean): Promise<'ok' | 'taken' | 'pending'> {
    const path = this.path(dir, name);
    const reg: Registration = { dir, name, value, sameOwner, written: false };
    this.registrations.set(path, reg);
    if (this.status.state !== 'connected') return 'pending';
    try {
      return await this.write(path, reg);
    } catch {
      return 'pending';
    }
  }

  private async writeOwed(): Promise<void> {
    for (const [path, r] of [...this.registrations]) {
      if (r.written) continue;
      try {
        this.emit((await this.write(path, r)) === 'taken' ? 'taken' : 'registered', r.dir, r.name);
      } catch {
        return; // cut off again: the next connect writes what is still owed
      }
    }
  }

  private async write(path: string, reg: Registration): Promise<'ok' | 'taken'> {
    const data = Buffer.from(reg.value, 'utf8');
    const { EPHEMERAL, PERSISTENT } = this.lib.CreateMode;
    const dirPath = this.path(reg.dir);
    try {
      await this.call((zk, cb) => zk.mkdirp(dirPath, Buffer.alloc(0), this.acl, PERSISTENT, cb));
      await this.call((zk, cb) => zk.create(path, data, this.acl, EPHEMERAL, cb));
    } catch (err) {
      if (this.code(err) !== this.lib.Exception.NODE_EXISTS) throw err;
      const [existing, stat] = await this.call2<Buffer | undefined, ZkStat>((zk, cb) => zk.getData(path, cb));
      const ours = stat.ephemeralOwner.toString('hex') === this.session;
      if (!ours && !reg.sameOwner(existing?.toString('utf8') ?? '')) {
        if (this.registrations.get(path) === reg) this.registrations.delete(path);
        return 'taken';
      }
      if (!ours || existing?.toString('utf8') !== reg.value) {
        // Replaced in one transaction: watchers see the children change, never a gap.
        await this.call((zk, cb) => zk.transaction().remove(path, -1).create(path, data, this.acl, EPHEMERAL).commit(cb));
      }
    }
    if (this.registrations.get(path) === reg) reg.written = true;
    return 'ok';
  }

  async unregister(dir: string, name: string): Promise<void> {
    const path = this.path(dir, name);
    if (!this.registrations.delete(path)) return;
    await this.call((zk, cb) => zk.remove(path, -1, cb)).catch(() => {
      // Gone already, or unreachable: the session's end removes it.
    });
  }

  async services(): Promise<string[]> {
    try {
      const [children] = await this.call2<string[], ZkStat>((zk, cb) => zk.getChildren(this.opts.prefix, undefined as never, cb));
      return children;
    } catch (err) {
      if (this.code(err) === this.lib.Exception.NO_NODE) return [];
      throw err;
    }
  }

  watch(dir: string): DirectoryWatch {
    const w = new ZkWatch(this, this.path(dir));
    this.watches.add(w);
    w.once('stopped', () => this.watches.delete(w));
    if (this.status.state === 'connected') w.scheduleRelist(0);
    return w;
  }

  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    const paths = [...this.registrations.keys()];
    this.registrations.clear();
    for (const w of [...this.watches]) w.stop();
    const work = Promise.all(paths.map((p) => this.call((zk, cb) => zk.remove(p, -1, cb)).catch(() => {})));
    await Promise.race([work, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    this.closed = true;
    clearTimeout(this.deadline);
    clearTimeout(this.liveness);
    const zk = this.zk;
    if (zk) {
      // Closing the session removes every ephemeral node left (and tells the server now).
      await Promise.race([new Promise((r) => zk.once('disconnected', r)), new Promise((r) => setTimeout(r, Math.min(500, timeoutMs)).unref())]);
      zk.removeAllListeners();
      zk.on('error', () => {});
      zk.close();
    }
    this.setState('closed');
  }
}

/**
 * One directory followed: children listed with a one-shot watch (re-armed by listing again),
 * each child's value read (a child deleted between the list and the read is skipped, not an
 * error). Notifications are gathered for a short jittered pause: a burst is one listing.
 */
class ZkWatch extends EventEmitter implements DirectoryWatch {
  private values = new Map<string, string>();
  private cversion = -1;
  private timer: NodeJS.Timeout | undefined;
  private listing: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  synced = false;
  listings = 0;
  private readonly watcher = (): void => this.scheduleRelist();
  /** The last listing was refused by the directory's ACL. */
  private denied = false;

  constructor(private readonly client: ZooKeeperClient, private readonly dirPath: string) {
    super();
  }

  get entries(): ReadonlyMap<string, string> {
    return this.values;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.emit('stopped');
  }

  scheduleRelist(delayMs = jitterMs(20, 250)): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.listing) {
        this.again = true;
        return;
      }
      this.listing = this.relist().finally(() => {
        this.listing = undefined;
        if (this.again) {
          this.again = false;
          this.scheduleRelist();
        }
      });
    }, delayMs);
  }

  private async relist(): Promise<void> {
    const c = this.client;
    let children: string[];
    let stat: ZkStat;
    try {
      [children, stat] = await c.call2<string[], ZkStat>((zk, cb) => zk.getChildren(this.dirPath, this.watcher, cb));
    } catch (err) {
      if (c.code(err) === c.exceptions.NO_NODE) {
        // Nothing registered yet: be told when the directory appears.
        await c.call((zk, cb) => zk.exists(this.dirPath, this.watcher, cb), true).catch(() => {});
        this.apply(new Map(), -1);
      } else if (c.code(err) === c.exceptions.NO_AUTH) {
        // Not ours to read: nothing from it (the cheap check tries again, an ACL may change).
        c.accessDenied(this.dirPath);
        this.denied = true;
      }
      return;
    }
    this.denied = false;
    c.accessGranted(this.dirPath);
    const values = new Map<string, string>();
    for (const child of children) {
      try {
        const [data] = await c.call2<Buffer | undefined, ZkStat>((zk, cb) => zk.getData(`${this.dirPath}/${child}`, cb));
        values.set(child, data?.toString('utf8') ?? '');
      } catch (err) {
        if (c.code(err) !== c.exceptions.NO_NODE) return; // cut off: the next connect lists again
      }
    }
    this.apply(values, stat.cversion);
  }

  private apply(values: Map<string, string>, cversion: number): void {
    if (this.stopped) return;
    this.listings++;
    this.cversion = cversion;
    this.synced = true;
    const same = values.size === this.values.size && [...values].every(([k, v]) => this.values.get(k) === v);
    this.values = values;
    if (!same) this.emit('change');
  }

  /** The cheap check: the directory's cversion moved without a notification reaching us → list again. */
  async check(): Promise<void> {
    if (this.stopped) return;
    const stat = await this.client.call<ZkStat | null>((zk, cb) => zk.exists(this.dirPath, undefined, cb), true);
    const cv = stat ? stat.cversion : -1;
    if (this.denied && !this.timer && !this.listing) this.scheduleRelist(0);
    else if (this.synced && cv !== this.cversion && !this.timer && !this.listing) {
      this.emit('stale', 'the watch missed a change (cversion)');
      this.scheduleRelist(0);
    }
  }
}
