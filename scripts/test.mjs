#!/usr/bin/env node
// The test runner behind `npm test`.
//
//   node scripts/test.mjs [FILTER…] [--build] [--no-build] [--smoke] [--unit-only]
//                         [--no-containers] [--containers-only] [--jobs N] [--list]
//
// FILTER: run only the test files whose path contains one of these strings. --build compiles
// first (`npm test` passes it; --no-build, later on the line, cancels it: .ci/run builds once
// and runs the other Node lines on that build, the JavaScript does not depend on the line).
// --smoke: only the smoke set (test/smoke.txt). --jobs N: unit files at a time (default 2).
// --list: print the files the other options select, by phase, and run nothing.
//
// Phases, in this order, each file in a `node --test` process of its own, timed:
//   unit         src/**/*.test.ts, two files at a time (no network but loopback, no fixed ports)
//   integration  test/integration/, one at a time
//   e2e          the rest of test/ (e2e, robustness, conformance), one at a time: timing bounds
//                hold only if a file has the machine to itself
//   containers   test/containers/, a real engine in a namespace of its own (below)
//   soak         test/soak/, only with SOAK=1
// Network tests (mDNS on loopback, network namespaces) must never reach a real interface, so as
// root the first three phases run in a fresh network namespace (`unshare -n`): only a private
// loopback exists there and nothing can leak. Without root a user namespace (`unshare -rn`);
// if neither works, network tests skip themselves with a message and the unit tests still run.
// The container phase runs outside that namespace: its images are made from the package
// registries, and the engine gets a network namespace of its own (test/containers/lab.sh),
// brought up before the files and deleted after, under a lock the kernel releases (flock), so
// two checkouts never share or tear down one engine.
//
// At the end: every file with its duration, slowest first, and each phase's time (also written to
// .build/test-times-<node version>.json). A skipped test
// is listed with its reason; with CI=true a skip fails the run: CI has every package the tests
// use (.ci/run installs them), so a skip there means a test that silently stopped testing.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
process.chdir(ROOT);
const EVENTS_REPORTER = fileURLToPath(new URL('test-events.mjs', import.meta.url));
const SMOKE_LIST = 'test/smoke.txt';
const LAB_LOCK = '/run/mdns-ambassador-lab.lock';
const RESULTS_ENV = 'MDNS_AMBASSADOR_TEST_RESULTS';

// ---------------------------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
const has = (f) => argv.includes(f);
const lastOf = (a, b) => argv.lastIndexOf(a) > argv.lastIndexOf(b);
const opts = {
  build: lastOf('--build', '--no-build'),
  smoke: has('--smoke'),
  unitOnly: has('--unit-only'),
  containers: !has('--no-containers') && !has('--unit-only'),
  containersOnly: has('--containers-only'),
  list: has('--list'),
  jobs: 2,
  filters: [],
};
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--jobs') opts.jobs = Number(argv[++i]);
  else if (a.startsWith('--jobs=')) opts.jobs = Number(a.slice(7));
  else if (!a.startsWith('--')) opts.filters.push(a);
  else if (!['--build', '--no-build', '--smoke', '--unit-only', '--no-containers', '--containers-only', '--list'].includes(a)) usage(`unknown option ${a}`);
}
if (!(opts.jobs >= 1)) usage('--jobs needs a number ≥ 1');
const strict = process.env.CI === 'true' || process.env.CI === '1';
const soak = process.env.SOAK === '1';

function usage(why) {
  console.error(`scripts/test.mjs: ${why}\nusage: node scripts/test.mjs [FILTER…] [--build|--no-build] [--smoke] [--unit-only] [--no-containers] [--containers-only] [--jobs N] [--list]`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Files and phases

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

/** The source file a built test comes from: .build/src/a.test.js → src/a.test.ts. */
const sourceOf = (built) => relative('.build', built).replace(/\.js$/, '.ts');

/** Which phase a built test file belongs to. */
function phaseOf(built) {
  const src = sourceOf(built);
  if (src.startsWith('src/')) return 'unit';
  if (src.startsWith('test/integration/')) return 'integration';
  if (src.startsWith('test/containers/')) return 'containers';
  if (src.startsWith('test/soak/')) return 'soak';
  return 'e2e';
}

/** test/smoke.txt: source paths (a path ending in / stands for every test under it). */
function smokeSet() {
  const entries = readFileSync(SMOKE_LIST, 'utf8').split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
  for (const e of entries) {
    if (!existsSync(e)) {
      console.error(`${SMOKE_LIST}: ${e} does not exist (a moved or renamed test? keep the list true)`);
      process.exit(2);
    }
  }
  return (src) => entries.some((e) => (e.endsWith('/') ? src.startsWith(e) : src === e));
}

function selectFiles() {
  const all = [...findTests('.build/src'), ...findTests('.build/test')];
  const inSmoke = opts.smoke ? smokeSet() : () => true;
  return all.filter((f) => {
    const src = sourceOf(f);
    // tsc never deletes: a test moved or removed since the last build would still be in .build/
    if (!existsSync(src)) return false;
    if (opts.filters.length && !opts.filters.some((x) => f.includes(x) || src.includes(x))) return false;
    if (!inSmoke(src)) return false;
    const phase = phaseOf(f);
    if (opts.unitOnly) return phase === 'unit';
    if (opts.containersOnly) return phase === 'containers';
    if (phase === 'soak') return soak;
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Running one file

// Each file runs in a process group of its own (so a hung one can be killed with its children):
// a signal to the runner is passed on to them, and no further file starts.
const running = new Set();
/** This runner's own children (the runner again, in a namespace or under the lab lock). */
const nested = new Set();
let interrupted = false;
function interrupt(code) {
  interrupted = true;
  process.exitCode = code;
  for (const child of running) {
    try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
  }
  for (const child of nested) {
    try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
  }
}
process.on('SIGINT', () => interrupt(130));
process.on('SIGTERM', () => interrupt(143));

// A hung test fails after 3 min instead of stalling CI; a file that does not exit (a handle left
// open) is killed after FILE_LIMIT_MIN. Soak runs (SOAK=1) are long on purpose. Node 20 applies
// --test-timeout to a whole file as well (a file of tests taking 3 min in all fails; 22 and later
// time each test): there it is the file limit.
const FILE_LIMIT_MS = soak ? 0 : Number(process.env.MDNS_AMBASSADOR_TEST_FILE_LIMIT_MIN ?? 15) * 60_000;
const TEST_LIMIT = soak ? [] : [`--test-timeout=${Number(process.versions.node.split('.')[0]) <= 20 ? FILE_LIMIT_MS : 180_000}`];

/**
 * Runs one built test file under `node --test` (the spec reporter on stdout, test-events.mjs
 * into a temporary file). `stream`: output straight through (serial phases); otherwise buffered
 * and printed in one piece when the file ends (files running side by side).
 */
function runFile(file, env, stream, scratch) {
  const src = sourceOf(file);
  const eventsPath = join(scratch, src.replace(/[/\\]/g, '_') + '.jsonl');
  const t0 = Date.now();
  if (stream) console.log(`\n## ${src}`);
  const child = spawn(process.execPath, [
    '--test', ...TEST_LIMIT,
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    `--test-reporter=${EVENTS_REPORTER}`, `--test-reporter-destination=${eventsPath}`,
    file,
  ], { env, stdio: ['ignore', stream ? 'inherit' : 'pipe', stream ? 'inherit' : 'pipe'], detached: true });
  running.add(child);
  let out = '';
  if (!stream) {
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
  }
  let killed = false;
  const limit = FILE_LIMIT_MS > 0 ? setTimeout(() => {
    killed = true;
    try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
    setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }, 10_000).unref();
  }, FILE_LIMIT_MS) : undefined;
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      running.delete(child);
      const ms = Date.now() - t0;
      let events = [];
      try {
        events = readFileSync(eventsPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
      } catch { /* the file never started its tests */ }
      const leaves = events.filter((e) => !e.suite || e.skip !== undefined);
      const r = {
        file: src,
        phase: phaseOf(file),
        ms,
        ok: code === 0 && !killed,
        tests: leaves.length,
        failed: leaves.filter((e) => !e.ok).map((e) => `${e.name}: ${e.error}`),
        skipped: leaves.filter((e) => e.skip !== undefined).map((e) => ({ name: e.name, reason: e.skip || '(no reason given)' })),
        todo: leaves.filter((e) => e.todo).length,
        why: killed ? `killed after ${FILE_LIMIT_MS / 60_000} min (a test or a handle kept it running)`
          : code !== 0 && leaves.every((e) => e.ok) ? `exit ${code ?? signal}` : undefined,
      };
      if (!stream) process.stdout.write(`\n## ${src}\n${out}`);
      console.log(`## ${r.ok ? 'ok' : 'FAILED'} ${src}: ${seconds(ms)}, ${r.tests} tests` +
        (r.skipped.length ? `, ${r.skipped.length} skipped` : '') + (r.why ? ` (${r.why})` : ''));
      resolve(r);
    });
  });
}

/** Runs files `jobs` at a time; results in file order. */
async function runPool(files, env, jobs, scratch) {
  const results = new Array(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length && !interrupted) {
      const i = next++;
      results[i] = await runFile(files[i], env, jobs === 1, scratch);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, files.length) }, worker));
  return results.filter(Boolean);
}

/** Runs the given phases in order; returns { phases: [{ name, ms, jobs, files: [...] }] }. */
async function runPhases(files, names, env) {
  const scratch = mkdtempSync(join(tmpdir(), 'mdns-ambassador-test-'));
  const phases = [];
  try {
    for (const name of names) {
      const fs = files.filter((f) => phaseOf(f) === name);
      if (fs.length === 0) continue;
      const jobs = name === 'unit' ? opts.jobs : 1;
      console.log(`\n### phase ${name}: ${fs.length} files${jobs > 1 ? `, ${jobs} at a time` : ''}`);
      const t0 = Date.now();
      const results = await runPool(fs, env, jobs, scratch);
      phases.push({ name, ms: Date.now() - t0, jobs, files: results });
      console.log(`### phase ${name}: ${seconds(Date.now() - t0)}`);
      if (interrupted) break;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return { phases };
}

// ---------------------------------------------------------------------------------------------
// The container phase: lab engine up, images, the files, engine down (by its pid file).

function lab(...a) {
  return spawnSync('bash', ['test/containers/lab.sh', ...a], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
}

async function runContainerPhase(files) {
  const why = lab('check').stdout.trim();
  if (why) return { phases: [], notRun: [{ what: `container phase (${files.length} files)`, why }] };
  console.log(`\n### phase containers: ${files.length} files, under a lab engine`);
  const t0 = Date.now();
  const steps = [];
  const step = (name, ...a) => {
    const s0 = Date.now();
    const r = lab(...a);
    steps.push({ name, ms: Date.now() - s0 });
    if (r.status !== 0) throw new Error(`container lab: '${a.join(' ')}' failed`);
    return r;
  };
  let results = [];
  const scratch = mkdtempSync(join(tmpdir(), 'mdns-ambassador-test-'));
  try {
    step('lab up', 'up');
    step('lab images', 'images', '.');
    const env = { ...process.env, MDNS_AMBASSADOR_LAB_READY: '1', DOCKER_HOST: lab('env').stdout.trim().replace(/^export DOCKER_HOST=/, '') };
    const s0 = Date.now();
    results = await runPool(files, env, 1, scratch);
    steps.push({ name: 'files', ms: Date.now() - s0 });
  } catch (err) {
    console.log(`# ${err.message}`);
    results.push({ file: 'test/containers/lab.sh', phase: 'containers', ms: Date.now() - t0, ok: false, tests: 0, failed: [err.message], skipped: [], todo: 0 });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    if (process.env.MDNS_AMBASSADOR_LAB_KEEP !== '1') {
      const d0 = Date.now();
      lab('down');
      steps.push({ name: 'lab down', ms: Date.now() - d0 });
    }
  }
  console.log(`### phase containers: ${seconds(Date.now() - t0)}`);
  return { phases: [{ name: 'containers', ms: Date.now() - t0, jobs: 1, steps, files: results }] };
}

/**
 * As root, the container phase runs in a child holding an exclusive flock on LAB_LOCK for its
 * whole life: the kernel drops the lock when that process ends, however it ends, so a crashed
 * run never leaves a lock behind and a reused PID can never hold one.
 */
async function containerPhaseLocked(files) {
  // MDNS_AMBASSADOR_LAB_LOCK_HELD=1: the caller holds the lock (.ci/run, which prepares the lab's
  // images in the background while other steps run)
  if (process.getuid?.() !== 0 || process.env.MDNS_AMBASSADOR_LAB_LOCK_HELD === '1' ||
    spawnSync('flock', ['--version'], { stdio: 'ignore' }).status !== 0) {
    return runContainerPhase(files);
  }
  if (spawnSync('flock', ['-n', LAB_LOCK, 'true'], { stdio: 'ignore' }).status !== 0) {
    console.log(`# container lab in use by another test run (${LAB_LOCK}): waiting for it (at most 45 min)`);
  }
  return runChild(['flock', '-w', '2700', LAB_LOCK, process.execPath, 'scripts/test.mjs', ...argv], { MDNS_AMBASSADOR_LAB_LOCKED: '1' });
}

/** Runs this script again (in a namespace, under a lock) and reads back the results it wrote. */
function runChild(cmd, extraEnv) {
  const dir = mkdtempSync(join(tmpdir(), 'mdns-ambassador-results-'));
  const path = join(dir, 'results.json');
  return new Promise((resolve) => {
    // a process group of its own, as the files: a signal reaches flock's child too
    const child = spawn(cmd[0], cmd.slice(1), { stdio: 'inherit', detached: true, env: { ...process.env, ...extraEnv, [RESULTS_ENV]: path } });
    nested.add(child);
    child.on('close', (code, signal) => {
      nested.delete(child);
      let r;
      try { r = JSON.parse(readFileSync(path, 'utf8')); } catch {
        r = { phases: [], notRun: [{ what: cmd.slice(0, 4).join(' '), why: `ended (${code ?? signal}) without results`, failed: true }] };
      }
      rmSync(dir, { recursive: true, force: true });
      resolve(r);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Build, report

function seconds(ms) {
  const s = ms / 1000;
  return s < 100 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${String(Math.round(s % 60)).padStart(2, '0')} s`;
}

/** tsc for dist/ (what users run) and .build/ (src and tests), side by side. */
async function build() {
  const t0 = Date.now();
  const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));
  const one = (project) => new Promise((resolve) => {
    spawn(process.execPath, [tsc, '-p', project], { stdio: 'inherit' }).on('close', (code) => resolve(code));
  });
  const codes = await Promise.all([one('tsconfig.json'), one('tsconfig.test.json')]);
  console.log(`### build (tsc, dist/ and .build/): ${seconds(Date.now() - t0)}`);
  return { ms: Date.now() - t0, ok: codes.every((c) => c === 0) };
}

function report(all, buildResult, t0) {
  const files = all.phases.flatMap((p) => p.files);
  console.log(`\n### test report (node ${process.version}${opts.smoke ? ', smoke set' : ''})`);
  console.log('files, slowest first:');
  for (const f of [...files].sort((a, b) => b.ms - a.ms)) {
    console.log(`  ${seconds(f.ms).padStart(12)}  ${f.ok ? '  ' : '✖ '}${f.file}  (${f.tests} tests${f.skipped.length ? `, ${f.skipped.length} skipped` : ''})`);
  }
  console.log('phases:');
  if (buildResult) console.log(`  ${'build'.padEnd(12)} ${seconds(buildResult.ms).padStart(12)}`);
  for (const p of all.phases) {
    const sum = p.files.reduce((s, f) => s + f.ms, 0);
    const extra = [p.jobs > 1 ? `${p.jobs} at a time, files add up to ${seconds(sum)}` : '', ...(p.steps ?? []).map((s) => `${s.name} ${seconds(s.ms)}`)].filter(Boolean).join('; ');
    console.log(`  ${p.name.padEnd(12)} ${seconds(p.ms).padStart(12)}  ${String(p.files.length).padStart(3)} files${extra ? `  (${extra})` : ''}`);
  }
  console.log(`  ${'total'.padEnd(12)} ${seconds(Date.now() - t0).padStart(12)}`);

  const failed = files.filter((f) => !f.ok);
  const skipped = files.flatMap((f) => f.skipped.map((s) => ({ file: f.file, ...s })));
  const notRun = all.notRun ?? [];
  if (skipped.length || notRun.length) {
    console.log(`\n### ${skipped.length} tests skipped${notRun.length ? `, ${notRun.length} parts not run` : ''}${strict ? ' (CI=true: a skip fails the run)' : ''}`);
    for (const s of skipped) console.log(`  ${s.file}: ${s.name}: ${s.reason}`);
    for (const n of notRun) console.log(`  ${n.what}: ${n.why}`);
  }
  if (failed.length) {
    console.log(`\n### ${failed.length} files failed`);
    for (const f of failed) console.log(`  ${f.file}${f.why ? ` (${f.why})` : ''}${f.failed.map((x) => `\n    ✖ ${x}`).join('')}`);
  }
  const ok = failed.length === 0 && !notRun.some((n) => n.failed) && (!strict || (skipped.length === 0 && notRun.length === 0));
  console.log(`\n### ${ok ? 'PASS' : 'FAIL'}: ${files.length} files, ${files.reduce((s, f) => s + f.tests, 0)} tests, ${failed.length} files failed, ${skipped.length} tests skipped`);
  return ok;
}

function writeResults(r) {
  writeFileSync(process.env[RESULTS_ENV], JSON.stringify(r));
}

// ---------------------------------------------------------------------------------------------
// Main

const IN_NS = ['unit', 'integration', 'e2e', 'soak'];

if (process.env.MDNS_AMBASSADOR_TEST_ISOLATED === '1' && process.env[RESULTS_ENV]) {
  // Inside our own fresh network namespace: bring up loopback, route multicast to it.
  spawnSync('ip', ['link', 'set', 'lo', 'up'], { stdio: 'inherit' });
  spawnSync('ip', ['route', 'add', '224.0.0.0/4', 'dev', 'lo', 'src', '127.0.0.1'], { stdio: 'ignore' });
  writeResults(await runPhases(selectFiles(), IN_NS, process.env));
} else if (process.env.MDNS_AMBASSADOR_LAB_LOCKED === '1' && process.env[RESULTS_ENV]) {
  writeResults(await runContainerPhase(selectFiles().filter((f) => phaseOf(f) === 'containers')));
} else {
  const t0 = Date.now();
  let buildResult;
  if (opts.build) {
    buildResult = await build();
    if (!buildResult.ok) process.exit(1);
  }
  const files = selectFiles();
  if (opts.list) {
    for (const phase of [...IN_NS, 'containers']) {
      const fs = files.filter((f) => phaseOf(f) === phase && (phase !== 'containers' || opts.containers));
      if (fs.length) console.log(`${phase} (${fs.length}):\n${fs.map((f) => `  ${sourceOf(f)}`).join('\n')}`);
    }
    process.exit(0);
  }
  const inNs = files.filter((f) => IN_NS.includes(phaseOf(f)));
  const inContainers = files.filter((f) => phaseOf(f) === 'containers');
  const all = { phases: [], notRun: [] };
  if (files.length === 0) {
    console.error(`no test file matches ${opts.filters.join(' ') || 'the selection'} (built? npm run build && npm run build:test)`);
    process.exit(1);
  }
  if (inNs.length) {
    const isRoot = process.getuid?.() === 0;
    const unshareArgs = isRoot ? ['-n'] : ['-r', '-n'];
    if (spawnSync('unshare', [...unshareArgs, 'true'], { stdio: 'ignore' }).status === 0) {
      const r = await runChild(['unshare', ...unshareArgs, '--', process.execPath, 'scripts/test.mjs', ...argv],
        { MDNS_AMBASSADOR_TEST_ISOLATED: '1', MDNS_AMBASSADOR_TEST_ROOT: isRoot ? '1' : '0' });
      all.phases.push(...r.phases);
      all.notRun.push(...(r.notRun ?? []));
    } else {
      all.notRun.push({ what: 'network isolation', why: 'cannot create a private network namespace (needs root or user namespaces): network tests skip' });
      all.phases.push(...(await runPhases(inNs, IN_NS, process.env)).phases);
    }
  }
  if (inContainers.length && !interrupted) {
    if (!opts.containers) {
      console.log(`\n# container phase not run (${inContainers.length} files): ${has('--unit-only') ? '--unit-only' : '--no-containers'}`);
    } else {
      const r = await containerPhaseLocked(inContainers);
      all.phases.push(...r.phases);
      all.notRun.push(...(r.notRun ?? []));
    }
  }
  const ok = report(all, buildResult, t0);
  // The same figures for a script to compare runs: .build/test-times-v24.22.3.json and so on.
  try {
    mkdirSync('.build', { recursive: true });
    writeFileSync(`.build/test-times-${process.version}.json`, JSON.stringify({
      node: process.version, smoke: opts.smoke, filters: opts.filters, date: new Date().toISOString(), totalMs: Date.now() - t0,
      build: buildResult?.ms, phases: all.phases.map((p) => ({ name: p.name, ms: p.ms, jobs: p.jobs, steps: p.steps,
        files: p.files.map((f) => ({ file: f.file, ms: f.ms, ok: f.ok, tests: f.tests, skipped: f.skipped.length })) })),
    }, null, 1));
  } catch { /* a report is not worth failing the run for */ }
  process.exit(process.exitCode ?? (ok ? 0 : 1));
}
