// A real PostgreSQL 15 for tests: its own data directory, users with scram-sha-256 and md5
// passwords, a pg_hba.conf with no trust over TCP, listening only where it is started (a lab
// host's namespace, or the isolated runner's private loopback).
//
// initdb runs once per machine (a template data directory, copied for each server: ~0.2 s
// instead of initdb's 2–4 s); PostgreSQL refuses to run as root, so as root everything runs as
// the `postgres` system user (setpriv, which execs: the PID we hold is the postmaster's).
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Host, LabProcess, type ExecOptions, type ExecResult } from './netns.js';

const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const TEMPLATE = '/tmp/mdns-ambassador-pg15-template';

/** Why PostgreSQL tests must skip, or undefined. */
export function canRunPostgres(): string | undefined {
  if (!existsSync(join(PG_BIN, 'postgres')) || !existsSync(join(PG_BIN, 'initdb'))) return `PostgreSQL 15 not installed (${PG_BIN})`;
  if (spawnSync('sh', ['-c', 'command -v psql'], { stdio: 'ignore' }).status !== 0) return 'psql not installed';
  if (isRoot() && !postgresUser()) return 'running as root and there is no `postgres` system user to run PostgreSQL as';
  return undefined;
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

function postgresUser(): { uid: number; gid: number } | undefined {
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) return undefined;
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** argv that runs `bin` as the PostgreSQL user (as is, when we are not root). */
function asPostgres(bin: string, args: string[]): [string, string[]] {
  if (!isRoot()) return [bin, args];
  return ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', bin, ...args]];
}

function ownDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const u = isRoot() ? postgresUser() : undefined;
  if (u) chownSync(dir, u.uid, u.gid);
}

/** The template data directory, made once (a lock directory keeps two test processes apart). */
function template(): string {
  if (existsSync(join(TEMPLATE, 'PG_VERSION'))) return TEMPLATE;
  const lock = `${TEMPLATE}.lock`;
  const until = Date.now() + 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (existsSync(join(TEMPLATE, 'PG_VERSION'))) return TEMPLATE;
      if (Date.now() > until) rmSync(lock, { recursive: true, force: true });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  try {
    const tmp = `${TEMPLATE}.${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    ownDir(tmp);
    const [f, a] = asPostgres(join(PG_BIN, 'initdb'), ['-D', tmp, '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C', '--auth-local=peer', '--auth-host=reject']);
    execFileSync(f, a, { stdio: 'pipe', cwd: '/' });
    renameSync(tmp, TEMPLATE);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
  return TEMPLATE;
}

export interface PgUser {
  name: string;
  password: string;
  /** How the password is stored and asked for (pg_hba). Default scram-sha-256. */
  method?: 'scram-sha-256' | 'md5' | 'password';
}

export interface PostgresOptions {
  port?: number;
  users?: PgUser[];
  databases?: Array<{ name: string; owner?: string }>;
  /** Extra postgresql.conf settings (-c NAME=VALUE). */
  settings?: Record<string, string>;
  /** Extra pg_hba.conf lines, before the generated ones. */
  hba?: string[];
  /** PEM certificate and key: ssl=on. */
  tls?: { cert: string; key: string };
}

export interface PostgresServer {
  port: number;
  /** The address clients use (the host's lab address, or 127.0.0.1). */
  ip: string;
  dir: string;
  process: LabProcess;
  /** psql as the superuser over the Unix socket (peer authentication). */
  psql(sql: string, opts?: ExecOptions & { db?: string }): Promise<string>;
  /** The same, left running (a session held open). */
  spawnPsql(sql: string): LabProcess;
  /** SIGKILL the postmaster (its backends notice and exit). */
  kill9(): void;
  stop(): Promise<void>;
}

/**
 * Starts PostgreSQL in `host` (a lab namespace) or, without one, in this process's namespace
 * (the isolated runner's private loopback). Resolves once it accepts connections and the users
 * and databases exist. Cleaned up by stop() (and by lab.destroy() for a lab host).
 */
export async function startPostgres(host: Host | undefined, opts: PostgresOptions = {}): Promise<PostgresServer> {
  const port = opts.port ?? 5432;
  const base = mkdtempSync('/tmp/amb-pg-');
  const dir = join(base, 'data');
  const sockets = join(base, 'run');
  ownDir(base);
  ownDir(sockets);
  const cp = spawnSync('cp', ['-a', template(), dir]);
  if (cp.status !== 0) throw new Error(`copying the PostgreSQL template failed: ${cp.stderr}`);
  const hba = [
    'local all postgres peer',
    ...(opts.hba ?? []),
    ...(opts.users ?? []).filter((u) => u.method && u.method !== 'scram-sha-256').map((u) => `host all ${u.name} 0.0.0.0/0 ${u.method}`),
    'host all all 0.0.0.0/0 scram-sha-256',
  ];
  writeFileSync(join(dir, 'pg_hba.conf'), `${hba.join('\n')}\n`);
  const settings: Record<string, string> = {
    listen_addresses: '*', port: String(port), unix_socket_directories: sockets, fsync: 'off', synchronous_commit: 'off',
    full_page_writes: 'off', shared_buffers: '16MB', max_connections: '200', log_min_messages: 'warning',
    logging_collector: 'off', ...opts.settings,
  };
  if (opts.tls) {
    writeFileSync(join(dir, 'server.crt'), opts.tls.cert);
    writeFileSync(join(dir, 'server.key'), opts.tls.key, { mode: 0o600 });
    settings.ssl = 'on';
    settings.ssl_cert_file = join(dir, 'server.crt');
    settings.ssl_key_file = join(dir, 'server.key');
  }
  if (isRoot()) spawnSync('chown', ['-R', 'postgres:postgres', base]);
  const args = ['-D', dir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  const [f, a] = asPostgres(join(PG_BIN, 'postgres'), args);
  const name = `[${host?.name ?? 'local'}] postgres :${port}`;
  const proc = host ? host.spawn(f, a, { name }) : new LabProcess(f, a, { name });
  const run = (file: string, argv: string[], o: ExecOptions = {}): Promise<ExecResult> => {
    const [rf, ra] = asPostgres(file, argv);
    return host ? host.exec(rf, ra, o) : execLocal(rf, ra, o);
  };
  const psqlArgs = (sql: string, db = 'postgres') => ['-h', sockets, '-p', String(port), '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-XAtq', '-c', sql];
  const psql = async (sql: string, o: ExecOptions & { db?: string } = {}): Promise<string> => {
    const r = await run('psql', psqlArgs(sql, o.db), { timeoutMs: 15_000, ...o });
    if (r.code !== 0) throw new Error(`psql ${JSON.stringify(sql)} failed: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
  const stop = async (): Promise<void> => {
    await proc.stop(5000);
    rmSync(base, { recursive: true, force: true });
  };
  host?.lab.onDestroy(stop);
  try {
    await proc.waitForLine(/database system is ready to accept connections/, { timeoutMs: 30_000 });
    for (const u of opts.users ?? []) {
      const enc = u.method === 'md5' ? 'md5' : 'scram-sha-256';
      await psql(`SET password_encryption = '${enc}'; CREATE ROLE "${u.name}" LOGIN PASSWORD '${u.password.replace(/'/g, "''")}'`);
    }
    for (const d of opts.databases ?? []) await psql(`CREATE DATABASE "${d.name}"${d.owner ? ` OWNER "${d.owner}"` : ''}`);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n${proc.output.slice(-2000)}`);
  }
  const spawnPsql = (sql: string): LabProcess => {
    const [sf, sa] = asPostgres('psql', psqlArgs(sql));
    return host ? host.spawn(sf, sa, { name: `[${host.name}] psql` }) : new LabProcess(sf, sa);
  };
  return {
    port, ip: host?.ip ?? '127.0.0.1', dir, process: proc, psql, spawnPsql, stop,
    kill9: () => void proc.kill('SIGKILL'),
  };
}

async function execLocal(file: string, args: string[], opts: ExecOptions): Promise<ExecResult> {
  const p = new LabProcess(file, args, { ...opts, stdin: opts.input !== undefined ? 'pipe' : 'ignore' });
  if (opts.input !== undefined) p.child.stdin!.end(opts.input);
  const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const st = await p.exited;
  clearTimeout(t);
  return { ...st, stdout: p.stdout, stderr: p.stderr, timedOut: false };
}


