// Shared helpers of the robustness tests (test/robustness/*.test.ts) and soak runs (test/soak/).
// Everything runs on 127.0.0.1 inside the runner's private network namespace (scripts/test.mjs
// re-executes itself under `unshare -n`), so no packet can reach a real interface.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { MdnsRecord } from '../../src/mdns/wire/records.js';
import { decodePacket } from '../../src/mdns/wire/codec.js';
import { waitFor } from '../lib/netns.js';

export { waitFor };

/** The built CLI, as users run it (from .build/test/robustness/ → dist/cli/bin.js). */
export const CLI = fileURLToPath(new URL('../../../dist/cli/bin.js', import.meta.url));

/** Skip reason unless inside the isolated runner (multicast on loopback only there). */
export const isolated: string | false =
  process.env.MDNS_AMBASSADOR_TEST_ISOLATED === '1' ? false : 'needs the private network namespace of `node scripts/test.mjs` (traffic on loopback only)';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One pino JSON log line. */
export interface LogLine {
  level: number;
  time: number;
  msg: string;
  [k: string]: unknown;
}

const live = new Set<ChildProcess>();
function killAll(): void {
  for (const c of live) if (c.pid && c.exitCode === null && c.signalCode === null) try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
}
process.once('exit', killAll);

/** A spawned `ambassador` (node dist/cli/bin.js …) with its JSON log. Killed by PID on exit. */
export class AmbProc {
  readonly child: ChildProcess;
  readonly pid: number;
  out = '';
  err = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit?: { code: number | null; signal: NodeJS.Signals | null };

  constructor(readonly args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []) {
    const e: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete e.NODE_TEST_CONTEXT;
    this.child = spawn(process.execPath, [...nodeArgs, CLI, '--log-format', 'json', ...args], { env: e, stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = this.child.pid ?? -1;
    live.add(this.child);
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.err += d));
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => {
      live.delete(this.child);
      this.exit = { code, signal };
      resolve(this.exit);
    }));
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  logs(): LogLine[] {
    const out: LogLine[] = [];
    for (const line of this.out.split('\n')) {
      if (!line.startsWith('{')) continue;
      try { out.push(JSON.parse(line) as LogLine); } catch { /* partial line */ }
    }
    return out;
  }

  find(pred: (l: LogLine) => boolean): LogLine | undefined {
    return this.logs().find(pred);
  }

  async waitLog(pred: (l: LogLine) => boolean, timeoutMs = 10_000, what = 'log line'): Promise<LogLine> {
    try {
      return await waitFor(() => {
        const l = this.find(pred);
        if (!l && !this.running) throw new Error(`ambassador exited ${JSON.stringify(this.exit)}`);
        return l;
      }, { timeoutMs, intervalMs: 20, message: what });
    } catch (e) {
      throw new Error(`${(e as Error).message}\nstdout: ${this.out.slice(-2000)}\nstderr: ${this.err.slice(-2000)}`);
    }
  }

  /** Open file descriptors of the process (/proc/PID/fd). */
  fds(): number {
    return readdirSync(`/proc/${this.pid}/fd`).length;
  }

  /** Resident set size in KiB (/proc/PID/status VmRSS). */
  rssKb(): number {
    return rssKbOf(this.pid);
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) process.kill(this.pid, sig);
  }

  /** SIGTERM, SIGKILL after graceMs. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.signal('SIGTERM');
    const t = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

export function rssKbOf(pid: number | 'self'): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/**
 * Node options for an AmbProc that can be asked to collect garbage: `amb.signal('SIGUSR2')` runs
 * a full GC (test-only preload; the ambassador itself is unchanged).
 */
export const GC_ON_SIGUSR2 = ['--expose-gc', '--import', "data:text/javascript,process.on('SIGUSR2', () => globalThis.gc())"];

/** Full GC in an AmbProc started with GC_ON_SIGUSR2, then a moment to settle. */
export async function collectGarbage(amb: AmbProc): Promise<void> {
  for (let i = 0; i < 2; i++) {
    amb.signal('SIGUSR2');
    await sleep(300);
  }
}

/** Ports freePort() has handed out in this process. */
const handedOut = new Set<number>();

/**
 * A port that was free a moment ago on 127.0.0.1, and not one this process was given before: the
 * kernel may hand the port just released to the next bind(0), so `[await freePort(), await
 * freePort()]` could otherwise be one port twice (the demo once was: it refused itself as a loop).
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** An echo server on 127.0.0.1 (the upstream "service"). */
export async function echoServer(port = 0): Promise<{ port: number; server: net.Server; sockets: Set<net.Socket>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: false }, (s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  server.maxConnections = 100_000;
  await new Promise<void>((r) => server.listen({ port, host: '127.0.0.1', backlog: 4096 }, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    server,
    sockets,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

/** One request/response through `port`: sends `msg`, resolves with the round-trip time (ms). */
export function echoOnce(port: number, msg = 'ping\n', timeoutMs = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect({ port, host: '127.0.0.1' });
    let got = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`echo via :${port} timed out`)); }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(msg));
    s.on('data', (d: string) => {
      got += d;
      if (got.length >= msg.length) {
        clearTimeout(timer);
        s.destroy();
        if (got !== msg) reject(new Error(`echo mismatch: ${JSON.stringify(got)}`));
        else resolve(performance.now() - t0);
      }
    });
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
    s.on('close', () => { clearTimeout(timer); if (got.length < msg.length) reject(new Error(`closed after ${got.length} bytes`)); });
  });
}

/** GET http://127.0.0.1:PORT/PATH → body. */
export function httpGet(port: number, path: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Prometheus text → { 'name{labels}': value } (and bare names summed over labels under 'name'). */
export async function metrics(port: number): Promise<Record<string, number>> {
  const text = await httpGet(port, '/metrics');
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    out[m[1]! + (m[2] ?? '')] = v;
    if (m[2]) out[m[1]!] = (out[m[1]!] ?? 0) + v;
  }
  return out;
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : String(n));

/**
 * The multicast responses on 127.0.0.1's mDNS group, recorded from the moment it is started (so
 * start it before the ambassadors it listens to). For waits on a packet instead of on time.
 */
export class GroupRecorder {
  readonly heard: Array<{ at: number; records: MdnsRecord[] }> = [];
  private constructor(readonly socket: Socket) {
    socket.on('message', (msg) => {
      try {
        const p = decodePacket(msg);
        if (p.type === 'response') this.heard.push({ at: Date.now(), records: [...p.answers, ...p.additionals] });
      } catch { /* not ours to judge */ }
    });
  }

  static async start(): Promise<GroupRecorder> {
    const s = createSocket({ type: 'udp4', reuseAddr: true });
    s.bind(5353, '0.0.0.0');
    await once(s, 'listening');
    s.addMembership('224.0.0.251', '127.0.0.1');
    s.setMulticastInterface('127.0.0.1');
    return new GroupRecorder(s);
  }

  /** Responses that carry a record matching `pred`. */
  carrying(pred: (r: MdnsRecord) => boolean, since = 0): Array<{ at: number; records: MdnsRecord[] }> {
    return this.heard.filter((h) => h.at >= since && h.records.some(pred));
  }

  /**
   * Waits for the two startup announcements (RFC 6762 §8.3) of the live record `name`/`type`;
   * returns the time the second was heard. Two multicasts suffice: a responder multicasts a
   * record at most once a second (§6), so nothing else can carry it between the two.
   */
  async announced(name: string, type: string, timeoutMs = 15_000): Promise<number> {
    const hs = await waitFor(() => {
      const m = this.carrying((r) => r.name === name && r.type === type && r.ttl > 0);
      return m.length >= 2 ? m : undefined;
    }, { timeoutMs, intervalMs: 20, message: `the two announcements of ${type} ${name}` });
    return hs[1]!.at;
  }

  private closed = false;
  close(): void {
    if (!this.closed) this.socket.close();
    this.closed = true;
  }
}
