// Shared helpers of the ambassador end-to-end tests (test/e2e/ambassador-*.test.ts): run the real
// CLI (`node dist/cli/bin.js`) inside lab hosts with JSON logs, read those logs, and drive bounded
// client loops that tell which backend served each new connection.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Host, type LabProcess, type RedisServer, redisCli, waitFor } from '../lib/netns.js';

/**
 * The built CLI, as users run it. From .build/test/e2e/ → the repository's dist/cli/bin.js.
 * Benchmarks comparing with another build (say the previous release's) set AMBASSADOR_CLI.
 */
export const CLI = process.env.AMBASSADOR_CLI || fileURLToPath(new URL('../../../dist/cli/bin.js', import.meta.url));

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One pino JSON log line of the ambassador. */
export interface LogLine {
  level: number;
  time: number;
  msg: string;
  [k: string]: unknown;
}

export type LogMatch = Partial<Record<string, unknown>> | ((l: LogLine) => boolean);

function matches(l: LogLine, m: LogMatch): boolean {
  if (typeof m === 'function') return m(l);
  for (const [k, v] of Object.entries(m)) {
    if (v instanceof RegExp ? !v.test(String(l[k] ?? '')) : l[k] !== v) return false;
  }
  return true;
}

/** A running `ambassador` in a lab host, with its JSON log parsed on demand. */
export class Amb {
  /** Date.now() right before spawn. */
  readonly spawnedAt: number;
  constructor(readonly host: Host, readonly proc: LabProcess, readonly args: string[]) {
    this.spawnedAt = Date.now();
  }

  /** Every JSON line printed so far (other lines ignored). */
  logs(): LogLine[] {
    const out: LogLine[] = [];
    for (const line of this.proc.stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      try { out.push(JSON.parse(line) as LogLine); } catch { /* partial line */ }
    }
    return out;
  }

  find(m: LogMatch, since = 0): LogLine | undefined {
    return this.logs().find((l) => l.time >= since && matches(l, m));
  }

  findAll(m: LogMatch, since = 0): LogLine[] {
    return this.logs().filter((l) => l.time >= since && matches(l, m));
  }

  /** Waits for a log line matching `m` with time >= since; returns it. */
  async waitLog(m: LogMatch, opts: { since?: number; timeoutMs?: number; what?: string } = {}): Promise<LogLine> {
    try {
      return await waitFor(() => {
        if (!this.proc.running && !this.find(m, opts.since)) throw new Error(`ambassador exited: ${this.proc.output.slice(-1500)}`);
        return this.find(m, opts.since);
      }, { timeoutMs: opts.timeoutMs ?? 10_000, intervalMs: 20, message: `[${this.host.name}] log ${opts.what ?? JSON.stringify(m)}` });
    } catch (e) {
      throw new Error(`${(e as Error).message}\n[${this.host.name}] ambassador output:\n${this.proc.output.slice(-3000)}`);
    }
  }

  /** SIGTERM (or another signal) and wait for the exit; SIGKILL after graceMs. */
  stop(graceMs = 15_000) {
    return this.proc.stop(graceMs);
  }
}

export interface AmbOptions {
  /** Add `--interface lab0` (default true). */
  iface?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** Starts `ambassador ARGS --log-format json --hostname HOST` in `host`. */
export function startAmbassador(host: Host, args: string[], opts: AmbOptions = {}): Amb {
  const full = [CLI, '--log-format', 'json', '--hostname', host.name, ...(opts.iface === false ? [] : ['--interface', host.ifname]), ...args];
  const proc = host.spawn(process.execPath, full, { name: `[${host.name}] ambassador ${args.join(' ')}`, env: opts.env });
  return new Amb(host, proc, args);
}

/**
 * Starts `ambassador ARGS --log-format json` in `host` inside a mount namespace of its own, with
 * these files as /etc/resolv.conf and /etc/hosts (the system resolver's view, e.g. a container
 * name for `--advertise redis=db:6379`). `name` tells the files apart in the host's directory.
 */
export function startAmbassadorWithFiles(host: Host, name: string, files: { resolv?: string; hosts?: string }, args: string[]): Amb {
  const binds: string[] = [];
  for (const [file, text] of [['resolv.conf', files.resolv], ['hosts', files.hosts]] as const) {
    if (text === undefined) continue;
    const path = join(host.dir, `${file}-${name}`);
    writeFileSync(path, text);
    binds.push(path, `/etc/${file}`);
  }
  const mounts = Array.from({ length: binds.length / 2 }, (_, i) => `mount --bind "$${2 * i + 1}" "$${2 * i + 2}"`).join(' && ');
  const proc = host.spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `${mounts} && shift ${binds.length} && exec "$@"`, 'sh',
    ...binds, process.execPath, CLI, '--log-format', 'json', ...args], { name: `[${host.name}] ambassador (own /etc files ${name}) ${args.join(' ')}` });
  return new Amb(host, proc, args);
}

/** Started advertiser: waits for `advertisement … state announced`. Returns the log line too. */
export async function startAdvertiser(host: Host, args: string[], opts: AmbOptions & { timeoutMs?: number } = {}): Promise<{ amb: Amb; announced: LogLine }> {
  const amb = startAmbassador(host, args, opts);
  // Bounds here only turn a hang into a failure: generous, a loaded machine starts node slowly.
  const announced = await amb.waitLog({ msg: 'advertisement', state: 'announced' }, { timeoutMs: opts.timeoutMs ?? 60_000 });
  return { amb, announced };
}

/** Started connector: waits for its `listening` line(s). */
export async function startConnector(host: Host, args: string[], opts: AmbOptions = {}): Promise<Amb> {
  const amb = startAmbassador(host, args, opts);
  const n = args.filter((a) => a === '--connect').length;
  await waitFor(() => amb.findAll({ msg: 'listening' }).length >= n || (!amb.proc.running && Promise.reject(new Error(amb.proc.output))),
    { timeoutMs: 60_000, intervalMs: 20, message: `[${host.name}] connector listening` });
  return amb;
}

/** Writes key `whoami` = name into a redis server (directly, in its own host). */
export async function tagRedis(r: RedisServer, name: string, host = '127.0.0.1'): Promise<void> {
  const res = await redisCli(r.host, ['-h', host, '-p', String(r.port), 'set', 'whoami', name]);
  if (res.reply !== 'OK') throw new Error(`tagging redis ${r.host.name}:${r.port}: ${res.stdout}${res.stderr}`);
}

/** One `redis-cli -p PORT get whoami` in `host` (a new connection through the connector). */
export async function whoServes(host: Host, port = 6379, timeoutMs = 8000): Promise<string> {
  const r = await redisCli(host, ['-p', String(port), 'get', 'whoami'], { timeoutMs });
  return r.reply;
}

// ---------------------------------------------------------------------------------------------
// A bounded client loop: sequential new TCP connections to 127.0.0.1:PORT, each sending
// `SET key value` and `GET whoami` and waiting for both replies. One JSON line per connection.

export interface LoopOptions {
  port?: number;
  /** Address to connect to (default 127.0.0.1: the connector in the same host). */
  host?: string;
  /** Connections to make (upper bound). */
  count: number;
  /** Pause between the end of one connection and the start of the next (ms). */
  intervalMs?: number;
  /** Stop starting new connections after this long (ms). */
  deadlineMs?: number;
  /** Per-connection bound (ms). */
  timeoutMs?: number;
  /** Stop at the first connection that succeeds. */
  untilOk?: boolean;
  /**
   * First open this many connections (GET whoami each) and keep them open until the end; with
   * count 0, until the deadline.
   */
  hold?: number;
  /** Number of connections in flight at once (default 1). */
  parallel?: number;
}

export interface ConnResult {
  i: number;
  /** Epoch ms when the connection was started / finished. */
  at: number;
  end: number;
  ms: number;
  ok: boolean;
  who?: string;
  err?: string;
  held?: boolean;
}

export interface LoopSummary {
  total: number;
  ok: number;
  failed: number;
  byWho: Record<string, number>;
}

const CLIENT = String.raw`
const net = require('node:net');
const o = JSON.parse(process.argv[1]);
const port = o.port || 6379, address = o.host || '127.0.0.1', count = o.count, interval = o.intervalMs ?? 10, timeoutMs = o.timeoutMs ?? 10000;
const t0 = Date.now(), deadline = t0 + (o.deadlineMs ?? 60000);
const hardStop = setTimeout(() => { console.log('ABORT'); process.exit(3); }, (o.deadlineMs ?? 60000) + timeoutMs + 5000);
function one(i, keepOpen) {
  return new Promise((resolve) => {
    const at = Date.now();
    const s = net.connect(port, address);
    let buf = '', done = false;
    const want = keepOpen ? 1 : 2;
    const finish = (ok, who, err) => {
      if (done) return; done = true; clearTimeout(t);
      const end = Date.now();
      const r = { i, at, end, ms: end - at, ok, who, err, held: keepOpen || undefined };
      console.log('R ' + JSON.stringify(r));
      if (!keepOpen || !ok) s.destroy();
      else {
        s.on('error', () => {});
        // a held connection closed by the other side (not by us at the end) is reported
        s.on('close', () => { if (!s.byUs) console.log('HC ' + JSON.stringify({ i, at: Date.now() })); });
      }
      resolve({ r, s });
    };
    const t = setTimeout(() => finish(false, undefined, 'timeout'), timeoutMs);
    s.setNoDelay(true);
    s.on('connect', () => s.write(keepOpen ? 'GET whoami\r\n' : 'SET loop:' + i + ' ' + at + '\r\nGET whoami\r\n'));
    s.on('data', (d) => {
      buf += d;
      // replies: +OK\r\n then $N\r\nNAME\r\n (or $-1\r\n)
      const parts = [];
      let rest = buf;
      while (rest.length) {
        const nl = rest.indexOf('\r\n'); if (nl < 0) break;
        const head = rest.slice(0, nl);
        if (head[0] === '$') {
          const n = Number(head.slice(1));
          if (n < 0) { parts.push(null); rest = rest.slice(nl + 2); continue; }
          if (rest.length < nl + 2 + n + 2) break;
          parts.push(rest.slice(nl + 2, nl + 2 + n)); rest = rest.slice(nl + 4 + n);
        } else { parts.push(head); rest = rest.slice(nl + 2); }
      }
      if (parts.length >= want) {
        const bad = parts.find((p) => typeof p === 'string' && p.startsWith('-'));
        if (bad) return finish(false, undefined, bad);
        if (!keepOpen && parts[0] !== '+OK') return finish(false, undefined, 'unexpected ' + parts[0]);
        finish(true, parts[want - 1] ?? '(nil)');
      }
    });
    s.on('error', (e) => finish(false, undefined, e.code || e.message));
    s.on('close', () => finish(false, undefined, 'closed before reply'));
  });
}
(async () => {
  const held = [];
  for (let h = 0; h < (o.hold || 0); h++) held.push((await one('h' + h, true)).s);
  let i = 0, ok = 0, failed = 0;
  const par = Math.max(1, o.parallel || 1);
  let stop = false;
  async function worker() {
    while (!stop && i < count && Date.now() < deadline) {
      const k = i++;
      const { r } = await one(k, false);
      if (r.ok) ok++; else failed++;
      if (o.untilOk && r.ok) stop = true;
      if (interval > 0) await new Promise((res) => setTimeout(res, interval));
    }
  }
  await Promise.all(Array.from({ length: par }, worker));
  // only holding: keep the connections open until the deadline (or until killed)
  if (held.length && count === 0) await new Promise((res) => setTimeout(res, Math.max(0, deadline - Date.now())));
  for (const s of held) { s.byUs = true; s.destroy(); }
  console.log('DONE ' + JSON.stringify({ total: ok + failed, ok, failed }));
  clearTimeout(hardStop);
  process.exit(0);
})();
`;

/** A client loop running inside a lab host. */
export class ClientLoop {
  readonly proc: LabProcess;
  readonly startedAt = Date.now();
  readonly finished: Promise<LoopSummary>;

  constructor(host: Host, readonly opts: LoopOptions) {
    this.proc = host.spawn(process.execPath, ['-e', CLIENT, JSON.stringify(opts)], { name: `[${host.name}] client loop` });
    this.finished = this.proc.exited.then((st) => {
      if (st.code !== 0) throw new Error(`client loop exited ${st.code ?? st.signal}: ${this.proc.output.slice(-1500)}`);
      return this.summary();
    });
    this.finished.catch(() => {});
  }

  results(): ConnResult[] {
    const out: ConnResult[] = [];
    for (const line of this.proc.stdout.split('\n')) {
      if (!line.startsWith('R ')) continue;
      try { out.push(JSON.parse(line.slice(2)) as ConnResult); } catch { /* partial */ }
    }
    return out;
  }

  /** Held connections closed by the far side: index → epoch ms. */
  heldClosed(): Map<string, number> {
    const out = new Map<string, number>();
    for (const line of this.proc.stdout.split('\n')) {
      if (!line.startsWith('HC ')) continue;
      try {
        const r = JSON.parse(line.slice(3)) as { i: string; at: number };
        out.set(r.i, r.at);
      } catch { /* partial */ }
    }
    return out;
  }

  /** Results of the sequential (non-held) connections. */
  conns(): ConnResult[] {
    return this.results().filter((r) => !r.held);
  }

  summary(filter: (r: ConnResult) => boolean = () => true): LoopSummary {
    const rs = this.conns().filter(filter);
    const byWho: Record<string, number> = {};
    for (const r of rs) if (r.ok) byWho[r.who ?? '?'] = (byWho[r.who ?? '?'] ?? 0) + 1;
    const ok = rs.filter((r) => r.ok).length;
    return { total: rs.length, ok, failed: rs.length - ok, byWho };
  }

  /** Waits until at least n connections finished. */
  async waitCount(n: number, timeoutMs = 30_000): Promise<void> {
    await waitFor(() => this.conns().length >= n || (!this.proc.running && Promise.reject(new Error(`loop ended: ${this.proc.output.slice(-800)}`))),
      { timeoutMs, intervalMs: 20, message: `${n} client connections` });
  }

  stop(): Promise<unknown> {
    return this.proc.stop(1000);
  }
}

export function runLoop(host: Host, opts: LoopOptions): ClientLoop {
  return new ClientLoop(host, opts);
}

/** Waits until a connection through `port` in `host` is served by `name` (bounded). Returns ms. */
export async function waitServedBy(host: Host, name: string, opts: { port?: number; timeoutMs?: number } = {}): Promise<number> {
  const t0 = Date.now();
  await waitFor(async () => (await whoServes(host, opts.port ?? 6379, 3000)) === name,
    { timeoutMs: opts.timeoutMs ?? 15_000, intervalMs: 50, message: `a connection via ${host.name}:${opts.port ?? 6379} served by ${name}` });
  return Date.now() - t0;
}

export function fmt(ms: number | undefined): string {
  return ms === undefined ? 'n/a' : `${Math.round(ms)} ms`;
}

// ---------------------------------------------------------------------------------------------
// Admin endpoint reads (curl inside the host).

/** GET http://127.0.0.1:PORT/PATH inside `host` (curl); the body. */
export async function adminGet(host: Host, port: number, path: string): Promise<string> {
  const r = await host.exec('curl', ['-s', '--max-time', '3', `http://127.0.0.1:${port}${path}`], { timeoutMs: 5000 });
  if (r.code !== 0) throw new Error(`[${host.name}] GET :${port}${path} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** Sum of the samples of metric `name` whose labels include `labels` (0 when there is none). */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => ls[k] === v)) sum += Number(m[4]);
  }
  return sum;
}

/** `INFO stats` total_connections_received of a redis server (the INFO connection itself included). */
export async function redisConnectionsReceived(r: RedisServer): Promise<number> {
  const res = await redisCli(r.host, ['-p', String(r.port), 'info', 'stats']);
  const m = /total_connections_received:(\d+)/.exec(res.stdout);
  if (!m) throw new Error(`INFO stats on ${r.host.name}:${r.port}: ${res.stdout}${res.stderr}`);
  return Number(m[1]);
}

// ---------------------------------------------------------------------------------------------
// mDNS responses as the wire carries them, for waits on a packet instead of on time.

const LISTENER = fileURLToPath(new URL('../fixtures/mdns-listen.js', import.meta.url));

export interface HeardRecord { name: string; type: string; ttl: number; data?: string }
export interface Heard { t: number; src: string; records: HeardRecord[] }

/** A passive listener in a lab host, joined to the mDNS group on its lab interface. */
export class MdnsHeard {
  private constructor(readonly proc: LabProcess) {}

  static async start(host: Host): Promise<MdnsHeard> {
    const proc = host.spawn(process.execPath, [LISTENER, host.ip], { name: `[${host.name}] mdns listener` });
    await proc.waitForLine(/^listening$/m);
    return new MdnsHeard(proc);
  }

  packets(since = 0): Heard[] {
    const out: Heard[] = [];
    for (const line of this.proc.stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const h = JSON.parse(line) as Heard;
        if (h.t >= since) out.push(h);
      } catch { /* partial line */ }
    }
    return out;
  }

  /** Responses from `src` carrying a record named `name` (of `type`) that is live (live: true) or a goodbye. */
  matching(src: string, name: string, type: string, live: boolean, since = 0): Heard[] {
    return this.packets(since).filter((h) => h.src === src && h.records.some((r) => r.name === name && r.type === type && (r.ttl > 0) === live));
  }

  /** Waits until `count` such responses were heard; returns the last one. */
  async waitFor(src: string, name: string, type: string, opts: { live?: boolean; count?: number; since?: number; timeoutMs?: number } = {}): Promise<Heard> {
    const count = opts.count ?? 1;
    const live = opts.live ?? true;
    const hs = await waitFor(() => {
      const m = this.matching(src, name, type, live, opts.since);
      return m.length >= count ? m : undefined;
    }, { timeoutMs: opts.timeoutMs ?? 10_000, intervalMs: 20, message: `${count} mDNS response(s) from ${src} with ${live ? 'a live' : 'a goodbye for'} ${type} ${name}` });
    return hs[count - 1]!;
  }

  /**
   * Waits for the two startup announcements (RFC 6762 §8.3, a second apart) of `name`/`type`
   * from `src`: after them, what that host sends about the record answers something. Counting
   * two multicasts is enough: a responder multicasts a record at most once a second (§6), so
   * nothing else can carry it between the two announcements. (A listener started after the
   * first one waits for a later answer: longer, never too short.)
   */
  announced(src: string, name: string, type: string, timeoutMs = 15_000): Promise<Heard> {
    return this.waitFor(src, name, type, { count: 2, timeoutMs });
  }

  stop(): Promise<unknown> {
    return this.proc.stop(1000);
  }
}
