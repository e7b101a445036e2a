// What a newcomer sees first: the log on a terminal. `--log-format pretty` (and the default on a
// terminal, given here by `script`, a real pseudo-terminal) prints one human line per event with
// its fields indented below; without a terminal the default is JSON lines, one per event.
// The real CLI on the private namespace's loopback, as in operator-view.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { haveCommand } from '../lib/netns.js';
import { CLI, echoServer, freePort, isolated, waitFor } from '../robustness/kit.js';

const ESC = '\u001b';

/** Runs the CLI (through `script` when `tty`), waits for its 'listening' line, then Ctrl-C / SIGINT; all it printed. */
async function run(t: import('node:test').TestContext, flags: string[], tty: boolean): Promise<{ out: string; code: number | null }> {
  const up = await echoServer();
  t.after(() => up.close());
  const port = await freePort();
  const args = [CLI, ...flags, '--interface', '127.0.0.1', '--connect', `echo=${port}`, '--static', `echo=127.0.0.1:${up.port}`];
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const env = { ...process.env, NODE_TEST_CONTEXT: undefined };
  const child = tty
    // `exec`: script runs the command with $SHELL -c, and a shell that forks instead of replacing
    // itself (dash, CI's /bin/sh) takes the Ctrl-C too and dies of it (script then says 130).
    ? spawn('script', ['-qfec', `exec ${[process.execPath, ...args].map(quote).join(' ')}`, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  await waitFor(() => /listening/.test(out), { timeoutMs: 20_000, message: `'listening' in: ${out}` });
  // On the terminal, Ctrl-C as a user types it (the terminal sends SIGINT); else the signal.
  if (tty) child.stdin.write('\u0003');
  else child.kill('SIGINT');
  const code = await exited;
  return { out, code };
}

test('--log-format pretty: one human line per event, fields indented below, no JSON, no colour codes in a pipe', { skip: isolated }, async (t) => {
  const { out, code } = await run(t, ['--log-format', 'pretty'], false);
  assert.equal(code, 0, out);
  assert.match(out, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: listening$/m);
  assert.match(out, /^ {4}listen: "127\.0\.0\.1:\d+"$/m, 'fields below, indented');
  assert.match(out, /^\[[\d:.]+\] INFO: endpoint up$/m);
  assert.match(out, /^\[[\d:.]+\] INFO: stopped$/m, 'the shutdown is said too');
  assert.doesNotMatch(out, /^\{/m, 'no JSON line');
  assert.ok(!out.includes(ESC), 'no colour codes when the output is not a terminal');
});

test('the default on a terminal is pretty, in colour; in a pipe, JSON lines', { skip: isolated || (haveCommand('script') ? false : 'script (util-linux) not installed') }, async (t) => {
  const onTty = await run(t, [], true);
  assert.equal(onTty.code, 0, onTty.out);
  const plain = onTty.out.replace(new RegExp(`${ESC}\\[[0-9;]*m`, 'g'), '').replace(/\r/g, '');
  assert.ok(onTty.out.includes(`${ESC}[`), 'coloured on a terminal');
  assert.match(plain, /^\[[\d:.]+\] INFO: listening$/m);
  assert.match(plain, /^\[[\d:.]+\] INFO: stopped$/m, 'Ctrl-C stops it cleanly');
  assert.doesNotMatch(plain, /^\{/m);

  const inPipe = await run(t, [], false);
  assert.equal(inPipe.code, 0, inPipe.out);
  const lines = inPipe.out.trim().split('\n');
  for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `a JSON line: ${l}`);
  assert.ok(lines.some((l) => JSON.parse(l).msg === 'listening'));
});
