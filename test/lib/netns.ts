// End-to-end test lab: real "hosts" as Linux network namespaces on a private bridge.
//
//   const lab = await Lab.create({ hosts: ['a', 'b', 'c'] });
//   const a = lab.host('a');                       // a.netns, a.ip ('198.18.N.1'), a.ifname ('lab0')
//   const p = a.spawn('node', ['x.js']);           // runs inside a's namespace, output captured
//   await p.waitForLine(/listening/);
//   const r = await lab.host('c').exec('redis-cli', ['-h', a.ip, 'ping']);
//   await lab.destroy();                           // kills every child by PID, deletes namespaces
//
// Addresses: each segment is a /24 of 198.18.0.0/15 (RFC 2544 benchmark range), a fresh one per
// lab; host number i (1-based, in `hosts` order) is .i on every segment it is on. Extra segments
// (`networks: { back: ['a', 'b'] }`) give hosts more interfaces: host.link('back').ip/.ifname.
// A live network: lab.addNetwork('back', ['a', 'd']) plugs a new segment in while the
// lab runs, lab.removeLink(host, 'back') deletes an interface, host.addAddress/delAddress
// renumber, host.linkDown/linkUp cut the cable ('switch') or set the interface down ('host').
// Routed sites (networks without multicast between them: two VLANs, two VPCs, sites on a VPN):
// `sites: { east: ['etcd', 'a'], west: ['c'] }` puts each listed host on its site's own segment
// (a /24 and bridge of its own, host.ip on it) instead of the shared 'lan', and adds a router
// namespace with one interface (.254) on every site and on 'lan' when hosts remain there. The
// router forwards unicast only: Linux forwards no multicast without a multicast routing daemon,
// and none runs, so mDNS stays inside each site. lab.execOnRouter() runs commands there
// (iptables, tcpdump).
//
// Safety (see shared/DESIGN.md): the lab never touches a real interface. The bridge lives in a
// dedicated "switch" namespace created here; each host namespace has exactly one veth plugged
// into that bridge plus its own loopback. Nothing is routed anywhere else. Use only under the
// isolated test runner (canUseNetns() checks this), which itself runs in a fresh namespace.
//
// Everything started is tracked and killed by PID (SIGTERM, then SIGKILL after a grace period);
// namespaces and the temp dir are removed on destroy() and, synchronously, on process exit or
// SIGINT/SIGTERM, so a failing or interrupted test still cleans up. Names carry the PID of the
// process that created them, so a crashed run never collides with a new one, and a later run
// sweeps namespaces left by dead runs with the same prefix.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** True when `cmd` is found on PATH. */
export function haveCommand(cmd: string): boolean {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' });
  return r.status === 0;
}

/**
 * Why namespace tests must skip here, or undefined when they can run.
 * Usage: `test('name', { skip: canUseNetns() }, async () => { ... })`.
 */
export function canUseNetns(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.env.MDNS_AMBASSADOR_TEST_ISOLATED !== '1') {
    return 'not inside the isolated test runner (run `npm test` or `node scripts/test.mjs`)';
  }
  if (process.getuid?.() !== 0 || process.env.MDNS_AMBASSADOR_TEST_ROOT === '0') {
    return 'network namespace lab needs root (ip netns)';
  }
  if (!haveCommand('ip')) return '`ip` (iproute2) is not installed';
  return undefined;
}

export interface WaitForOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Used in the timeout error. */
  message?: string;
}

/**
 * Polls `predicate` until it returns a truthy value (which is returned) or the timeout expires
 * (throws, mentioning the last error the predicate threw, if any).
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new Error(`waitFor timed out after ${timeoutMs} ms: ${opts.message ?? 'condition not met'}${why}`);
    }
    await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
  }
}

function childEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  // A node child that inherits this would think it runs under the test runner.
  delete env.NODE_TEST_CONTEXT;
  return env;
}

function tail(s: string, n = 2000): string {
  return s.length > n ? '…' + s.slice(-n) : s;
}

// ---------------------------------------------------------------------------------------------
// Processes

export interface SpawnOptions {
  /** Extra environment (merged over process.env). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Label used in error messages; defaults to the command. */
  name?: string;
  /** 'pipe' to write to the child's stdin with LabProcess.write(); default 'ignore'. */
  stdin?: 'ignore' | 'pipe';
  /**
   * Run in a private UTS namespace with this host name (true: the lab host's name), so that
   * programs calling gethostname() see a distinct name per lab host. Default: the machine's.
   */
  hostname?: string | boolean;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WaitForLineOptions {
  timeoutMs?: number;
  /** Which output to search; default both. */
  stream?: 'stdout' | 'stderr' | 'both';
  /** Only consider output after this offset of the chosen stream (see LabProcess.mark()). */
  since?: number;
}

const liveProcesses = new Set<LabProcess>();

/** A child process started by the lab, with captured output. Killed by PID on cleanup. */
export class LabProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly name: string;
  readonly exited: Promise<ExitStatus>;
  private out = '';
  private err = '';
  private both = '';
  private status: ExitStatus | undefined;
  private readonly waiters = new Set<() => void>();
  private readonly owners = new Set<Set<LabProcess>>();

  constructor(file: string, args: string[], opts: SpawnOptions = {}) {
    this.name = opts.name ?? [file, ...args].join(' ');
    this.child = spawn(file, args, {
      env: childEnv(opts.env),
      cwd: opts.cwd,
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise<ExitStatus>((resolve) => {
      let spawnError: Error | undefined;
      this.child.once('error', (e) => {
        spawnError = e;
        this.err += `spawn error: ${e.message}\n`;
        // 'close' may not follow a failed spawn
        if (this.child.pid === undefined) finish(null, null);
      });
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.status) return;
        this.status = { code: spawnError && code === null ? 127 : code, signal };
        liveProcesses.delete(this);
        for (const o of this.owners) o.delete(this);
        this.notify();
        resolve(this.status);
      };
      this.child.once('close', finish);
    });
    this.pid = this.child.pid ?? -1;
    this.child.stdout!.setEncoding('utf8');
    this.child.stderr!.setEncoding('utf8');
    this.child.stdout!.on('data', (d: string) => { this.out += d; this.both += d; this.notify(); });
    this.child.stderr!.on('data', (d: string) => { this.err += d; this.both += d; this.notify(); });
    if (this.pid > 0) liveProcesses.add(this);
  }

  /** @internal register in an owner's set (a lab); removed from it on exit. */
  track(owner: Set<LabProcess>): this {
    if (!this.status) {
      owner.add(this);
      this.owners.add(owner);
    }
    return this;
  }

  get stdout(): string { return this.out; }
  get stderr(): string { return this.err; }
  /** stdout and stderr interleaved in arrival order. */
  get output(): string { return this.both; }
  get running(): boolean { return this.status === undefined; }
  get exitStatus(): ExitStatus | undefined { return this.status; }

  /** Current length of a stream; pass as `since` to waitForLine to ignore older output. */
  mark(stream: 'stdout' | 'stderr' | 'both' = 'both'): number {
    return this.buf(stream).length;
  }

  private buf(stream: 'stdout' | 'stderr' | 'both'): string {
    return stream === 'stdout' ? this.out : stream === 'stderr' ? this.err : this.both;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /**
   * Resolves with the match of the first output line (from `since`) matching `re`. Rejects on
   * timeout or when the process exits without such a line; the error shows the output tail.
   */
  waitForLine(re: RegExp, opts: WaitForLineOptions = {}): Promise<RegExpMatchArray> {
    const stream = opts.stream ?? 'both';
    const timeoutMs = opts.timeoutMs ?? 10_000;
    let scanned = opts.since ?? 0;
    const flags = re.flags.replace(/[gy]/g, '');
    const rx = new RegExp(re.source, flags);
    return new Promise((resolve, reject) => {
      const check = (final: boolean): boolean => {
        const text = this.buf(stream);
        // scan complete lines; the trailing partial line only once the process has exited
        let end = text.lastIndexOf('\n') + 1;
        if (final) end = text.length;
        if (end <= scanned) return false;
        const chunk = text.slice(scanned, end);
        for (const line of chunk.split('\n')) {
          const m = line.replace(/\r$/, '').match(rx);
          if (m) return done(() => resolve(m));
        }
        scanned = end;
        return false;
      };
      const done = (f: () => void): true => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        f();
        return true;
      };
      const waiter = () => {
        if (check(false)) return;
        if (this.status) {
          if (check(true)) return;
          done(() => reject(new Error(
            `${this.name} exited (${this.status!.code ?? this.status!.signal}) before printing ${re}; output:\n${tail(this.both)}`)));
        }
      };
      const timer = setTimeout(() => {
        if (check(true)) return;
        done(() => reject(new Error(
          `timed out after ${timeoutMs} ms waiting for ${re} from ${this.name}; output:\n${tail(this.both)}`)));
      }, timeoutMs);
      this.waiters.add(waiter);
      waiter();
    });
  }

  write(data: string | Buffer): void {
    this.child.stdin?.write(data);
  }

  /** Sends a signal to this process (by PID). False if it already exited. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.status || this.pid <= 0) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  async stop(graceMs = 2000): Promise<ExitStatus> {
    if (this.status) return this.status;
    this.kill('SIGTERM');
    const t = setTimeout(() => this.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
    }
  }
}

export interface ExecOptions extends SpawnOptions {
  /** Kill the command (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  /** Written to stdin, which is then closed. */
  input?: string;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

async function execTracked(file: string, args: string[], opts: ExecOptions, owner?: Set<LabProcess>): Promise<ExecResult> {
  const p = new LabProcess(file, args, { ...opts, stdin: opts.input !== undefined ? 'pipe' : 'ignore' });
  if (owner) p.track(owner);
  if (opts.input !== undefined) {
    p.child.stdin!.on('error', () => {});
    p.child.stdin!.end(opts.input);
  }
  let timedOut = false;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const t = setTimeout(() => { timedOut = true; p.kill('SIGKILL'); }, timeoutMs);
  const st = await p.exited;
  clearTimeout(t);
  return { ...st, stdout: p.stdout, stderr: p.stderr, timedOut };
}

function netnsArgv(netns: string, cmd: string, args: string[], hostname?: string): [string, string[]] {
  if (hostname) {
    return ['ip', ['netns', 'exec', netns, 'unshare', '--uts', '--', 'sh', '-c',
      'hostname "$0" && exec "$@"', hostname, cmd, ...args]];
  }
  return ['ip', ['netns', 'exec', netns, cmd, ...args]];
}

/** Starts a process inside an existing network namespace (tracked; killed on process exit). */
export function spawnInNetns(netns: string, cmd: string, args: string[] = [], opts: SpawnOptions = {}): LabProcess {
  const hn = typeof opts.hostname === 'string' ? opts.hostname : undefined;
  const [f, a] = netnsArgv(netns, cmd, args, hn);
  return new LabProcess(f, a, { ...opts, name: opts.name ?? `[${netns}] ${[cmd, ...args].join(' ')}` });
}

/** Runs a command to completion inside a network namespace. */
export function execInNetns(netns: string, cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
  const hn = typeof opts.hostname === 'string' ? opts.hostname : undefined;
  const [f, a] = netnsArgv(netns, cmd, args, hn);
  return execTracked(f, a, { ...opts, name: opts.name ?? `[${netns}] ${cmd}` });
}

// ---------------------------------------------------------------------------------------------
// `ip` plumbing

async function ip(args: string[]): Promise<string> {
  const r = await execTracked('ip', args, { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`);
  return r.stdout;
}

function ipSync(args: string[]): { ok: boolean; stdout: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  return { ok: r.status === 0, stdout: r.stdout ?? '' };
}

function netnsPidsSync(ns: string): number[] {
  const r = ipSync(['netns', 'pids', ns]);
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => n > 0 && n !== process.pid);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killPids(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try { process.kill(pid, signal); } catch { /* gone */ }
  }
}

// ---------------------------------------------------------------------------------------------
// The lab

export interface LabOptions {
  /** Host names: letters, digits and '-'; one namespace each. */
  hosts: string[];
  /** Prefix of namespace names (default 'amb'): `${prefix}-${pid}-${n}-${host}`. */
  prefix?: string;
  /** Third octet of 198.18.X.0/24; default: a per-process counter (1, 2, …). */
  subnet?: number;
  /** Keep IPv6 on the lab interfaces (link-local only). Default false: IPv6 disabled. */
  ipv6?: boolean;
  /**
   * Also plug the current namespace (the test process) into the bridge with address .254, so
   * the test can connect to hosts directly. Default false.
   */
  attach?: boolean;
  /**
   * Extra L2 segments, each on its own bridge and /24, e.g. `{ backend: ['a', 'b'] }`: listed
   * hosts get a second interface (lab1, lab2, … in order) there. The multicast route stays on
   * the primary interface (lab0); join groups per interface explicitly.
   */
  networks?: Record<string, string[]>;
  /**
   * Routed sites: site name → hosts on its own segment (their primary interface, lab0), joined
   * by a router that forwards unicast but no multicast. Hosts in no site stay on 'lan', which the
   * router joins too. Not with `attach` (both would take .254 of 'lan').
   */
  sites?: Record<string, string[]>;
}

export type LinkSide = 'switch' | 'host';

/** Name of the primary segment every host is on. */
export const PRIMARY_NETWORK = 'lan';

/** One interface of a host, plugged into one segment's bridge. */
export interface HostLink {
  network: string;
  /** Interface name inside the host namespace ('lab0' on the primary segment). */
  ifname: string;
  ip: string;
  cidr: string;
  /** Bridge port in the switch namespace. */
  port: string;
  bridge: string;
}

/** One lab host: a network namespace with one interface on the lab bridge (more with networks). */
export class Host {
  /** Interfaces by network name; PRIMARY_NETWORK ('lan') always present. */
  readonly links = new Map<string, HostLink>();
  private dirPath: string | undefined;

  constructor(
    readonly lab: Lab,
    readonly name: string,
    readonly index: number,
    readonly netns: string,
  ) {}

  /** The primary interface. */
  get primary(): HostLink { return this.link(PRIMARY_NETWORK); }
  /** Address on the primary segment, e.g. '198.18.1.1'. */
  get ip(): string { return this.primary.ip; }
  /** Primary interface name inside the namespace ('lab0'). */
  get ifname(): string { return this.primary.ifname; }
  /** `ip/prefixlen`, e.g. '198.18.1.1/24'. */
  get cidr(): string { return this.primary.cidr; }
  /** Bridge port of the primary interface in the switch namespace. */
  get port(): string { return this.primary.port; }

  link(network: string): HostLink {
    const l = this.links.get(network);
    if (!l) throw new Error(`host ${this.name} is not on network ${JSON.stringify(network)}`);
    return l;
  }

  /** A private directory for this host under the lab's temp dir (created on first use). */
  get dir(): string {
    if (!this.dirPath) {
      this.dirPath = join(this.lab.tmpdir, this.name);
      mkdirSync(this.dirPath, { recursive: true });
    }
    return this.dirPath;
  }

  /** Starts `cmd` inside this host; tracked and killed on lab.destroy(). */
  spawn(cmd: string, args: string[] = [], opts: SpawnOptions = {}): LabProcess {
    this.lab.assertAlive();
    const hn = opts.hostname === true ? this.name : opts.hostname || undefined;
    const [f, a] = netnsArgv(this.netns, cmd, args, hn);
    return new LabProcess(f, a, { ...opts, name: opts.name ?? `[${this.name}] ${[cmd, ...args].join(' ')}` })
      .track(this.lab.children);
  }

  /** Runs `cmd` inside this host to completion. */
  exec(cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    this.lab.assertAlive();
    const hn = opts.hostname === true ? this.name : opts.hostname || undefined;
    const [f, a] = netnsArgv(this.netns, cmd, args, hn);
    return execTracked(f, a, { ...opts, name: opts.name ?? `[${this.name}] ${cmd}` }, this.lab.children);
  }

  /** Like exec, but throws (with stderr) on a non-zero exit; returns stdout. */
  async run(cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(cmd, args, opts);
    if (r.code !== 0) {
      throw new Error(`[${this.name}] ${cmd} ${args.join(' ')} failed (${r.timedOut ? 'timeout' : r.code ?? r.signal}): ${r.stderr.trim()}`);
    }
    return r.stdout;
  }

  /**
   * Cuts this host's cable. 'switch' (default) sets the bridge port down: the host's own
   * interface stays administratively up but loses carrier, like an unplugged cable. 'host'
   * sets the host's interface down (the host sees its interface disappear from use).
   */
  async linkDown(side: LinkSide = 'switch', network = PRIMARY_NETWORK): Promise<void> {
    const l = this.link(network);
    if (side === 'switch') await ip(['-n', this.lab.switchNetns, 'link', 'set', l.port, 'down']);
    else await ip(['-n', this.netns, 'link', 'set', l.ifname, 'down']);
  }

  /** Adds an address to an interface (`10.0.0.5/24`), e.g. a DHCP renumbering. */
  async addAddress(cidr: string, network = PRIMARY_NETWORK): Promise<void> {
    await ip(['-n', this.netns, 'addr', 'add', cidr, 'dev', this.link(network).ifname]);
  }

  /** Removes an address from an interface. */
  async delAddress(cidr: string, network = PRIMARY_NETWORK): Promise<void> {
    await ip(['-n', this.netns, 'addr', 'del', cidr, 'dev', this.link(network).ifname]);
  }

  /** Sets a sysctl inside this host (e.g. net.ipv4.conf.all.promote_secondaries=1). */
  sysctl(key: string, value: string): Promise<void> {
    return sysctl(this.netns, key, value);
  }

  async linkUp(side: LinkSide = 'switch', network = PRIMARY_NETWORK): Promise<void> {
    const l = this.link(network);
    if (side === 'switch') await ip(['-n', this.lab.switchNetns, 'link', 'set', l.port, 'up']);
    else {
      await ip(['-n', this.netns, 'link', 'set', l.ifname, 'up']);
      // the multicast route goes away with the primary link; restore it
      if (network === PRIMARY_NETWORK) await ip(['-n', this.netns, 'route', 'replace', '224.0.0.0/4', 'dev', l.ifname]);
    }
  }
}

const liveLabs = new Set<Lab>();
let labSeq = 0;
let subnetSeq = 0;
/** Successive /24s of 198.18.0.0/15 (198.18.1 … 198.19.254), so consecutive labs differ. */
function nextSubnet(): string {
  const n = subnetSeq++ % 508;
  return n < 254 ? `198.18.${n + 1}` : `198.19.${n - 253}`;
}
const swept = new Set<string>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const lab of [...liveLabs]) lab.destroySync();
    killPids([...liveProcesses].map((p) => p.pid), 'SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const lab of [...liveLabs]) lab.destroySync();
      killPids([...liveProcesses].map((p) => p.pid), 'SIGKILL');
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

/** Deletes namespaces `${prefix}-${pid}-…` whose creating process is dead (a crashed run). */
function sweepStale(prefix: string): void {
  const r = ipSync(['netns', 'list']);
  const re = new RegExp(`^${prefix.replace(/[^\w-]/g, '')}-(\\d+)-\\d+[-.]`);
  for (const line of r.stdout.split('\n')) {
    const name = line.split(/\s/)[0];
    const m = name?.match(re);
    if (!m || !name) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    // processes still inside a namespace of a dead lab were started by that lab
    killPids(netnsPidsSync(name), 'SIGKILL');
    ipSync(['netns', 'del', name]);
  }
}

export class Lab {
  readonly id: string;
  readonly switchNetns: string;
  /** Primary segment, e.g. '198.18.1.0/24'. */
  readonly subnet: string;
  /** Every segment by name ('lan' and opts.networks), e.g. { lan: '198.18.1.0/24' }. */
  readonly subnets: Record<string, string> = {};
  readonly tmpdir: string;
  /** Address of the test process on the bridge when created with `attach: true`. */
  readonly gateway: string | undefined;
  /** @internal every tracked child */
  readonly children = new Set<LabProcess>();
  private readonly hostMap = new Map<string, Host>();
  private readonly bridges = new Map<string, { bridge: string; base: string; index: number }>();
  private ipv6 = false;
  private readonly namespaces: string[] = [];
  private attachedIf: string | undefined;
  private destroyed = false;
  private destroying: Promise<void> | undefined;
  private readonly cleanups: Array<() => void | Promise<void>> = [];

  private constructor(prefix: string, seq: number, base: string, attach: boolean) {
    this.id = `${prefix}-${process.pid}-${seq}`;
    this.switchNetns = `${this.id}.sw`;
    this.subnet = `${base}.0/24`;
    this.subnets[PRIMARY_NETWORK] = this.subnet;
    this.gateway = attach ? `${base}.254` : undefined;
    this.tmpdir = mkdtempSync(join(tmpdir(), `${this.id}-`));
  }

  static async create(opts: LabOptions): Promise<Lab> {
    const reason = canUseNetns();
    if (reason) throw new Error(`cannot create a lab: ${reason}`);
    const prefix = opts.prefix ?? 'amb';
    if (!/^[a-z][a-z0-9]{0,11}$/i.test(prefix)) throw new Error(`bad lab prefix ${JSON.stringify(prefix)}`);
    if (opts.hosts.length === 0 || opts.hosts.length > 250) throw new Error('a lab needs 1..250 hosts');
    if (opts.sites && opts.attach) throw new Error('sites and attach both want .254 of the lan');
    for (const [site, members] of Object.entries(opts.sites ?? {})) {
      if (site === PRIMARY_NETWORK || !/^[a-z0-9-]+$/i.test(site) || opts.networks?.[site]) throw new Error(`bad site name ${JSON.stringify(site)}`);
      for (const m of members) if (!opts.hosts.includes(m)) throw new Error(`site ${site}: unknown host ${m}`);
    }
    for (const h of opts.hosts) {
      if (!/^[a-z0-9][a-z0-9-]{0,30}$/i.test(h)) throw new Error(`bad host name ${JSON.stringify(h)}`);
    }
    if (new Set(opts.hosts).size !== opts.hosts.length) throw new Error('duplicate host names');
    if (!swept.has(prefix)) {
      swept.add(prefix);
      sweepStale(prefix);
    }
    hookExit();
    const seq = ++labSeq;
    if (opts.subnet !== undefined && (!Number.isInteger(opts.subnet) || opts.subnet < 0 || opts.subnet > 255)) {
      throw new Error(`bad subnet octet ${opts.subnet}`);
    }
    for (const [net, members] of Object.entries(opts.networks ?? {})) {
      if (net === PRIMARY_NETWORK || !/^[a-z0-9-]+$/i.test(net)) throw new Error(`bad network name ${JSON.stringify(net)}`);
      for (const m of members) if (!opts.hosts.includes(m)) throw new Error(`network ${net}: unknown host ${m}`);
    }
    const base = opts.subnet !== undefined ? `198.18.${opts.subnet}` : nextSubnet();
    const lab = new Lab(prefix, seq, base, opts.attach ?? false);
    liveLabs.add(lab);
    try {
      await lab.build(opts);
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  private async addNetns(name: string): Promise<void> {
    await ip(['netns', 'add', name]);
    this.namespaces.push(name);
    await ip(['-n', name, 'link', 'set', 'lo', 'up']);
  }

  private async build(opts: LabOptions): Promise<void> {
    const sw = this.switchNetns;
    await this.addNetns(sw);
    this.ipv6 = opts.ipv6 ?? false;
    const sites = Object.entries(opts.sites ?? {});
    const siteOf = new Map<string, string>();
    for (const [site, members] of sites) for (const m of members) siteOf.set(m, site);
    const onLan = opts.hosts.filter((h) => !siteOf.has(h));
    const segments: Array<[string, string[]]> = [[PRIMARY_NETWORK, onLan], ...sites, ...Object.entries(opts.networks ?? {})];
    for (const [net] of segments) await this.addBridge(net);
    let i = 0;
    for (const name of opts.hosts) {
      i++;
      const ns = `${this.id}-${name}`;
      await this.addNetns(ns);
      const host = new Host(this, name, i, ns);
      this.hostMap.set(name, host);
      if (!opts.ipv6) await sysctl(ns, 'net.ipv6.conf.all.disable_ipv6', '1');
      for (const [net, members] of segments) {
        // A site host's own segment is its primary link ('lan' for everything that asks).
        if (members.includes(name)) await this.plug(host, net, siteOf.get(name) === net ? PRIMARY_NETWORK : net);
      }
    }
    if (sites.length > 0) await this.addRouter([...(onLan.length > 0 ? [PRIMARY_NETWORK] : []), ...sites.map(([s]) => s)]);
    if (this.gateway) {
      const ifname = `lab${this.id.split('-').pop()}`.slice(0, 15);
      await ip(['-n', sw, 'link', 'add', 'pgw', 'type', 'veth', 'peer', 'name', ifname, 'netns', String(process.pid)]);
      this.attachedIf = ifname;
      await ip(['-n', sw, 'link', 'set', 'pgw', 'master', 'br0']);
      await ip(['-n', sw, 'link', 'set', 'pgw', 'up']);
      await ip(['addr', 'add', `${this.gateway}/24`, 'dev', ifname]);
      await ip(['link', 'set', ifname, 'up']);
    }
  }

  private async addBridge(net: string): Promise<void> {
    const k = this.bridges.size;
    const bridge = `br${k}`;
    const base = k === 0 ? this.subnet.replace(/\.0\/24$/, '') : nextSubnet();
    if (k > 0) this.subnets[net] = `${base}.0/24`;
    this.bridges.set(net, { bridge, base, index: k });
    await ip(['-n', this.switchNetns, 'link', 'add', bridge, 'type', 'bridge', 'mcast_snooping', '0', 'forward_delay', '0', 'stp_state', '0']);
    await ip(['-n', this.switchNetns, 'link', 'set', bridge, 'up']);
  }

  /**
   * The router of routed sites: a namespace with an interface at .254 on each segment, IPv4
   * forwarding on (unicast only, see the header); every host of those segments routes via it.
   */
  private async addRouter(nets: string[]): Promise<void> {
    const rt = `${this.id}.rt`;
    await this.addNetns(rt);
    this.routerNetns = rt;
    await sysctl(rt, 'net.ipv4.ip_forward', '1');
    for (const [k, net] of nets.entries()) {
      const b = this.bridges.get(net)!;
      const port = `rt${k}`;
      await ip(['-n', this.switchNetns, 'link', 'add', port, 'type', 'veth', 'peer', 'name', `eth${k}`, 'netns', rt]);
      await ip(['-n', this.switchNetns, 'link', 'set', port, 'master', b.bridge]);
      await ip(['-n', this.switchNetns, 'link', 'set', port, 'up']);
      await ip(['-n', rt, 'addr', 'add', `${b.base}.254/24`, 'dev', `eth${k}`]);
      await ip(['-n', rt, 'link', 'set', `eth${k}`, 'up']);
      for (const h of this.hostMap.values()) {
        if (h.primary.bridge === b.bridge) await ip(['-n', h.netns, 'route', 'add', 'default', 'via', `${b.base}.254`]);
      }
    }
  }

  /** The router namespace of routed sites (undefined without `sites`). */
  routerNetns: string | undefined;

  /** Runs a command in the router of routed sites (iptables to cut a site off, tcpdump). */
  execOnRouter(cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    this.assertAlive();
    if (!this.routerNetns) throw new Error(`lab ${this.id} has no router (create it with sites)`);
    const [f, a] = netnsArgv(this.routerNetns, cmd, args);
    return execTracked(f, a, { ...opts, name: opts.name ?? `[router] ${cmd}` }, this.children);
  }

  /** Gives `host` an interface on segment `net` (veth into the segment's bridge), address .index. */
  private async plug(host: Host, net: string, as = net): Promise<HostLink> {
    const b = this.bridges.get(net)!;
    const sw = this.switchNetns;
    const ns = host.netns;
    const i = host.index;
    const link: HostLink = {
      network: net, ifname: `lab${host.links.size}`, ip: `${b.base}.${i}`, cidr: `${b.base}.${i}/24`,
      port: b.index === 0 ? `p${i}` : `p${i}n${b.index}`, bridge: b.bridge,
    };
    // veth pair created straight in the two namespaces: never in the caller's namespace
    await ip(['-n', sw, 'link', 'add', link.port, 'type', 'veth', 'peer', 'name', link.ifname, 'netns', ns]);
    await ip(['-n', sw, 'link', 'set', link.port, 'master', b.bridge]);
    await ip(['-n', sw, 'link', 'set', link.port, 'up']);
    if (!this.ipv6) await sysctl(ns, `net.ipv6.conf.${link.ifname}.disable_ipv6`, '1');
    await ip(['-n', ns, 'addr', 'add', link.cidr, 'dev', link.ifname]);
    await ip(['-n', ns, 'link', 'set', link.ifname, 'multicast', 'on', 'up']);
    if (as === PRIMARY_NETWORK) await ip(['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', link.ifname]);
    host.links.set(as, link);
    return link;
  }

  /**
   * Adds an L2 segment while the lab runs (its own bridge and /24), with an interface on each
   * listed host: a second NIC, a VPN or a container network coming up. Returns the new links.
   */
  async addNetwork(net: string, members: string[]): Promise<Map<string, HostLink>> {
    this.assertAlive();
    if (this.bridges.has(net) || !/^[a-z0-9-]+$/i.test(net)) throw new Error(`bad or existing network ${JSON.stringify(net)}`);
    await this.addBridge(net);
    const out = new Map<string, HostLink>();
    for (const m of members) out.set(m, await this.plug(this.host(m), net));
    return out;
  }

  /** Deletes a host's interface on `network` (the NIC is gone, not just down). */
  async removeLink(host: Host, network: string): Promise<void> {
    const l = host.link(network);
    await ip(['-n', this.switchNetns, 'link', 'del', l.port]);
    host.links.delete(network);
  }

  get hosts(): Host[] { return [...this.hostMap.values()]; }
  get hostCount(): number { return this.hostMap.size; }
  get alive(): boolean { return !this.destroyed; }
  /** Names of all namespaces of this lab (hosts and switch). */
  get netnsNames(): string[] { return [...this.namespaces]; }

  host(name: string): Host {
    const h = this.hostMap.get(name);
    if (!h) throw new Error(`no host ${JSON.stringify(name)} in lab ${this.id} (hosts: ${[...this.hostMap.keys()].join(', ')})`);
    return h;
  }

  /** @internal */
  assertAlive(): void {
    if (this.destroyed) throw new Error(`lab ${this.id} is destroyed`);
  }

  /** Runs a command in the switch namespace (e.g. tcpdump -i br0, bridge fdb). */
  spawnOnSwitch(cmd: string, args: string[] = [], opts: SpawnOptions = {}): LabProcess {
    this.assertAlive();
    return spawnInNetns(this.switchNetns, cmd, args, opts).track(this.children);
  }

  /** Registers a cleanup step run (in reverse order) by destroy() before the processes are killed. */
  onDestroy(fn: () => void | Promise<void>): void {
    this.cleanups.push(fn);
  }

  /**
   * Stops every tracked child (SIGTERM, SIGKILL after graceMs), kills anything else still
   * running inside the lab's namespaces, deletes the namespaces and the temp dir. Idempotent.
   */
  destroy(graceMs = 2000): Promise<void> {
    if (!this.destroying) this.destroying = this.doDestroy(graceMs);
    return this.destroying;
  }

  private async doDestroy(graceMs: number): Promise<void> {
    this.destroyed = true;
    for (const fn of this.cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
    await Promise.all([...this.children].map((p) => p.stop(graceMs)));
    this.destroySync();
  }

  /** Synchronous, best-effort cleanup (used on process exit). */
  destroySync(): void {
    this.destroyed = true;
    const kids = [...this.children];
    killPids(kids.map((p) => p.pid), 'SIGKILL');
    // Anything else inside our namespaces was started (directly or not) by this lab.
    const hostNs = this.namespaces.filter((n) => n !== this.switchNetns);
    for (const ns of [...hostNs, this.switchNetns]) killPids(netnsPidsSync(ns), 'SIGKILL');
    if (this.attachedIf) ipSync(['link', 'del', this.attachedIf]);
    for (const ns of [...hostNs.reverse(), this.switchNetns]) {
      if (this.namespaces.includes(ns)) ipSync(['netns', 'del', ns]);
    }
    this.namespaces.length = 0;
    try { rmSync(this.tmpdir, { recursive: true, force: true }); } catch { /* ignore */ }
    liveLabs.delete(this);
  }
}

async function sysctl(ns: string, key: string, value: string): Promise<void> {
  const r = await execInNetns(ns, 'sysctl', ['-qw', `${key}=${value}`], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`sysctl ${key}=${value} in ${ns} failed: ${r.stderr.trim()}`);
}

// ---------------------------------------------------------------------------------------------
// Redis

export interface RedisOptions {
  port: number;
  /** Address to bind; default 0.0.0.0. */
  bind?: string;
  /** Sets requirepass (the default user's password). */
  password?: string;
  /** Extra redis-server arguments, e.g. ['--user', 'app', 'on', '>secret', '~*', '+@all']. */
  args?: string[];
  timeoutMs?: number;
}

export interface RedisServer {
  host: Host;
  /** The host's lab address. */
  ip: string;
  port: number;
  password?: string;
  process: LabProcess;
  dir: string;
  stop(graceMs?: number): Promise<ExitStatus>;
}

/**
 * Starts a real redis-server inside `host` (no persistence, protected mode off) and waits until
 * `redis-cli -p PORT ping` answers PONG there.
 */
export async function startRedis(host: Host, opts: RedisOptions): Promise<RedisServer> {
  const { port } = opts;
  const dir = join(host.dir, `redis-${port}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const args = [
    '--port', String(port), '--bind', opts.bind ?? '0.0.0.0', '--protected-mode', 'no',
    '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--logfile', '',
    '--databases', '16',
  ];
  if (opts.password !== undefined) args.push('--requirepass', opts.password);
  args.push(...(opts.args ?? []));
  const proc = host.spawn('redis-server', args, { name: `[${host.name}] redis-server :${port}` });
  const cliArgs = ['-p', String(port)];
  if (opts.password !== undefined) cliArgs.push('--no-auth-warning', '-a', opts.password);
  try {
    await waitFor(async () => {
      if (!proc.running) throw new Error(`redis-server exited: ${tail(proc.output, 500)}`);
      const r = await host.exec('redis-cli', [...cliArgs, 'ping'], { timeoutMs: 3000 });
      return r.stdout.trim() === 'PONG';
    }, { timeoutMs: opts.timeoutMs ?? 10_000, intervalMs: 50, message: `redis-server on ${host.name}:${port} to answer PONG` });
  } catch (e) {
    await proc.stop(500);
    throw new Error(`${(e as Error).message}\nredis-server output:\n${tail(proc.output)}`);
  }
  return {
    host, ip: host.ip, port, password: opts.password, process: proc, dir,
    stop: (graceMs = 2000) => proc.stop(graceMs),
  };
}

/**
 * Runs `redis-cli ARGS` inside `host` (args are passed as-is, e.g. ['-h', ip, '-p', '7001',
 * 'ping']). Returns the exec result with `reply` = trimmed stdout. Times out after 5 s by default.
 */
export async function redisCli(host: Host, args: string[], opts: ExecOptions = {}): Promise<ExecResult & { reply: string }> {
  const r = await host.exec('redis-cli', args, { timeoutMs: 5000, ...opts });
  return { ...r, reply: r.stdout.trim() };
}
