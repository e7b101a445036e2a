import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';

/** A registry member, as configured. */
export interface Member {
  host: string;
  port: number;
}

/** What a registry client needs to know (the parsed --registry URL, without the config floor). */
export interface RegistryClientOptions {
  members: readonly Member[];
  /** `/mdns-ambassador`: every key of ours lives under it. */
  prefix: string;
  /** Lease TTL / session timeout (ms). */
  ttlMs: number;
  tls?: boolean;
  authFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** For logs and /peers: the URL without secrets. */
  display: string;
  /** Period of the consistency check of every watched directory (ms). Default 10 000. */
  checkMs?: number;
  /** Timeout of one request (ms). Default min(3000, ttl / 3). */
  requestTimeoutMs?: number;
}

export type RegistryConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/**
 * The registry connection as the admin layer shows it (read-only): connected or reconnecting
 * since when, the last error, whether credentials were presented and accepted.
 */
export interface RegistryStatus {
  kind: 'etcd' | 'zookeeper';
  url: string;
  state: RegistryConnectionState;
  /** Epoch ms the state began. */
  since: number;
  /** The member in use now (host:port). */
  member: string | null;
  lastError: string | null;
  /** Credentials (auth-file, client certificate) were presented and accepted. */
  authenticated: boolean;
  /** Requests sent to the registry, reads among them (watch streams count once per start). */
  requests: number;
  reads: number;
  /** Times the registration lease / session was found lost (expired during a partition) and renewed. */
  sessionsRenewed: number;
}

/** One service directory watched: its complete current content, re-emitted on every change. */
export interface DirectoryWatch extends EventEmitter {
  /** Directory name → raw value of every entry, as last known. */
  readonly entries: ReadonlyMap<string, string>;
  /** A complete listing has been seen since the watch started. */
  readonly synced: boolean;
  /** Complete listings read (first one, after a reconnect, a compaction, a failed check). */
  readonly listings: number;
  stop(): void;
}

/**
 * A registry connection: registrations that live as long as this process (an etcd lease, a
 * ZooKeeper session) and directory watches that cannot go stale. Events: 'state'
 * (RegistryConnectionState), 'error' is never emitted (problems show in status.lastError and
 * 'problem' (message)), 'registered' (dir, name) when a registration owed (the registry was
 * away, the lease or session was lost) has been written, 'taken' (dir, name) when it was found
 * owned by another owner meanwhile.
 */
export interface RegistryClient extends EventEmitter {
  readonly status: RegistryStatus;
  /** Connects in the background, retrying with jittered back-off; never throws. */
  start(): void;
  /**
   * Writes `<prefix>/<dir>/<name>` = value under our lease/session, and again after every lost
   * one, until unregister(). 'taken': another live owner holds that name (choose another).
   * Resolves 'pending' while the registry is unreachable: written when it is back.
   */
  register(dir: string, name: string, value: string, sameOwner: (existing: string) => boolean): Promise<'ok' | 'taken' | 'pending'>;
  unregister(dir: string, name: string): Promise<void>;
  /** The service directories under the prefix now (for `browse` without a name). */
  services(): Promise<string[]>;
  /** Follows `<prefix>/<dir>/`: 'change' whenever `entries` changed. */
  watch(dir: string): DirectoryWatch;
  /** Deletes our registrations (lease revoked, session closed), bounded by `timeoutMs`, and stops. */
  close(timeoutMs?: number): Promise<void>;
}

/** A registration a client keeps, and writes again after every lost lease or session. */
export interface Registration {
  dir: string;
  name: string;
  value: string;
  sameOwner: (existing: string) => boolean;
  /** Written under the current lease / in the current session. */
  written: boolean;
}

/** `user password` from an auth file (one line; the password may hold spaces). */
export function readCredentials(file: string): { user: string; password: string } {
  const line = readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#')) ?? '';
  const sp = line.search(/\s/);
  if (sp <= 0) throw new Error(`registry auth-file ${file}: expected one line 'user password'`);
  return { user: line.slice(0, sp), password: line.slice(sp).trim() };
}

/** Full back-off jitter (AWS architecture blog): a uniform delay in [base/2, min(cap, base·2^n)]. */
export function backoffMs(attempt: number, baseMs = 500, capMs = 15_000): number {
  const top = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(baseMs / 2 + Math.random() * (top - baseMs / 2));
}

/** A short random delay, so that many connectors reacting to one change do not read at once. */
export function jitterMs(minMs: number, maxMs: number): number {
  return Math.round(minMs + Math.random() * (maxMs - minMs));
}

/** The base of both clients' status bookkeeping. */
export abstract class RegistryClientBase extends EventEmitter {
  readonly status: RegistryStatus;

  constructor(kind: 'etcd' | 'zookeeper', protected readonly opts: RegistryClientOptions) {
    super();
    this.status = {
      kind, url: opts.display, state: 'connecting', since: Date.now(), member: null, lastError: null,
      authenticated: false, requests: 0, reads: 0, sessionsRenewed: 0,
    };
  }

  /**
   * Unreachable from the start is worth saying too (the state does not change then): once, when
   * no member answered within `ms` of start().
   */
  protected watchFirstConnect(ms: number): void {
    setTimeout(() => {
      if (this.status.state === 'connecting') this.emit('state', 'connecting', this.status.lastError ?? `no member answered within ${ms} ms`);
    }, ms).unref?.();
  }

  protected setState(state: RegistryConnectionState, error?: string): void {
    if (error !== undefined) this.status.lastError = error;
    if (this.status.state === state) return;
    this.status.state = state;
    this.status.since = Date.now();
    this.emit('state', state, error);
  }

  protected path(dir: string, name?: string): string {
    return `${this.opts.prefix}/${dir}${name === undefined ? '' : `/${name}`}`;
  }
}
