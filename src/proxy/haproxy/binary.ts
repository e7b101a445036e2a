import { type ExecFileException, execFile } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { ParentDeath } from './process.js';

/** The oldest HAProxy the data plane drives: Debian 12's (server-template, master-worker, expose-fd listeners, random(1)). */
export const MIN_VERSION: readonly [number, number] = [2, 6];

/** HAProxy cannot be used (missing, too old, not HAProxy): the message names what was found. */
export class HaproxyUnusable extends Error {}

export interface HaproxyBinary {
  path: string;
  /** As `haproxy -v` says it, e.g. "2.6.12-1+deb12u4". */
  version: string;
  major: number;
  minor: number;
  /** Built with Lua: clients can wait for an endpoint (see config.ts, WAIT_LUA). */
  lua: boolean;
  parentDeath: ParentDeath;
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function run(file: string, args: string[]): Promise<{ stdout: string; stderr: string; error?: ExecFileException }> {
  return new Promise((done) => {
    execFile(file, args, { timeout: 5000, encoding: 'utf8' }, (error, stdout, stderr) => done({ stdout, stderr, error: error ?? undefined }));
  });
}

/** "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/" → its version. */
export function parseVersion(text: string): { version: string; major: number; minor: number } | undefined {
  const m = /HAProxy version (\d+)\.(\d+)(\S*)/i.exec(text);
  if (!m) return undefined;
  return { version: `${m[1]}.${m[2]}${m[3]}`, major: Number(m[1]), minor: Number(m[2]) };
}

/**
 * The HAProxy to run: `explicit` (--haproxy PATH) or `haproxy` on PATH, 2.6 or later. Throws
 * HaproxyUnusable with one line naming what was found.
 */
export async function findHaproxy(explicit?: string): Promise<HaproxyBinary> {
  const what = explicit ? `--haproxy ${explicit}` : '--data-plane haproxy';
  const path = explicit ? (isAbsolute(explicit) || explicit.includes('/') ? resolve(explicit) : findOnPath(explicit)) : findOnPath('haproxy');
  if (!path) {
    throw new HaproxyUnusable(explicit
      ? `${what}: no such program on PATH`
      : `${what}: no 'haproxy' on PATH (${process.env.PATH ?? ''}); install HAProxy ${MIN_VERSION.join('.')} or later, or give its path with --haproxy PATH`);
  }
  // (both at once: a process start is slow on a loaded machine)
  const [r, death] = await Promise.all([run(path, ['-vv']), parentDeath()]);
  if (r.error && typeof r.error.code === 'string') {
    throw new HaproxyUnusable(`${what}: cannot run ${path} (${r.error.code === 'ENOENT' ? 'no such file' : r.error.code})`);
  }
  const v = parseVersion(`${r.stdout}\n${r.stderr}`);
  if (!v) throw new HaproxyUnusable(`${what}: ${path} is not HAProxy ('-vv' printed: ${JSON.stringify(`${r.stdout}${r.stderr}`.trim().split('\n')[0]?.slice(0, 80) ?? '')})`);
  if (v.major < MIN_VERSION[0] || (v.major === MIN_VERSION[0] && v.minor < MIN_VERSION[1])) {
    throw new HaproxyUnusable(`${what}: ${path} is HAProxy ${v.version}; ${MIN_VERSION.join('.')} or later is needed`);
  }
  return { path, ...v, lua: /Built with Lua/i.test(r.stdout), parentDeath: death };
}

/** util-linux `setpriv` with --pdeathsig (2.33 and later) when there is one; else the sentinel. */
async function parentDeath(): Promise<ParentDeath> {
  const setpriv = findOnPath('setpriv');
  if (setpriv) {
    const r = await run(setpriv, ['--help']);
    if (`${r.stdout}${r.stderr}`.includes('--pdeathsig')) return { kind: 'pdeathsig', setpriv };
  }
  return { kind: 'sentinel' };
}

/** `haproxy -c -f FILE`: undefined when the configuration is valid, else HAProxy's complaint. */
export async function checkConfig(binary: string, file: string): Promise<string | undefined> {
  const r = await run(binary, ['-c', '-f', file]);
  if (!r.error) return undefined;
  const alerts = `${r.stderr}\n${r.stdout}`.split('\n').filter((l) => l.startsWith('[ALERT]')).map((l) => l.replace(/^\[ALERT\]\s+\(\d+\)\s*:\s*/, ''));
  return alerts[0] ?? `exit status ${r.error.code ?? '?'}`;
}
