// The heap the `ambassador` command runs with (src/cli/heap.ts), seen from outside as a user's
// process: where node has process.execve the command replaces itself, before loading anything,
// with the same node and a 4 MB young generation — the same PID, its output and signals intact;
// a young generation sized by the user (NODE_OPTIONS) means no restart. The real CLI on the
// private namespace's loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { AmbProc, echoServer, freePort, isolated } from '../robustness/kit.js';

const canRestart = typeof (process as { execve?: unknown }).execve === 'function';
const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

async function start(t: import('node:test').TestContext, env: NodeJS.ProcessEnv = {}): Promise<AmbProc> {
  const up = await echoServer();
  t.after(() => up.close());
  const port = await freePort();
  const amb = new AmbProc(['--interface', '127.0.0.1', '--connect', `echo=${port}`, '--static', `echo=127.0.0.1:${up.port}`], env);
  t.after(() => amb.stop());
  await amb.waitLog((l) => l.msg === 'listening', 20_000, "'listening'");
  return amb;
}

test(canRestart
  ? 'by default the command restarts itself once, in place, with a young generation of up to 4 MB'
  : 'without process.execve (Node 20) the command runs on, with the lean heap set in place', { skip: isolated }, async (t) => {
  const amb = await start(t);
  const args = cmdline(amb.pid);
  assert.equal(args.includes('--max-semi-space-size=4'), canRestart, args.join(' '));
  if (canRestart) assert.equal(args.filter((a) => a.startsWith('--max-semi-space-size')).length, 1, 'restarted once');
  assert.ok(args.some((a) => a.endsWith('cli/bin.js')) && args.includes('--connect'), 'the same script and arguments');
  assert.equal((amb.logs().filter((l) => l.msg === 'listening')).length, 1, 'one start, logged once');
  amb.signal('SIGINT');
  assert.deepEqual(await amb.exited, { code: 0, signal: null }, 'the signal reaches the program, which stops cleanly');
});

test('a young generation sized by the user (NODE_OPTIONS) is kept: no restart, no flag added', { skip: isolated }, async (t) => {
  const amb = await start(t, { NODE_OPTIONS: '--max-semi-space-size=2' });
  const args = cmdline(amb.pid);
  assert.ok(!args.some((a) => a.startsWith('--max-semi-space-size')), args.join(' '));
  assert.equal(amb.logs().filter((l) => l.msg === 'listening').length, 1);
});
