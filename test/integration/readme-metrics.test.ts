// The README's metrics table names exactly the series /metrics serves: every ambassador_* name in
// the table exists, and every ambassador_* family the real CLI exports is in the table (brace
// groups in the table, `ambassador_mdns_bytes_{received,sent}_total`, are expanded).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AmbProc, echoServer, freePort, httpGet, isolated } from '../robustness/kit.js';

const README = fileURLToPath(new URL('../../../README.md', import.meta.url));

/** `a_{x,y}_b_{1,2}` → a_x_b_1, a_x_b_2, a_y_b_1, a_y_b_2. */
function expand(name: string): string[] {
  const m = /\{([^{}]*)\}/.exec(name);
  if (!m) return [name];
  return m[1]!.split(',').flatMap((alt) => expand(name.slice(0, m.index) + alt + name.slice(m.index + m[0].length)));
}

/** The names in the README's metrics table (the one whose header is `| metric | labels | meaning |`). */
function documented(): Set<string> {
  const text = readFileSync(README, 'utf8');
  const start = text.indexOf('| metric | labels | meaning |');
  assert.ok(start >= 0, 'the README has a metrics table');
  const end = text.indexOf('\n\n', start);
  const table = text.slice(start, end);
  const names = new Set<string>();
  for (const m of table.matchAll(/`(ambassador_[a-z_{},]+)`/g)) for (const n of expand(m[1]!)) names.add(n);
  return names;
}

test('the README metrics table and /metrics name the same ambassador_* series', { skip: isolated }, async (t) => {
  const up = await echoServer();
  t.after(() => up.close());
  const [listen, relay, admin] = [await freePort(), await freePort(), await freePort()];
  // Everything that registers series: a relay, the host probe responder, a connector browsing mDNS.
  const amb = new AmbProc(['--interface', '127.0.0.1', '--hostname', 'metrics', '--admin', String(admin),
    '--advertise', `echo=127.0.0.1:${up.port},relay-port=${relay}`, '--connect', `echo=${listen}`]);
  t.after(() => amb.stop());
  await amb.waitLog((l) => l.msg === 'endpoint up');
  const text = await httpGet(admin, '/metrics');
  const served = new Set([...text.matchAll(/^# HELP (ambassador_[a-z_]+) /gm)].map((m) => m[1]!));
  const inReadme = documented();
  assert.deepEqual([...inReadme].filter((n) => !served.has(n)).sort(), [], 'in the README but not served');
  assert.deepEqual([...served].filter((n) => !inReadme.has(n)).sort(), [], 'served but not in the README');
});
