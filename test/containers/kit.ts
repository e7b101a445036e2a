// The container tests' side of the lab (test/containers/lab.sh): the engine is brought up and
// torn down by scripts/test.mjs around these files, which find it through DOCKER_HOST. Here:
// the project's image built with its own Dockerfile, each compose example run from a scratch
// copy of its directory, and small waits on what the containers print.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { composeDir, IMAGE, root } from '../lib/compose.js';

/** Set by scripts/test.mjs once the lab engine is up; absent, the files skip. */
export const skip = process.env.MDNS_AMBASSADOR_LAB_READY === '1' ? undefined : 'no lab engine (scripts/test.mjs brings it up as root with docker.io, docker-compose, debootstrap)';
// Debian's client first: it matches the lab's dockerd (see lab.sh).
const env = { ...process.env, PATH: `/usr/bin:/usr/sbin:${process.env.PATH ?? ''}` };

export interface Run { code: number; out: string }

/** Runs a command to its end (bounded), stdout and stderr together. */
export function sh(cmd: string, args: string[], timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, out: stdout + stderr });
    });
  });
}

export const docker = (...args: string[]) => sh('docker', args);

export async function ok(cmd: string, args: string[], timeoutMs?: number): Promise<string> {
  const r = await sh(cmd, args, timeoutMs);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}\n${r.out}`);
  return r.out;
}

/** Builds the project's image with its own Dockerfile (the classic builder: no BuildKit frontend from a registry). */
export async function buildImage(): Promise<{ seconds: number }> {
  const t = Date.now();
  const r = await sh('docker', ['build', '-q', '-t', IMAGE, root], 600_000);
  assert.equal(r.code, 0, `docker build\n${r.out}`);
  return { seconds: (Date.now() - t) / 1000 };
}

/** `docker compose` when the CLI has it (Compose v2), else Debian's docker-compose (v1). */
const composeV2 = spawnSync('docker', ['compose', 'version'], { env, encoding: 'utf8' }).status === 0;

export const waitFor = async <T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 500): Promise<T> => {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
};

/**
 * One compose example, run from a scratch copy of compose/<example>/ (so a scenario may edit
 * its files, e.g. the DNS record of dns-srv). Compose v1 rejects the top-level `name:` key: the
 * copy drops it and the name is passed with -p.
 */
export class Example {
  readonly dir: string;
  readonly project: string;
  private readonly file: string;

  constructor(readonly example: string) {
    const scratch = mkdtempSync(join(tmpdir(), `container-${example}-`));
    this.dir = join(scratch, 'compose', example);
    cpSync(join(composeDir, example), this.dir, { recursive: true });
    const text = readFileSync(join(this.dir, 'compose.yaml'), 'utf8');
    this.project = /^name: *(\S+)/m.exec(text)![1]!;
    this.file = join(this.dir, composeV2 ? 'compose.yaml' : 'compose.v1.yaml');
    if (!composeV2) writeFileSync(this.file, text.replace(/^name:.*\n/m, ''));
  }

  compose(...args: string[]): Promise<Run> {
    const base = composeV2 ? ['compose'] : [];
    return sh(composeV2 ? 'docker' : 'docker-compose', [...base, '-p', this.project, '--project-directory', this.dir, '-f', this.file, ...args], 300_000);
  }

  async ok(...args: string[]): Promise<string> {
    const r = await this.compose(...args);
    assert.equal(r.code, 0, `compose ${args.join(' ')}\n${r.out}`);
    return r.out;
  }

  /** `up --force-recreate SERVICE` that recreates only SERVICE, as Compose v2 does; v1 also recreates its dependencies (the pod) unless --no-deps. */
  recreate(service: string): Promise<string> {
    return this.ok('up', '-d', '--force-recreate', ...(composeV2 ? [] : ['--no-deps']), service);
  }

  /** The container of a service (the newest one). */
  async container(service: string): Promise<string> {
    const out = await ok('docker', ['ps', '-a', '--filter', `label=com.docker.compose.project=${this.project}`,
      '--filter', `label=com.docker.compose.service=${service}`, '--format', '{{.ID}}']);
    const id = out.trim().split('\n')[0];
    assert.ok(id, `no container for ${service}`);
    return id;
  }

  /** Output lines of a service's container since `since` (a Date). */
  async logs(service: string, since?: Date): Promise<string[]> {
    const args = ['logs', ...(since ? ['--since', since.toISOString()] : []), await this.container(service)];
    return (await docker(...args)).out.split('\n').filter(Boolean);
  }

  /** JSON log records of an ambassador service. */
  async records(service: string, since?: Date): Promise<Array<Record<string, unknown>>> {
    return (await this.logs(service, since)).flatMap((l) => {
      if (!l.startsWith('{')) return [];
      try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; }
    });
  }

  async inspect(service: string, format: string): Promise<string> {
    return (await ok('docker', ['inspect', '-f', format, await this.container(service)])).trim();
  }

  /** GET http://127.0.0.1:9901<path> inside an ambassador container (its own node; the image has no curl). */
  async admin(service: string, path: string): Promise<{ status: number; body: string }> {
    const js = `fetch('http://127.0.0.1:9901${path}').then(async r=>{process.stdout.write(r.status+'\\n'+await r.text())},e=>{process.stdout.write('0\\n'+e.message)})`;
    const r = await docker('exec', await this.container(service), 'node', '-e', js);
    const i = r.out.indexOf('\n');
    return { status: Number(r.out.slice(0, i)), body: r.out.slice(i + 1) };
  }

  /** Brings the example up (image built beforehand by buildImage, so `build:` is not used). */
  async up(): Promise<number> {
    const t = Date.now();
    await this.ok('up', '-d');
    return Date.now() - t;
  }

  /** `down` (and volumes); returns how long it took. */
  async down(): Promise<number> {
    const t = Date.now();
    const r = await this.compose('down', '-v', '-t', '10');
    rmSync(join(this.dir, '..', '..'), { recursive: true, force: true });
    assert.equal(r.code, 0, r.out);
    return Date.now() - t;
  }
}

/** Consecutive integers an app printed (INCR replies), as numbers. */
export const counts = (lines: string[]) => lines.filter((l) => /^\d+$/.test(l)).map(Number);

export function log(msg: string): void {
  console.log(`# ${msg}`);
}

/** Fails fast with the engine's view when something is off. */
export function engineSummary(): string {
  try {
    return execFileSync('docker', ['ps', '-a', '--format', '{{.Names}} {{.Status}}'], { env, encoding: 'utf8' });
  } catch (err) {
    return String(err);
  }
}
