import net from 'node:net';
import { Writable } from 'node:stream';
import type { ArgumentsCamelCase, Argv } from 'yargs';
import { Ambassador } from '../ambassador/ambassador.js';
import { HostNetwork } from '../base/host-network.js';
import type { Endpoint } from '../cluster/endpoint.js';
import { LIVENESS_TXT_KEY } from '../cluster/liveness-wire.js';
import { buildConfig, type RawOptions } from '../config/config.js';
import { createLogger, type Logger } from '../logging/logger.js';
import { ConnectListener } from '../proxy/listener.js';
import { fail } from './fail.js';

// `ambassador demo`: a whole mesh in this one process, over loopback, narrated.
//
//   kv-1 (127.0.0.1:P1) ◄── ambassador --advertise kv=P1  (host demo-kv-1) ┐
//   kv-2 (127.0.0.1:P2) ◄── ambassador --advertise kv=P2  (host demo-kv-2) ┼ mDNS on 127.0.0.1
//   app ──► 127.0.0.1:PORT ── ambassador --connect kv=PORT (host demo-app) ┘
//
// Multicast on loopback needs no privileges on Linux: the sockets join 224.0.0.251 on
// 127.0.0.1 and send with IP_MULTICAST_IF=127.0.0.1, so nothing leaves this machine whatever the
// routing table says. Where that still does not work (no multicast at all, another OS's
// loopback), the demo says so and continues with --static endpoints.

export interface DemoArgs {
  keep: boolean;
  port: number;
  static: boolean;
  requests: number;
  verbose: boolean;
}

/** Options of `ambassador demo` (for 'did you mean'). */
export const DEMO_OPTION_NAMES = ['keep', 'port', 'static', 'requests', 'verbose'];

export function demoOptions<T>(y: Argv<T>) {
  return y
    .option('keep', { type: 'boolean', default: false, describe: 'leave the mesh running afterwards (Ctrl-C to stop) to try redis-cli, ambassador browse, the admin endpoint' })
    .option('port', { type: 'number', default: 0, describe: 'port of the connecting ambassador (default: a free one)' })
    .option('static', { type: 'boolean', default: false, describe: 'skip multicast: the connecting ambassador gets --static endpoints' })
    .option('requests', { type: 'number', default: 20, describe: 'requests per phase' })
    .option('verbose', { type: 'boolean', default: false, describe: 'also print the ambassadors\' own logs (stderr)' });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// A tiny key-value service that speaks enough of the Redis protocol (RESP) for redis-cli.

const STORE = new Map<string, string>();

class KvReplica {
  readonly name: string;
  served = 0;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(name: string, readonly port: number) {
    this.name = name;
  }

  get running(): boolean {
    return this.server?.listening === true;
  }

  async start(): Promise<void> {
    const server = net.createServer((s) => this.serve(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  /** Like a crash: stop accepting and drop every open connection. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private serve(s: net.Socket): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    s.on('error', () => {});
    let buf: Buffer = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      for (;;) {
        const parsed = parseCommand(buf);
        if (!parsed) break;
        buf = buf.subarray(parsed.used);
        if (parsed.args.length) s.write(this.exec(parsed.args));
      }
    });
  }

  private exec(args: string[]): string {
    this.served++;
    const [cmd = '', a, b] = args;
    const bulk = (v: string | undefined) => (v === undefined ? '$-1\r\n' : `$${Buffer.byteLength(v)}\r\n${v}\r\n`);
    switch (cmd.toUpperCase()) {
      case 'PING': return a === undefined ? '+PONG\r\n' : bulk(a);
      case 'ECHO': return bulk(a ?? '');
      case 'WHOAMI': return `+${this.name}\r\n`;
      case 'SET': if (a === undefined || b === undefined) break; STORE.set(a, b); return '+OK\r\n';
      case 'GET': return bulk(a === undefined ? undefined : STORE.get(a));
      case 'DEL': return `:${args.slice(1).filter((k) => STORE.delete(k)).length}\r\n`;
      case 'INCR': {
        if (a === undefined) break;
        const n = Number(STORE.get(a) ?? '0') + 1;
        STORE.set(a, String(n));
        return `:${n}\r\n`;
      }
      case 'DBSIZE': return `:${STORE.size}\r\n`;
      case 'INFO': return bulk(`# Server\r\ndemo_replica:${this.name}\r\n`);
      case 'COMMAND': return '*0\r\n';
      case 'CLIENT': case 'SELECT': case 'AUTH': return '+OK\r\n';
      case 'QUIT': return '+OK\r\n';
    }
    return `-ERR unknown or incomplete command '${cmd}' (this demo knows PING ECHO WHOAMI SET GET DEL INCR DBSIZE INFO)\r\n`;
  }
}

/** One RESP array of bulk strings, or one inline command line; undefined when incomplete. */
function parseCommand(buf: Buffer): { args: string[]; used: number } | undefined {
  const eol = buf.indexOf('\r\n');
  if (eol < 0) return undefined;
  if (buf[0] !== 0x2a /* '*' */) {
    return { args: buf.subarray(0, eol).toString().trim().split(/\s+/).filter(Boolean), used: eol + 2 };
  }
  const n = Number(buf.subarray(1, eol).toString());
  let pos = eol + 2;
  const args: string[] = [];
  for (let i = 0; i < n; i++) {
    const e = buf.indexOf('\r\n', pos);
    if (e < 0) return undefined;
    const len = Number(buf.subarray(pos + 1, e).toString());
    if (buf.length < e + 2 + len + 2) return undefined;
    args.push(buf.subarray(e + 2, e + 2 + len).toString());
    pos = e + 2 + len + 2;
  }
  return { args, used: pos };
}

// ---------------------------------------------------------------------------------------------
// The "app": one connection per request, so the balancing is visible.

interface Tally {
  ok: number;
  failed: number;
  by: Map<string, number>;
}

function request(port: number, key: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const timer = setTimeout(() => done(new Error('timeout')), timeoutMs);
    const done = (err?: Error, who?: string) => {
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve(who!);
    };
    s.on('error', (e) => done(e));
    s.on('close', () => done(new Error('closed before the reply')));
    s.on('data', (d) => {
      data += d.toString();
      const lines = data.split('\r\n');
      if (lines.length >= 3) {
        if (!lines[0]!.startsWith('+') || !lines[1]!.startsWith(':')) done(new Error(`unexpected reply ${JSON.stringify(data)}`));
        else done(undefined, lines[0]!.slice(1));
      }
    });
    s.write(`*1\r\n$6\r\nWHOAMI\r\n*2\r\n$4\r\nINCR\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`);
  });
}

/**
 * `n` distinct ports free on 127.0.0.1 now: all held open together, then released. (Taken one at
 * a time, the kernel may hand the port just released to the next request: a demo once got the
 * same port for kv-1 and its own listener, and refused itself as a loop.)
 */
async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => net.createServer());
  await Promise.all(servers.map((srv) => new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))));
  const ports = servers.map((srv) => (srv.address() as net.AddressInfo).port);
  await Promise.all(servers.map((srv) => new Promise<void>((r) => srv.close(() => r()))));
  return ports;
}

// ---------------------------------------------------------------------------------------------

class Narrator {
  private readonly t0 = Date.now();
  private status = '';
  private readonly tty = process.stdout.isTTY === true;

  /** Set once the story is told: shutdown events are not narrated. */
  quiet = false;

  line(text: string): void {
    if (this.quiet) return;
    const t = ((Date.now() - this.t0) / 1000).toFixed(1).padStart(5);
    this.clearStatus();
    process.stdout.write(`[${t}s] ${text}\n`);
    this.drawStatus();
  }

  plain(text: string): void {
    this.clearStatus();
    process.stdout.write(text + '\n');
    this.drawStatus();
  }

  /** The live summary line: redrawn in place on a terminal. */
  setStatus(text: string): void {
    this.status = text;
    if (this.tty) process.stdout.write(`\r\x1b[K  ${text}`);
  }

  /** Ends the live line (on a terminal) or prints it once (elsewhere). */
  endStatus(): void {
    if (this.status) {
      if (this.tty) process.stdout.write('\n');
      else process.stdout.write(`  ${this.status}\n`);
    }
    this.status = '';
  }

  private clearStatus(): void {
    if (this.tty && this.status) process.stdout.write('\r\x1b[K');
  }

  private drawStatus(): void {
    if (this.tty && this.status) process.stdout.write(`  ${this.status}`);
  }
}

export async function demoCommand(argv: ArgumentsCamelCase<DemoArgs>): Promise<void> {
  if (!Number.isInteger(argv.port) || argv.port < 0 || argv.port > 65535) fail(`--port: '${argv.port}' is not a port number`);
  if (!Number.isInteger(argv.requests) || argv.requests < 1 || argv.requests > 10000) fail(`--requests: '${argv.requests}' must be 1-10000`);
  const say = new Narrator();
  const log: Logger = argv.verbose ? createLogger('info', 'pretty', process.stderr) : createLogger('silent', 'json', new Writable({ write: (_c, _e, cb) => cb() }));
  const ambassadors: Ambassador[] = [];
  const replicas: KvReplica[] = [];
  // One look at the interfaces a second for the whole demo, not one per ambassador.
  const network = new HostNetwork();
  const startAmb = async (raw: RawOptions): Promise<Ambassador> => {
    const amb = new Ambassador(buildConfig({ healthInterval: 300, healthTimeout: 300, connectTimeout: 1000, drainTimeout: 500, ...raw }), log, { network });
    ambassadors.push(amb);
    await amb.start();
    return amb;
  };
  const stopAll = async () => {
    await Promise.all(ambassadors.map((a) => a.stop()));
    network.stop();
    await Promise.all(replicas.map((r) => r.stop()));
  };
  let stopping = false;
  const onSignal = () => {
    if (stopping) process.exit(1);
    stopping = true;
    say.endStatus();
    say.plain('stopping: goodbyes, then exit');
    void stopAll().then(() => process.exit(0));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    await runDemo(argv, say, startAmb, replicas);
  } catch (err) {
    say.endStatus();
    await stopAll().catch(() => {});
    fail(`demo: ${(err as Error).message}`, 1);
  }
  if (stopping) return;
  if (argv.keep) {
    say.plain('\nThe mesh keeps running (--keep). Press Ctrl-C to stop it.');
    return;
  }
  await stopAll();
  say.plain('\nDone. Try `ambassador demo --keep` to poke at it yourself.');
  process.exit(0);
}

type StartAmb = (raw: RawOptions) => Promise<Ambassador>;

async function runDemo(argv: DemoArgs, say: Narrator, startAmb: StartAmb, replicas: KvReplica[]): Promise<void> {
  const N = argv.requests;
  // (five, so that four remain if one is the --port given)
  const [p1, p2, adminPort, free] = (await freePorts(5)).filter((p) => p !== argv.port) as [number, number, number, number];
  const port = argv.port || free;
  say.plain('ambassador demo: a whole mesh on this machine over loopback (127.0.0.1), in this one process.');
  say.plain('Nothing leaves this machine and nothing needs root.\n');

  // 1. the service
  const kv1 = new KvReplica('kv-1', p1);
  const kv2 = new KvReplica('kv-2', p2);
  replicas.push(kv1, kv2);
  await kv1.start();
  await kv2.start();
  say.line(`Two replicas of a tiny key-value service (it speaks the Redis protocol): kv-1 on 127.0.0.1:${p1}, kv-2 on 127.0.0.1:${p2}.`);

  // 2. advertisers (unless --static)
  let useMdns = !argv.static;
  const advertisers: Ambassador[] = [];
  if (useMdns) {
    say.line('Each replica gets an advertising ambassador, announcing it over mDNS on the loopback interface:');
    say.plain(`         ambassador --interface 127.0.0.1 --hostname demo-kv-1 --advertise kv=${p1},txt.replica=kv-1`);
    say.plain(`         ambassador --interface 127.0.0.1 --hostname demo-kv-2 --advertise kv=${p2},txt.replica=kv-2`);
    try {
      const t = Date.now();
      for (const [i, p] of [[1, p1], [2, p2]] as const) {
        const amb = await startAmb({ interface: ['127.0.0.1'], hostname: `demo-kv-${i}`, advertise: [`kv=${p},txt.replica=kv-${i}`] });
        advertisers.push(amb);
        const adv = amb.advertisements[0]!;
        adv.on('state', (state: string, reason: string) => {
          if (state === 'announced') say.line(`✓ ${adv.instance} announced: _kv._tcp.local → 127.0.0.1:${p}${reason === 'announced' ? '' : ` (${reason})`}`);
          else if (state === 'withdrawn') say.line(`! ${adv.instance} withdrawn with a goodbye packet: ${reason}`);
          else if (state === 'probing' && reason.includes('again')) say.line(`✓ kv-${i} accepts connections again: ${adv.instance} probes and re-announces`);
        });
      }
      const announced = await waitUntil(() => advertisers.every((a) => a.advertisements[0]!.state === 'announced'), 5000);
      if (!announced) throw new Error('the advertisements were not announced within 5 s');
      say.line(`  (probing and announcing took ${Date.now() - t} ms: RFC 6762 makes sure the names are unique first)`);
    } catch (err) {
      say.line(`! mDNS on loopback does not work here (${(err as Error).message}).`);
      say.plain('         Multicast needs the loopback interface to deliver 224.0.0.251 to its own sockets; this system');
      say.plain('         does not. Continuing with --static endpoints instead (no multicast needed); on a LAN or in');
      say.plain('         containers on one bridge network, mDNS discovery works as shown in compose/discovery.');
      useMdns = false;
      for (const a of advertisers.splice(0)) await a.stop();
    }
  }

  // 3. the connecting ambassador
  const connectFlags: RawOptions = {
    connect: [`kv=127.0.0.1:${port}`],
    admin: `127.0.0.1:${adminPort}`,
    ...(useMdns ? { interface: ['127.0.0.1'], hostname: 'demo-app' } : { static: [`kv=127.0.0.1:${p1}+127.0.0.1:${p2}`] }),
  };
  say.line(`The app gets a connecting ambassador: it listens on 127.0.0.1 and forwards to ${useMdns ? 'whoever announces kv' : 'the endpoints it is given'}:`);
  say.plain(useMdns
    ? `         ambassador --interface 127.0.0.1 --connect kv=${port} --admin ${adminPort}`
    : `         ambassador --connect kv=${port} --static kv=127.0.0.1:${p1}+127.0.0.1:${p2} --admin ${adminPort}`);
  const t3 = Date.now();
  const app = await startAmb(connectFlags);
  const conn = app.connectors[0]!;
  // (the host probe port is plumbing between ambassadors, not part of the story)
  const txtOf = (ep: { txt: Record<string, string> }) => Object.entries(ep.txt).filter(([k]) => k !== LIVENESS_TXT_KEY);
  const upLine = (ep: Endpoint) => `✓ endpoint up: ${ep.label}${ep.label === ep.address ? '' : ` at ${ep.address}`} (${ep.source}${txtOf(ep).length ? `, TXT ${txtOf(ep).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''})`;
  conn.cluster.on('endpoint-up', (ep) => say.line(upLine(ep)));
  const why = {
    goodbye: 'goodbye received: no new connections, removed a second later', removed: 'removed', outlier: 'outlier: connects to it failed',
    'health-check': 'active health checks failed', 'host-probe': 'its ambassador stopped answering host probes',
    'source-check': 'its ambassador says the service stopped accepting',
  };
  conn.cluster.on('endpoint-down', (ep, reason) => say.line(`! endpoint down: ${ep.label} (${why[reason]})`));
  if (conn.listener instanceof ConnectListener) conn.listener.on('failover', (_c, from, to) => say.line(`! a connect to ${from.label} failed; the same client is retried on ${to.label} before it notices anything`));
  for (const ep of conn.cluster.endpoints()) say.line(upLine(ep));
  const found = await waitUntil(() => conn.cluster.healthy().length >= 2, 5000);
  if (!found) throw new Error(`the connecting ambassador found ${conn.cluster.healthy().length} of 2 replicas within 5 s`);
  say.line(`  (discovery took ${Date.now() - t3} ms)`);
  const statusPage = `http://127.0.0.1:${adminPort}/`;
  say.line(`  Its status page, live in a browser: ${statusPage}${argv.keep ? ' (open it now to watch the failover)' : ''}`);
  // Someone at a terminal gets a moment to open it before the story goes on.
  if (argv.keep && process.stdout.isTTY) {
    say.line('  The requests start in 5 s.');
    await sleep(5000);
  }

  const tally: Tally = { ok: 0, failed: 0, by: new Map() };
  const status = () => {
    const by = [...tally.by.entries()].sort().map(([k, v]) => `${k} ${v}`).join(', ') || '-';
    const up = conn.cluster.healthy().length;
    say.setStatus(`requests ${tally.ok + tally.failed}: ok ${tally.ok}, failed ${tally.failed} | served by ${by} | endpoints up ${up}/${conn.cluster.size}`);
  };
  const phase = async (count: number, gapMs: number, during?: (i: number) => Promise<void> | void): Promise<Tally> => {
    const t: Tally = { ok: 0, failed: 0, by: new Map() };
    for (let i = 0; i < count; i++) {
      await during?.(i);
      try {
        const who = await request(port, 'demo:requests');
        t.ok++;
        tally.ok++;
        t.by.set(who, (t.by.get(who) ?? 0) + 1);
        tally.by.set(who, (tally.by.get(who) ?? 0) + 1);
      } catch (err) {
        t.failed++;
        tally.failed++;
        say.line(`✗ request failed: ${(err as Error).message}`);
      }
      status();
      if (gapMs) await sleep(gapMs);
    }
    say.endStatus();
    return t;
  };
  const show = (t: Tally) => [...t.by.entries()].sort().map(([k, v]) => `${k} ${v}`).join(', ');

  // 4. balancing
  say.line(`The app sends ${N} requests to 127.0.0.1:${port}, one connection each (round-robin balancing):`);
  const t4 = await phase(N, 20);
  say.line(`${t4.failed ? '✗' : '✓'} balancing: ${t4.ok}/${N} ok, served by ${show(t4)}`);

  // 5. failover
  say.line('kv-1 stops (as if it crashed) while the app keeps sending requests:');
  const t5 = await phase(N, 100, async (i) => {
    if (i === 2) {
      await kv1.stop();
      say.line('  kv-1 is down.');
    }
  });
  const settled = await waitUntil(() => conn.cluster.healthy().length === 1, 5000);
  say.line(`${t5.failed ? '✗' : '✓'} failover: ${t5.ok}/${N} ok, served by ${show(t5)}${settled ? '; only kv-2 is left in the cluster' : ''}`);

  // 6. the replica comes back
  say.line('kv-1 comes back:');
  await kv1.start();
  const back = await waitUntil(() => conn.cluster.healthy().length >= 2, 8000);
  if (!back) say.line('✗ kv-1 did not come back within 8 s');
  const t6 = await phase(N, 20);
  say.line(`${t6.failed ? '✗' : '✓'} back to two replicas: ${t6.ok}/${N} ok, served by ${show(t6)}`);

  say.quiet = true;
  const allOk = tally.failed === 0 && t6.by.size === 2;
  say.plain('');
  say.plain(allOk
    ? `Summary: ${tally.ok} requests, none failed, though a replica went away and came back. The app only ever knew 127.0.0.1:${port}.`
    : `Summary: ${tally.ok} ok, ${tally.failed} failed.`);
  const m = await fetchText(`http://127.0.0.1:${adminPort}/metrics`);
  const pick = (name: string, ...parts: string[]) =>
    m.split('\n').filter((l) => l.startsWith(name) && parts.every((p) => l.includes(p))).map((l) => '    ' + l);
  say.plain(`The connecting ambassador's admin endpoint: ${statusPage} (status page), /healthz, /peers, /metrics, e.g.`);
  for (const l of [...pick('ambassador_connections_established_total'), ...pick('ambassador_connect_retries_total'), ...pick('ambassador_endpoint_transitions_total{', 'endpoint="kv@demo-kv-1"', 'to="down"')]) say.plain(l);
  if (argv.keep) {
    say.plain('\nTry it yourself:');
    say.plain(`    open ${statusPage} in a browser           # the mesh at a glance, live`);
    say.plain(`    redis-cli -p ${port} whoami          # or: printf 'WHOAMI\\r\\n' | nc 127.0.0.1 ${port}`);
    say.plain(`    curl -s http://127.0.0.1:${adminPort}/peers`);
    if (useMdns) say.plain('    ambassador browse --interface 127.0.0.1 kv');
  }
  if (!allOk) throw new Error(`${tally.failed} request(s) failed`);
}

async function waitUntil(pred: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(25);
  }
  return pred();
}

async function fetchText(url: string): Promise<string> {
  try {
    const r = await fetch(url);
    return await r.text();
  } catch {
    return '';
  }
}
