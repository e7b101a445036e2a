// One service name advertised more than once, with the real CLI on the private namespace's
// loopback: two replicas of a service behind one ambassador are two instances on the wire, each
// seen by browsers with its own port; an instance name given twice is refused; --check says
// which instance name each one gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { AmbProc, CLI, echoServer, isolated } from '../robustness/kit.js';

const LO = ['--interface', '127.0.0.1'];

function cli(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
}

test('two --advertise of one service in one process: two instances, both seen with their ports', { skip: isolated }, async (t) => {
  const [one, two] = [await echoServer(), await echoServer()];
  t.after(() => Promise.all([one.close(), two.close()]));
  const adv = new AmbProc([...LO, '--hostname', 'twin', '--advertise', `two=127.0.0.1:${one.port}`, '--advertise', `two=127.0.0.1:${two.port}`]);
  t.after(() => adv.stop());
  await adv.waitLog((l) => adv.logs().filter((x) => x.msg === 'advertisement' && x.state === 'announced').length === 2 && l.state === 'announced');
  const announced = adv.logs().filter((l) => l.msg === 'advertisement' && l.state === 'announced').map((l) => l.instance).sort();
  assert.deepEqual(announced, ['two@twin', `two@twin:${two.port}`]);
  const r = cli(['browse', ...LO, 'two', '--once', '--wait', '1500', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const seen = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { instance: string; port: number });
  assert.deepEqual(seen.map((s) => [s.instance, s.port]).sort(), [['two@twin', one.port], [`two@twin:${two.port}`, two.port]].sort());
});

test('--check names the instance of each advertisement of one service; an instance name given twice is refused', { skip: isolated }, () => {
  const ok = cli([...LO, '--hostname', 'twin', '--advertise', 'two=7000', '--advertise', 'two=7400', '--check']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^configuration OK: advertise two=7000 as 'two@twin'; advertise two=7400 as 'two@twin:7400'; mDNS on lo/);
  const twice = cli([...LO, '--advertise', 'two=7000,instance=main', '--advertise', 'two=7400,instance=Main', '--check']);
  assert.equal(twice.status, 2);
  assert.match(twice.stderr, /^ambassador: error: --advertise two=7400,instance=Main: instance 'Main' is already announced by --advertise two=7000,instance=main/);
});
