// Process helpers for the benchmarks: bounded child processes, /proc CPU and memory readings,
// port waits. Every process started here is remembered and killed by its PID on exit.
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';

const started = new Set();
let exitHooked = false;

function hookExit() {
  if (exitHooked) return;
  exitHooked = true;
  const killAll = () => {
    for (const p of started) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {}
    }
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      killAll();
      process.exit(130);
    });
  }
}

/**
 * Start a long-running process (a server or proxy). Output is kept (bounded) for diagnostics.
 * Returns { pid, child, out(), stop() }.
 */
export function startProcess(cmd, args, opts = {}) {
  hookExit();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
  let buf = '';
  const keep = (d) => {
    buf += d.toString();
    if (buf.length > 64 * 1024) buf = buf.slice(-32 * 1024);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const p = {
    pid: child.pid,
    child,
    exited,
    out: () => buf,
    async stop(graceMs = 2000) {
      if (child.exitCode !== null || child.signalCode !== null) {
        started.delete(p);
        return;
      }
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {}
      const t = setTimeout(() => {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {}
      }, graceMs);
      await exited;
      clearTimeout(t);
      started.delete(p);
    },
  };
  started.add(p);
  child.once('error', (err) => {
    buf += `spawn error: ${err.message}\n`;
  });
  return p;
}

/** Run a command to completion, bounded by timeoutMs (SIGKILL by PID after). */
export function run(cmd, args, { timeoutMs = 60_000, env, input } = {}) {
  hookExit();
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: env ?? process.env });
    const p = { pid: child.pid };
    started.add(p);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      if (stderr.length < 64 * 1024) stderr += d;
    });
    if (input !== undefined) child.stdin.end(input);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {}
    }, timeoutMs);
    child.once('error', (err) => (stderr += `spawn error: ${err.message}`));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      started.delete(p);
      resolve({ code, signal, stdout, stderr, timedOut, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    });
  });
}

export function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    return (e.stdout ?? '').toString().trim() || (e.stderr ?? '').toString().trim();
  }
}

const CLK_TCK = Number(sh('getconf', ['CLK_TCK'])) || 100;

function children(pid) {
  const out = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const c = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (c) out.push(...c.split(/\s+/).map(Number));
    }
  } catch {}
  return out;
}

/** pid and every live descendant. */
export function tree(pid) {
  const all = [pid];
  for (let i = 0; i < all.length && all.length < 10_000; i++) all.push(...children(all[i]));
  return all;
}

/** [user, system] CPU seconds of one process, with its reaped children. */
function statCpu(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields 14..17 (utime stime cutime cstime), 1-based in proc(5); f[0] is field 3
    return [(Number(f[11]) + Number(f[13])) / CLK_TCK, (Number(f[12]) + Number(f[14])) / CLK_TCK];
  } catch {
    return [0, 0];
  }
}

/** [user, system] CPU seconds of a process, its reaped children and its live descendants. */
export function cpuSplit(pid) {
  const sum = [0, 0];
  for (const p of tree(pid)) {
    const [u, s] = statCpu(p);
    sum[0] += u;
    sum[1] += s;
  }
  return sum;
}

/** CPU seconds of a process, its reaped children and its live descendants. */
export function cpuSeconds(pid) {
  const [u, s] = cpuSplit(pid);
  return u + s;
}

function statusKb(pid, field) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Sum of VmRSS (kB) over a process tree. */
export function treeRssKb(pid) {
  let sum = 0;
  for (const p of tree(pid)) sum += statusKb(p, 'VmRSS');
  return sum;
}

export function hwmKb(pid) {
  return statusKb(pid, 'VmHWM');
}

/** Reset the peak-RSS counter (VmHWM) of a process (proc(5): clear_refs value 5). */
export function resetHwm(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {}
}

/**
 * Watch process trees while `fn` runs: CPU seconds used and peak memory (max of VmHWM of each
 * main process and the sampled RSS sum over its tree, summed over `pids`, in MB).
 */
export async function measure(pids, fn, sampleMs = 100) {
  pids = (Array.isArray(pids) ? pids : [pids]).filter(Boolean);
  if (pids.length === 0) return { result: await fn(), cpuS: NaN, userS: NaN, sysS: NaN, peakRssMb: NaN };
  for (const p of pids) resetHwm(p);
  const split = () => pids.map(cpuSplit).reduce((a, b) => [a[0] + b[0], a[1] + b[1]], [0, 0]);
  const cpu0 = split();
  const peak = pids.map((p) => treeRssKb(p));
  const sample = () => pids.forEach((p, i) => (peak[i] = Math.max(peak[i], treeRssKb(p))));
  const timer = setInterval(sample, sampleMs);
  try {
    const result = await fn();
    sample();
    pids.forEach((p, i) => (peak[i] = Math.max(peak[i], hwmKb(p))));
    const cpu1 = split();
    const userS = cpu1[0] - cpu0[0];
    const sysS = cpu1[1] - cpu0[1];
    return { result, cpuS: userS + sysS, userS, sysS, peakRssMb: peak.reduce((a, b) => a + b, 0) / 1024 };
  } finally {
    clearInterval(timer);
  }
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Wait until host:port accepts a TCP connection. */
export async function waitPort(port, host = '127.0.0.1', timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/**
 * Wait until something listens on 127.0.0.1:port, without connecting (a probe connection would
 * travel through a proxy to the server behind it, which iperf3 takes for a broken test).
 */
export async function waitListen(port, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (sh('ss', ['-Hltn', `sport = :${port}`]).includes(`:${port}`)) return;
    if (Date.now() > until) throw new Error(`nothing listening on port ${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Set the CPU affinity of every thread of a process (and of its live descendants). */
export function pin(pid, cpus) {
  for (const p of tree(pid)) sh('taskset', ['-a', '-p', '-c', cpus, String(p)]);
}

export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
