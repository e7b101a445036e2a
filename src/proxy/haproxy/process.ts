import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';

/** A line HAProxy printed on stderr: `[WARNING]  (1234) : Server redis/s1 is UP …`. */
export interface HaproxyLogLine {
  /** HAProxy's own level (NOTICE, WARNING, ALERT); undefined for lines without one (crash traces). */
  level?: string;
  /** The process that printed it (the master or a worker). */
  pid?: number;
  message: string;
}

const LINE = /^\[(\w+)\]\s+\((\d+)\)\s*:\s?(.*)$/;

export function parseLogLine(line: string): HaproxyLogLine {
  const m = LINE.exec(line);
  if (!m) return { message: line };
  return { level: m[1]!, pid: Number(m[2]), message: m[3]! };
}

/**
 * How HAProxy is made to die with the ambassador, even when the ambassador is killed with -9:
 * HAProxy has no option for it. 'pdeathsig': started through util-linux `setpriv --pdeathsig
 * KILL`, the kernel kills the master when its parent dies (kept across the master's re-exec on
 * a reload, which is no set-user-ID exec); the workers exit by themselves when the master's end
 * of their socket pair closes. 'sentinel' (no such setpriv): a `sh` child reads HAProxy's pid
 * on a pipe from the ambassador and, when the pipe ends (the ambassador is gone, however it
 * died), stops that master.
 */
export type ParentDeath = { kind: 'pdeathsig'; setpriv: string } | { kind: 'sentinel' };

export type HaproxyProcessEvents = {
  log: [line: HaproxyLogLine];
  exit: [code: number | null, signal: NodeJS.Signals | null];
};

/** Whatever is still stopped when the sentinel's pipe ends: SIGTERM (a hard stop), SIGKILL 1 s later. */
const SENTINEL = 'last=0; while read -r pid; do last=$pid; done; [ "$last" -gt 0 ] 2>/dev/null || exit 0; kill -TERM "$last" 2>/dev/null; sleep 1; kill -KILL "$last" 2>/dev/null; exit 0';

/**
 * One HAProxy master in master-worker mode (-W), in the foreground, as the ambassador's child.
 * Signals are HAProxy's: SIGUSR2 reloads (the master re-executes itself and starts a worker with
 * the configuration file as it is now; the listening sockets pass from the old worker to the new
 * one, which keeps every connection of the old one until it ends); SIGUSR1 is a soft stop (stop
 * accepting, finish open connections); SIGTERM a hard stop.
 */
export class HaproxyProcess extends EventEmitter<HaproxyProcessEvents> {
  private child: ChildProcess | undefined;
  private exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Resolves when the master exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private resolveExit!: (s: { code: number | null; signal: NodeJS.Signals | null }) => void;

  constructor(
    private readonly binary: string,
    private readonly configFile: string,
    private readonly masterSocket: string,
    private readonly parentDeath: ParentDeath,
    private readonly sentinel?: Sentinel,
  ) {
    super();
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }

  /** The master's pid (undefined before start or after a failed spawn). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.exitStatus === undefined;
  }

  start(): void {
    // -S: the master CLI, on a unix socket only this user may open.
    const args = ['-W', '-f', this.configFile, '-S', `${this.masterSocket},mode,600`];
    const [cmd, argv] = this.parentDeath.kind === 'pdeathsig'
      ? [this.parentDeath.setpriv, ['--pdeathsig', 'KILL', '--', this.binary, ...args]]
      : [this.binary, args];
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const onLine = (line: string): void => {
      if (line.trim()) this.emit('log', parseLogLine(line));
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    child.once('error', (err) => {
      this.emit('log', { level: 'ALERT', message: `cannot start ${this.binary}: ${err.message}` });
      if (child.pid === undefined) this.exitedWith(127, null);
    });
    // 'close' (stdio flushed) rather than 'exit': the last lines of a dying HAProxy come first.
    child.once('close', (code, signal) => this.exitedWith(code, signal));
    if (child.pid !== undefined) this.sentinel?.watch(child.pid);
  }

  private exitedWith(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exitStatus) return;
    this.exitStatus = { code, signal };
    this.sentinel?.watch(0);
    this.resolveExit(this.exitStatus);
    this.emit('exit', code, signal);
  }

  /** Sends `signal` to the master; false when it is not running. */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.running || this.child!.pid === undefined) return false;
    try {
      process.kill(this.child!.pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * The 'sentinel' way of dying with the ambassador (see ParentDeath): one `sh` for the
 * ambassador's life, told each new master's pid (0 once it is gone, so a recycled pid is never
 * signalled).
 */
export class Sentinel {
  private readonly child: ChildProcess;

  constructor() {
    this.child = spawn('sh', ['-c', SENTINEL], { stdio: ['pipe', 'ignore', 'ignore'], detached: false });
    this.child.on('error', () => {});
    this.child.stdin!.on('error', () => {});
    // Neither the sentinel nor its pipe keeps the ambassador alive.
    this.child.unref();
    (this.child.stdin as unknown as { unref?: () => void }).unref?.();
  }

  watch(pid: number): void {
    this.child.stdin!.write(`${pid}\n`);
  }

  /** Ends the sentinel (nothing to watch any more). */
  stop(): void {
    this.watch(0);
    this.child.stdin!.end();
  }
}
