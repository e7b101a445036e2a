// What `run` refuses, `--check` finds, before anything reaches the network:
// a port in use (connect listener, admin, fixed relay port), an auth file that is empty or a
// directory. Each ends with one line and exit status 2, nothing on stdout before it. And the
// environment: a misspelled AMBASSADOR_* variable, a variable a flag replaces, and options
// without effect are reported as warnings.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../../dist/cli/bin.js', import.meta.url));
// mDNS only ever on the private namespace's loopback (the runner re-executes itself in one).
const skip = process.env.MDNS_AMBASSADOR_TEST_ISOLATED === '1' ? undefined : 'needs the private network namespace of scripts/test.mjs';

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cli, '--interface', '127.0.0.1', '--log-format', 'json', ...args], {
    encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function refused(args: string[], re: RegExp) {
  const r = run(args);
  assert.equal(r.code, 2, `exit status for ${args.join(' ')}: ${r.code} ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, /^ambassador: error: /);
  assert.match(lines[0]!, re);
  assert.equal(r.stdout, '', `nothing on stdout before the error (no 'mDNS started'): ${r.stdout}`);
}

const dir = mkdtempSync(join(tmpdir(), 'amb-check-'));
const empty = join(dir, 'empty.auth');
const asDir = join(dir, 'dir.auth');
let busy: Server;
let busyPort = 0;

before(async () => {
  writeFileSync(empty, '\n');
  mkdirSync(asDir);
  busy = createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  busyPort = (busy.address() as { port: number }).port;
});
after(() => {
  busy?.close();
  rmSync(dir, { recursive: true, force: true });
});

for (const check of [false, true]) {
  const mode = check ? '--check' : 'run';
  const extra = check ? ['--check'] : [];

  test(`${mode}: a fixed relay-port in use stops the start with one line`, { skip }, () => {
    refused(['--advertise', `redis=127.0.0.1:6399,relay-port=${busyPort}`, ...extra], new RegExp(`--advertise redis=.*relay-port=${busyPort}: .*${busyPort}.*in use`));
  });

  test(`${mode}: a --connect port in use`, { skip }, () => {
    refused(['--connect', `redis=${busyPort}`, ...extra], new RegExp(`--connect redis=${busyPort}: .*127\\.0\\.0\\.1:${busyPort}.*in use`));
  });

  test(`${mode}: an --admin port in use`, { skip }, () => {
    refused(['--connect', 'redis=6390', '--admin', String(busyPort), ...extra], new RegExp(`--admin: .*${busyPort}.*in use`));
  });

  test(`${mode}: an empty auth file, and a directory as auth file`, { skip }, () => {
    refused(['--connect', `redis=6391,auth-file=${empty}`, '--static', 'redis=127.0.0.1:1', ...extra], /auth-file '.*empty\.auth': is empty/);
    refused(['--connect', `redis=6391,auth-file=${asDir}`, '--static', 'redis=127.0.0.1:1', ...extra], /auth-file '.*dir\.auth': cannot read \(EISDIR\)/);
  });
}

test('--check: OK names what would run, and the interfaces mDNS would use', { skip }, () => {
  const r = run(['--advertise', 'redis=6379', '--connect', 'api=8081', '--check']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^configuration OK: advertise redis=6379; connect api on 127\.0\.0\.1:8081 \(round-robin\); mDNS on lo \(127\.0\.0\.1\)\n$/);
});

test('environment: a misspelled variable and one replaced by a flag are reported; options without effect warn', { skip }, () => {
  const r = run(['--connect', 'api=8082,tls-name=api.internal', '--static', 'api=127.0.0.1:1', '--trusted-lan', '--check'], {
    AMBASSADOR_CONECT: 'redis=6379', AMBASSADOR_CONNECT: 'redis=6379', AMBASSADOR_DEBUG: '',
  });
  assert.equal(r.code, 0, r.stderr);
  const warnings = r.stderr.trim().split('\n');
  assert.deepEqual(warnings.map((w) => w.replace(/:.*/, '')), Array(warnings.length).fill('ambassador'));
  assert.ok(warnings.some((w) => /AMBASSADOR_CONECT is not an option of 'ambassador run': ignored \(did you mean AMBASSADOR_CONNECT\?\)/.test(w)), r.stderr);
  assert.ok(warnings.some((w) => /AMBASSADOR_CONNECT is set, but --connect on the command line replaces it/.test(w)), r.stderr);
  assert.ok(warnings.some((w) => /tls-name has no effect without --tls-cert/.test(w)), r.stderr);
  assert.ok(warnings.some((w) => /--trusted-lan has no effect/.test(w)), r.stderr);
  const more = run(['--connect', 'api=8082', '--probe-port', '5390', '--dns-server', '127.0.0.1', '--check']);
  assert.equal(more.code, 0, more.stderr);
  assert.match(more.stderr, /warning: --probe-port has no effect without --advertise/);
  assert.match(more.stderr, /warning: --dns-server has no effect without --srv/);
  assert.ok(!warnings.some((w) => /AMBASSADOR_DEBUG/.test(w)), 'AMBASSADOR_DEBUG is the program\'s own');
  assert.match(r.stdout, /connect api on 127\.0\.0\.1:8082/);
  assert.doesNotMatch(r.stdout, /redis/, 'the flag replaced the variable');
});

test('durations take units; a bad one names the flag and the value', { skip }, () => {
  const r = run(['--connect', 'api=8083', '--static', 'api=127.0.0.1:1', '--health-interval', '2s', '--drain-timeout', '1.5m', '--idle-timeout', '0', '--check']);
  assert.equal(r.code, 0, r.stderr);
  refused(['--connect', 'api=8083', '--health-interval', 'abc', '--check'], /--health-interval: 'abc' is not a duration/);
  refused(['--connect', 'api=8083', '--connect-timeout', '0', '--check'], /--connect-timeout: '0' must be at least 1 ms/);
});
