#!/usr/bin/env node
// Runs the whole test suite. Network tests (mDNS on loopback, network namespaces) must never
// reach a real interface, so as root the runner re-executes itself inside a fresh network
// namespace (`unshare -n`): only a private loopback exists there and nothing can leak.
// Without root it tries a user namespace (`unshare -rn`); if neither works, network tests skip
// themselves with a message and the unit tests still run.
// Then the container tests (test/containers/), in a phase of their own outside that namespace:
// their images are made from the package registries, and the engine they run on gets a network
// namespace of its own (test/containers/lab.sh), which this runner brings up before them and
// deletes after. Without root or the packages they skip with one line.
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const unitOnly = args.includes('--unit-only');
// --no-containers: skip the container phase (its ambassadors run on the images' own Node 24, so
// .ci/run does not repeat it when it runs the suite again on other Node lines).
const noContainers = args.includes('--no-containers');
const filters = args.filter((a) => !a.startsWith('--'));

function findTests(dir) {
  const out = [];
  let entries = [];
  try { entries = readdirSync(dir); } catch { return out; }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (e.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

function run(files, env) {
  // A hung test fails after 3 min instead of stalling CI; soak runs (SOAK=1) are long on purpose.
  const timeout = process.env.SOAK === '1' ? [] : ['--test-timeout=180000'];
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...timeout, ...files], {
    stdio: 'inherit', env,
  });
  return r.status ?? 1;
}

const unit = findTests('.build/src');
const CONTAINERS = join('.build', 'test', 'containers');
const all = unitOnly ? [] : findTests('.build/test');
const network = all.filter((f) => !f.startsWith(CONTAINERS));
const pick = (fs) => (filters.length ? fs.filter((f) => filters.some((x) => f.includes(x))) : fs);
const containers = pick(all.filter((f) => f.startsWith(CONTAINERS)));

/**
 * The lab engine has one name, one namespace and one cache per machine: two test runs (two
 * checkouts) at once would tear each other's engine down. A lock directory with the owner's pid
 * makes the second one wait (a lock left by a dead run is taken over).
 */
function takeLabLock() {
  const dir = '/run/mdns-ambassador-lab.lock';
  const until = Date.now() + 45 * 60_000;
  let said = false;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    let pid = 0;
    try { pid = Number(readFileSync(join(dir, 'pid'), 'utf8')); } catch { /* being written */ }
    let alive = false;
    try { if (pid > 0) { process.kill(pid, 0); alive = true; } } catch { /* gone */ }
    if (pid > 0 && !alive) {
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > until) throw new Error(`the container lab is still in use by pid ${pid} after 45 min`);
    if (!said) console.log(`# container lab in use by another test run (pid ${pid}): waiting for it`);
    said = true;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
  }
}

/** The container phase: lab engine up, the files, engine down (by its pid file) whatever happened. */
function runContainers() {
  if (containers.length === 0) return 0;
  if (noContainers) {
    console.log(`# container tests skipped (${containers.length} files): --no-containers`);
    return 0;
  }
  if (process.getuid?.() !== 0) return runContainersLocked();
  const release = takeLabLock();
  try {
    return runContainersLocked();
  } finally {
    release();
  }
}

function runContainersLocked() {
  const lab = (...a) => spawnSync('bash', ['test/containers/lab.sh', ...a], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  const why = lab('check').stdout.trim();
  if (why) {
    console.log(`# container tests skipped (${containers.length} files): ${why}`);
    return 0;
  }
  const t = Date.now();
  try {
    for (const step of [['up'], ['images', '.']]) {
      const r = lab(...step);
      if (r.status !== 0) {
        console.log(`# container lab: '${step.join(' ')}' failed`);
        return 1;
      }
    }
    const env = { ...process.env, MDNS_AMBASSADOR_LAB_READY: '1', DOCKER_HOST: lab('env').stdout.trim().replace(/^export DOCKER_HOST=/, '') };
    return run(containers, env);
  } finally {
    if (process.env.MDNS_AMBASSADOR_LAB_KEEP !== '1') lab('down');
    console.log(`# container phase: ${((Date.now() - t) / 1000).toFixed(0)} s`);
  }
}

if (process.env.MDNS_AMBASSADOR_TEST_ISOLATED === '1') {
  // Inside our own fresh network namespace: bring up loopback, route multicast to it.
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  spawnSync('ip', ['route', 'add', '224.0.0.0/4', 'dev', 'lo', 'src', '127.0.0.1'], { stdio: 'ignore' });
  process.exit(run(pick([...unit, ...network]), process.env));
}

if (network.length > 0) {
  const isRoot = process.getuid?.() === 0;
  const unshareArgs = isRoot ? ['-n'] : ['-r', '-n'];
  const probe = spawnSync('unshare', [...unshareArgs, 'true'], { stdio: 'ignore' });
  if (probe.status === 0) {
    const inNs = pick([...unit, ...network]);
    const r = inNs.length === 0 ? { status: 0 } : spawnSync('unshare', [...unshareArgs, '--', process.execPath, 'scripts/test.mjs', ...args], {
      stdio: 'inherit',
      env: { ...process.env, MDNS_AMBASSADOR_TEST_ISOLATED: '1', MDNS_AMBASSADOR_TEST_ROOT: isRoot ? '1' : '0' },
    });
    const c = runContainers();
    process.exit((r.status ?? 1) || c);
  }
  console.log('# network tests will skip: cannot create a private network namespace (needs root or user namespaces)');
}
const status = run(pick([...unit, ...network]), process.env);
process.exit(status || runContainers());
