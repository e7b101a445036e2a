import { EventEmitter } from 'node:events';
import { mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Endpoint, HealthJudge } from '../../cluster/endpoint.js';
import type { Logger } from '../../logging/logger.js';
import { type HaproxyBinary, checkConfig } from './binary.js';
import { type HaproxyListenerSpec, WAIT_LUA, proxyNames, renderConfig, renderedSlot } from './config.js';
import { HaproxyFrontend, type HaproxyFrontendOptions } from './frontend.js';
import { type HaproxyLogLine, HaproxyProcess, Sentinel } from './process.js';
import { CommandRefused, MASTER_PROMPT, RuntimeApi, parseInfo, parseProc, parseStat, refusal } from './runtime-api.js';
import { type Slot, type Tier, capacityOf, freeSlot, growSlots, planSlots, slotCommands } from './slots.js';

export interface HaproxyPlaneOptions {
  binary: HaproxyBinary;
  log: Logger;
  connectTimeoutMs: number;
  /** 0 = never. */
  idleTimeoutMs: number;
  /** How long a client may wait in HAProxy's queue for an endpoint with room. */
  queueTimeoutMs: number;
  /** How long a client that finds no usable endpoint waits for one (0: closed at once). */
  noEndpointWaitMs: number;
  /** Endpoints tried per client. Default 5 (as the Node data plane). */
  connectAttempts?: number;
  keepConnections: boolean;
  /** Slots per backend tier at start (--haproxy-slots). */
  slots: number;
  /**
   * Connections to an endpoint that left or moved are shut down this long after (HAProxy cannot
   * see a connection's pauses, so the Node data plane's "at the first pause" becomes "after").
   * Default 5000 ms, the Node data plane's upper bound.
   */
  retireAfterMs?: number;
  /**
   * How often HAProxy's statistics are read (counters, passive evidence, retired slots) while
   * they move. Default 1000 ms; readings that find nothing new slow down to 8× this (at rest).
   */
  statsIntervalMs?: number;
  /** The private directory for the configuration and the runtime API socket (default: a new one under the temp directory). */
  dir?: string;
}

export type PlaneState = 'idle' | 'starting' | 'running' | 'reloading' | 'restarting' | 'stopping' | 'stopped';

export type HaproxyPlaneEvents = {
  /** HAProxy is serving again after a start, a restart (after it died) or a reload. */
  ready: [why: 'start' | 'restart' | 'reload'];
  /** A batch of slot changes reached HAProxy. */
  applied: [];
};


/** How long after an endpoint is found dead its connections are shut down: past HAProxy's retry turn-around of 1 s. */
const DEAD_ENDPOINT_SHUTDOWN_MS = 1500;

/** Ready means the runtime API answers `show info`: polled this often after a start or reload. */
const READY_POLL_MS = 10;
/** A restart that follows the previous one this closely waits first (a crash loop must not spin). */
const CRASH_WINDOW_MS = 10_000;

/**
 * The HAProxy data plane: one HAProxy (master-worker, as the ambassador's child) carrying every
 * --connect listener it can serve, one frontend and one backend each. The ambassador stays the
 * brain: the clusters (discovery, health verdicts, panic mode) decide each backend's slot table
 * (slots.ts), applied over the runtime API in batches — never a reload for a membership change.
 * A reload happens only when a backend runs out of slots (seamless: the listening sockets pass
 * to the new worker, the old one keeps its connections until they end). HAProxy dying is
 * noticed at once and it is started again with the state of now.
 */
export class HaproxyPlane extends EventEmitter<HaproxyPlaneEvents> {
  readonly frontends: HaproxyFrontend[] = [];
  state: PlaneState = 'idle';
  /** Times HAProxy was started again after it died. */
  restarts = 0;
  /** Seamless reloads (only to grow slot tables). */
  reloads = 0;
  /** Pid of the master and of the current worker. */
  masterPid: number | undefined;
  workerPid: number | undefined;
  readonly dir: string;
  readonly configFile: string;
  /** The current worker's runtime API (slots, statistics). */
  readonly api: RuntimeApi;
  /** The master CLI: answers once the master serves its event loop (its signals are handled only from then on). */
  readonly master: RuntimeApi;
  private readonly log: Logger;
  private process: HaproxyProcess | undefined;
  private readonly sentinel: Sentinel | undefined;
  /** What HAProxy has, per frontend (undefined: not known, every slot is set in full). */
  private readonly applied = new Map<HaproxyFrontend, Slot[] | undefined>();
  /** Session shutdowns to send with the next batch: frontend → slot names. */
  private readonly shutdowns = new Map<HaproxyFrontend, Set<string>>();
  /** When a retiring slot's maint reached HAProxy: a reading taken later may free it. */
  private readonly retiredAt = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private statsTimer: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> | undefined;
  private again = false;
  private scheduled = false;
  /** The reading of HAProxy's statistics under way, and when it began (performance.now()). */
  private reading: { since: number; done: Promise<boolean> } | undefined;
  /** When the last completed reading began (performance.now()): what it saw is at least that fresh. */
  private lastStatsSince = -Infinity;
  /** Bumped by each new HAProxy worker: work planned for an older one is dropped. */
  private generation = 0;
  private lastCrashAt = 0;
  private crashDelayMs = 0;
  private readonly unwatch: Array<() => void> = [];

  constructor(private readonly opts: HaproxyPlaneOptions) {
    super();
    this.log = opts.log;
    this.dir = opts.dir ?? privateDirectory();
    this.configFile = join(this.dir, 'haproxy.cfg');
    this.api = new RuntimeApi(join(this.dir, 'admin.sock'));
    this.master = new RuntimeApi(join(this.dir, 'master.sock'), MASTER_PROMPT);
    if (opts.binary.parentDeath.kind === 'sentinel') this.sentinel = new Sentinel();
  }

  /** A listener for HAProxy to carry (before start()). */
  frontend(opts: Omit<HaproxyFrontendOptions, 'slots'>): HaproxyFrontend {
    const f = new HaproxyFrontend({ ...opts, slots: this.opts.slots }, proxyNames(opts.service, opts.bind, opts.port));
    f.planeState = () => this.state;
    this.frontends.push(f);
    this.applied.set(f, undefined);
    const c = f.cluster;
    const onChange = (): void => this.schedule();
    const onRemoved = (ep: Endpoint): void => {
      // A peer that announced its drain ends its connections itself (as on the Node data plane).
      if (!ep.draining && !this.opts.keepConnections) this.retireLater(f, ep.key);
    };
    const onUpdated = (ep: Endpoint, moved: boolean): void => {
      if (moved && !this.opts.keepConnections) this.retireLater(f, ep.key);
    };
    const onHealth = (ep: Endpoint, healthy: boolean, judge: HealthJudge): void => {
      if (healthy || this.opts.keepConnections || ep.draining) return;
      // Found dead by our checks or host probes: its connections go now (the peer is gone); its
      // own ambassador withdrawing it is a withdrawal, handled as a removal.
      // Not at once: a client HAProxy gave that endpoint just before our verdict waits out its
      // retry turn-around (min(timeout connect, 1 s)) and is then redispatched; shut down in the
      // same instant it was lost instead (CI: 2 clients closed at +183 ms of a kill -9).
      if (judge === 'source-check') this.retireLater(f, ep.key);
      else this.later(() => { if (!ep.isUsable()) this.shutDown(f, ep.key, false); }, DEAD_ENDPOINT_SHUTDOWN_MS);
    };
    c.on('changed', onChange);
    c.on('endpoint-removed', onRemoved);
    c.on('endpoint-updated', onUpdated);
    c.on('endpoint-health', onHealth);
    this.unwatch.push(() => {
      c.off('changed', onChange);
      c.off('endpoint-removed', onRemoved);
      c.off('endpoint-updated', onUpdated);
      c.off('endpoint-health', onHealth);
    });
    return f;
  }

  /** The configuration for the tables as they are now (retiring slots carry nothing in a new worker: freed). */
  private render(): string {
    const listeners: HaproxyListenerSpec[] = this.frontends.map((f) => {
      f.slots = f.slots.map((s) => (s.retiring ? freeSlot(s) : s));
      return { frontend: f.frontendName, backend: f.backendName, bind: f.bind, alsoBinds: f.alsoBinds, port: f.port, balance: f.balance, limits: f.limits, slots: f.slots };
    });
    return renderConfig({
      adminSocket: this.api.socketPath,
      connectTimeoutMs: this.opts.connectTimeoutMs,
      idleTimeoutMs: this.opts.idleTimeoutMs,
      queueTimeoutMs: this.opts.queueTimeoutMs,
      noEndpointWaitMs: this.opts.noEndpointWaitMs,
      luaFile: this.opts.binary.lua ? this.luaFile : undefined,
      connectAttempts: this.opts.connectAttempts ?? 5,
      listeners,
    });
  }

  private get luaFile(): string {
    return join(this.dir, 'wait-for-endpoint.lua');
  }

  private writeConfig(): void {
    if (this.opts.binary.lua) writeFileSync(this.luaFile, WAIT_LUA, { mode: 0o600 });
    const tmp = `${this.configFile}.tmp`;
    writeFileSync(tmp, this.render(), { mode: 0o600 });
    renameSync(tmp, this.configFile);
  }

  /** Whether HAProxy would take the configuration (for --check): undefined, or its complaint. */
  async check(): Promise<string | undefined> {
    this.writeConfig();
    return checkConfig(this.opts.binary.path, this.configFile);
  }

  /**
   * Starts HAProxy with every frontend; resolves once it serves (rejects with HAProxy's
   * complaint: a configuration it refuses makes the master exit with an alert saying why).
   */
  async start(): Promise<void> {
    this.state = 'starting';
    await this.spawn('start');
  }

  /** Spawns a master on the configuration file and waits until its worker answers. */
  private async spawn(why: 'start' | 'restart'): Promise<void> {
    this.writeConfig();
    this.generation++;
    const proc = new HaproxyProcess(this.opts.binary.path, this.configFile, this.master.socketPath, this.opts.binary.parentDeath, this.sentinel);
    this.process = proc;
    const alerts: string[] = [];
    proc.on('log', (line) => {
      if (line.level === 'ALERT') alerts.push(line.message);
      this.relayLog(line);
    });
    proc.on('exit', (code, signal) => this.onExit(proc, code, signal));
    proc.start();
    this.masterPid = proc.pid;
    const t0 = Date.now();
    const info = await this.waitReady(proc, () => undefined);
    if (!info) {
      const why = alerts.find((a) => /cannot bind|Address already in use|Starting (frontend|proxy)|parsing \[/i.test(a)) ?? alerts[0] ?? `exit status ${(await proc.exited).code}`;
      throw new Error(`HAProxy did not start: ${why}`);
    }
    this.workerPid = info;
    for (const f of this.frontends) {
      f.newGeneration();
      f.listening = true;
      this.applied.set(f, f.slots.map(renderedSlot));
    }
    this.state = 'running';
    this.log.info({ haproxy: this.opts.binary.path, version: this.opts.binary.version, masterPid: proc.pid, workerPid: info, ms: Date.now() - t0, dir: this.dir,
      dies: this.opts.binary.parentDeath.kind === 'pdeathsig' ? 'with the ambassador (parent-death signal)' : 'with the ambassador (sentinel process)' },
    why === 'start' ? 'HAProxy started' : 'HAProxy running again');
    this.startStats();
    this.emit('ready', why);
    this.schedule();
  }

  /**
   * The new worker's pid once both the master CLI and that worker's runtime API answer (a master
   * takes signals only once it serves its CLI: one sent earlier is lost); undefined if the master
   * died first.
   */
  private async waitReady(proc: HaproxyProcess, notPid: () => number | undefined, timeoutMs = 10_000): Promise<number | undefined> {
    const until = Date.now() + timeoutMs;
    while (proc.running && Date.now() < until) {
      try {
        const worker = parseProc(await this.master.one('show proc')).workers[0];
        if (worker !== undefined && worker !== notPid() && Number(parseInfo(await this.api.one('show info')).Pid) === worker) return worker;
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, READY_POLL_MS));
    }
    return undefined;
  }

  private onExit(proc: HaproxyProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (proc !== this.process) return;
    for (const f of this.frontends) f.listening = false;
    this.stopStats();
    if (this.state === 'stopping' || this.state === 'stopped' || this.state === 'starting') return;
    this.restarts++;
    this.state = 'restarting';
    const now = Date.now();
    this.crashDelayMs = now - this.lastCrashAt < CRASH_WINDOW_MS ? Math.min(5000, Math.max(100, this.crashDelayMs * 2)) : 0;
    this.lastCrashAt = now;
    this.log.warn({ code, signal, restarts: this.restarts, inMs: this.crashDelayMs }, 'HAProxy exited: starting it again with the current endpoints');
    this.cancelTimers();
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.state !== 'restarting') return;
      this.spawn('restart').catch((err: Error) => {
        if (this.state !== 'restarting') return; // stopped meanwhile
        this.log.error({ err: err.message }, 'HAProxy could not be started again');
        // Its exit brings the next attempt (onExit); one that hangs is made to exit.
        if (this.process?.running) this.process.signal('SIGKILL');
      });
    }, this.crashDelayMs);
    this.timers.add(t);
  }

  /** HAProxy's own lines into the ambassador's log, at a level that says what they mean to us. */
  private relayLog(line: HaproxyLogLine): void {
    const msg = line.message;
    const expected =
      /^Server \S+ is (UP|DOWN|going DOWN)|maintenance|DRAIN|^Proxy \S+ stopped|has no server available|^New worker|^Loading success|^Reloading HAProxy|^Former worker|haproxy version is|path to executable is/.test(msg) ||
      ((this.state === 'stopping' || this.state === 'stopped') && /exited with code|Exiting Master|All workers exited|exit-on-failure|Stopping (frontend|backend|proxy)/.test(msg));
    const fields = { haproxyPid: line.pid };
    if (expected || line.level === 'NOTICE' || line.level === 'INFO') this.log.debug(fields, `HAProxy: ${msg}`);
    else if (line.level === 'WARNING') this.log.warn(fields, `HAProxy: ${msg}`);
    else this.log.error(fields, `HAProxy: ${msg}`);
  }

  /** Apply the clusters' state soon (once per turn of the event loop, however many events). */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.reconcile();
    });
  }

  /** Waits until every change scheduled so far reached HAProxy (tests, and stop). */
  async settled(): Promise<void> {
    while (this.scheduled || this.reconciling) {
      if (this.reconciling) await this.reconciling;
      else await new Promise((r) => setImmediate(r));
    }
  }

  private reconcile(): Promise<void> {
    if (this.reconciling) {
      this.again = true;
      return this.reconciling;
    }
    this.reconciling = (async () => {
      do {
        this.again = false;
        try {
          await this.reconcileOnce();
        } catch (err) {
          if (this.state === 'running') this.log.warn({ err: (err as Error).message }, 'HAProxy runtime API: could not apply endpoint changes (retrying)');
          for (const f of this.frontends) this.applied.set(f, undefined);
          if (this.state === 'running') this.later(() => this.schedule(), 200);
        }
      } while (this.again && this.state === 'running');
    })().finally(() => {
      this.reconciling = undefined;
    });
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<void> {
    if (this.state !== 'running') return;
    const now = Date.now();
    const grow = new Map<HaproxyFrontend, Record<Tier, number>>();
    for (const f of this.frontends) {
      const plan = planSlots({ balance: f.balance, endpoints: f.endpointFacts(now), panic: f.cluster.inPanic, slots: f.slots });
      f.slots = plan.slots;
      if (plan.missing.active > 0 || plan.missing.backup > 0) {
        const cap = capacityOf(f.slots);
        const need = (t: Tier): number => (plan.missing[t] > 0 ? Math.max(cap[t] * 2, cap[t] + plan.missing[t]) : cap[t]);
        grow.set(f, { active: need('active'), backup: need('backup') });
      }
    }
    if (grow.size > 0) return this.reload(grow);
    const commands: string[] = [];
    const generation = this.generation;
    const retiring = new Set<HaproxyFrontend>();
    for (const f of this.frontends) {
      const have = this.applied.get(f);
      f.slots.forEach((s, i) => {
        const from = have?.[i] ?? unknownSlot(s);
        commands.push(...slotCommands(f.backendName, from, s));
        if (s.retiring) retiring.add(f);
      });
      const down = this.shutdowns.get(f);
      if (down) for (const name of down) commands.push(`shutdown sessions server ${f.backendName}/${name}`);
    }
    this.shutdowns.clear();
    // Retiring slots with no connection left are freed in the same exchange: their maint went first.
    const statsFor = [...retiring].filter((f) => f.slots.some((s) => s.retiring));
    for (const f of statsFor) commands.push(`show stat ${f.backendName} 4 -1`);
    if (commands.length === 0) return;
    const sent = [...this.frontends].map((f) => [f, f.slots.map((s) => ({ ...s }))] as const);
    const answers = await this.api.run(commands);
    if (generation !== this.generation) return;
    const stats = answers.splice(commands.length - statsFor.length);
    answers.forEach((a, i) => {
      const why = refusal(a);
      if (why !== undefined) throw new CommandRefused(commands[i]!, why);
    });
    const at = Date.now();
    for (const [f, slots] of sent) {
      this.applied.set(f, slots);
      for (const s of slots) if (s.retiring && !this.retiredAt.has(`${f.backendName}/${s.name}`)) this.retiredAt.set(`${f.backendName}/${s.name}`, at);
    }
    stats.forEach((text, i) => this.freeIdle(statsFor[i]!, parseStat(text), Number.POSITIVE_INFINITY));
    this.emit('applied');
  }

  /** Frees retiring slots of `f` with no session left in `rows`, read after their maint (`readAt`). */
  private freeIdle(f: HaproxyFrontend, rows: ReturnType<typeof parseStat>, readAt: number): void {
    const sessions = f.sessionsBySlot(rows);
    let freed = false;
    f.slots = f.slots.map((s) => {
      const key = `${f.backendName}/${s.name}`;
      const since = this.retiredAt.get(key);
      if (!s.retiring || since === undefined || readAt < since || (sessions.get(s.name) ?? 1) > 0) return s;
      this.retiredAt.delete(key);
      freed = true;
      return freeSlot(s);
    });
    // an endpoint may have been waiting for a slot (the table grows only when none frees)
    if (freed) this.schedule();
  }

  /** More slots: a seamless reload (listening sockets handed over, connections kept by the old worker). */
  private async reload(grow: Map<HaproxyFrontend, Record<Tier, number>>): Promise<void> {
    await this.readStats().catch(() => false);
    for (const [f, cap] of grow) f.slots = growSlots(f.slots, cap);
    // Replan on the grown tables, so the new configuration already carries every endpoint.
    for (const f of this.frontends) f.slots = planSlots({ balance: f.balance, endpoints: f.endpointFacts(), panic: f.cluster.inPanic, slots: f.slots }).slots;
    const complaint = await this.check();
    if (complaint) throw new Error(`HAProxy refuses the grown configuration: ${complaint}`);
    const proc = this.process!;
    const old = this.workerPid;
    this.state = 'reloading';
    this.cancelTimers();
    this.retiredAt.clear();
    const t0 = Date.now();
    proc.signal('SIGUSR2');
    const pid = await this.waitReady(proc, () => old, 15_000);
    if (this.state !== 'reloading') return;
    if (!pid) throw new Error('HAProxy did not come back from its reload');
    this.generation++;
    this.reloads++;
    this.workerPid = pid;
    for (const f of this.frontends) {
      f.newGeneration();
      this.applied.set(f, f.slots.map(renderedSlot));
    }
    this.state = 'running';
    this.log.info({ reloads: this.reloads, workerPid: pid, ms: Date.now() - t0, slots: Object.fromEntries([...grow].map(([f, c]) => [f.backendName, c])) },
      'HAProxy reloaded with more slots (listening sockets handed over; the old worker keeps its connections until they end)');
    this.emit('ready', 'reload');
    this.again = true;
  }

  /** Connections to `key`'s retiring slots are shut down after retireAfterMs (if still there). */
  private retireLater(f: HaproxyFrontend, key: string): void {
    this.later(() => this.shutDown(f, key, true), this.opts.retireAfterMs ?? 5000);
  }

  /** Shut down the connections of `key`'s slots (only the retiring ones: `onlyRetiring`) with the next batch. */
  private shutDown(f: HaproxyFrontend, key: string, onlyRetiring: boolean): void {
    const names = f.slots.filter((s) => s.endpoint === key && (!onlyRetiring || s.retiring)).map((s) => s.name);
    if (names.length === 0) return;
    let set = this.shutdowns.get(f);
    if (!set) this.shutdowns.set(f, (set = new Set()));
    for (const n of names) set.add(n);
    this.schedule();
  }

  private later(fn: () => void, ms: number): void {
    const generation = this.generation;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (generation === this.generation) fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  private cancelTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.shutdowns.clear();
  }

  private startStats(): void {
    this.stopStats();
    const base = this.opts.statsIntervalMs ?? 1000;
    let every = base;
    const tick = (): void => {
      this.statsTimer = setTimeout(() => {
        this.readStats().then(
          (moved) => {
            // At rest nothing moves: reading less often halves what the ambassador costs idle.
            every = moved ? base : Math.min(base * 8, every * 2);
          },
          () => {},
        ).finally(() => {
          if (this.state === 'running' || this.state === 'reloading') tick();
        });
      }, every);
      this.statsTimer.unref();
    };
    tick();
  }

  private stopStats(): void {
    clearTimeout(this.statsTimer);
    this.statsTimer = undefined;
  }

  /**
   * Reads HAProxy's statistics into the frontends (counters, passive evidence, idle retiring
   * slots). True when something moved (a counter, or slots still retiring).
   */
  private readStats(): Promise<boolean> {
    const since = performance.now();
    const done: Promise<boolean> = this.readStatsNow(since).finally(() => {
      if (this.reading?.done === done) this.reading = undefined;
    });
    this.reading = { since, done };
    return done;
  }

  private async readStatsNow(since: number): Promise<boolean> {
    if (this.state !== 'running' && this.state !== 'reloading') return false;
    const generation = this.generation;
    const at = Date.now();
    const rows = parseStat(await this.api.one('show stat'));
    if (generation !== this.generation) return true;
    this.lastStatsSince = Math.max(this.lastStatsSince, since);
    let moved = false;
    for (const f of this.frontends) {
      if (f.absorb(rows)) moved = true;
      this.freeIdle(f, rows, at);
      if (f.slots.some((s) => s.retiring)) moved = true;
    }
    return moved;
  }

  /**
   * Fresh statistics for a scrape of /metrics or /peers: resolves once a reading that began at
   * most `maxAgeMs` before the call has completed (one reading shared by callers close together).
   * With 0, one that began after the call: a reading already under way may have asked HAProxy
   * before what the caller just saw happen (a test once lost a refusal that way).
   */
  refresh(maxAgeMs = 100): Promise<void> {
    return this.readingSince(performance.now() - maxAgeMs).then(() => {}, () => {});
  }

  private readingSince(oldest: number): Promise<unknown> {
    if (this.lastStatsSince > oldest) return Promise.resolve();
    const current = this.reading;
    if (current && current.since > oldest) return current.done;
    // One `show stat` at a time: after the one under way, look again (another caller may have begun one).
    if (current) return current.done.catch(() => {}).then(() => this.readingSince(oldest));
    return this.readStats();
  }

  /** HAProxy's version, as `haproxy -v` says it. */
  get version(): string {
    return this.opts.binary.version;
  }

  get running(): boolean {
    return this.state === 'running' || this.state === 'reloading';
  }

  /**
   * Soft stop: HAProxy stops accepting and lets its connections finish, for up to `drainMs`; then
   * a hard stop. (The ambassador said its goodbyes before.)
   */
  async stop(drainMs: number): Promise<void> {
    if (this.state === 'stopped') return;
    const wasIdle = this.state === 'idle';
    this.state = 'stopping';
    this.cancelTimers();
    this.stopStats();
    for (const u of this.unwatch.splice(0)) u();
    const proc = this.process;
    if (proc?.running) {
      proc.signal('SIGUSR1');
      const hard = setTimeout(() => proc.signal('SIGTERM'), Math.max(0, drainMs));
      const kill = setTimeout(() => proc.signal('SIGKILL'), Math.max(0, drainMs) + 2000);
      await proc.exited;
      clearTimeout(hard);
      clearTimeout(kill);
    }
    for (const f of this.frontends) f.listening = false;
    this.sentinel?.stop();
    this.state = 'stopped';
    if (!wasIdle || !this.opts.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A slot whose state in HAProxy is unknown: compared with it, every setting is sent. */
function unknownSlot(s: Slot): Slot {
  return { ...s, host: '', port: -1, weight: -1, state: s.state === 'maint' ? 'ready' : 'maint' };
}

/**
 * A directory only this user can enter (mkdtemp makes it 0700) for the configuration and the
 * runtime API socket. Under the temporary directory; with a read-only root filesystem (the
 * image run with read_only) /dev/shm, a tmpfs a container always has. Its name carries our pid:
 * the directories of ambassadors that died without cleaning up (kill -9) are removed here.
 */
function privateDirectory(): string {
  const tried: string[] = [];
  for (const base of [tmpdir(), '/dev/shm']) {
    try {
      sweepDeadDirectories(base);
      return mkdtempSync(join(base, `${DIR_PREFIX}${process.pid}-`));
    } catch (err) {
      tried.push(`${base} (${(err as NodeJS.ErrnoException).code})`);
    }
  }
  throw new Error(`no writable directory for HAProxy's configuration and socket: ${tried.join(', ')}; set TMPDIR`);
}

const DIR_PREFIX = 'ambassador-haproxy-';

function sweepDeadDirectories(base: string): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    const m = new RegExp(`^${DIR_PREFIX}(\\d+)-`).exec(name);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    const dir = join(base, name);
    try {
      if (uid !== undefined && statSync(dir).uid !== uid) continue;
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // another ambassador sweeping at the same time, or not ours
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
