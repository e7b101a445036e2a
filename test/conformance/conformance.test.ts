// The RFC 6762/6763 conformance suite (issue 12): runs every trial (scenarios/), judges each
// scenario against known-failures.json and, on a full run, writes the scorecard to
// .build/conformance.md (or to docs/conformance.md with CONFORMANCE_PUBLISH=1: a test run never
// leaves the tree dirty; publishing a new scorecard is a deliberate commit).
//
// CI semantics: a scenario that fails and is not listed fails its test; a listed scenario that
// passes fails too (remove it from the list, so the list stays true).
//
//   node scripts/test.mjs conformance                                 # after a build
//   CONFORMANCE_ONLY=startup,tiebreak node scripts/test.mjs conformance   # some trials / scenario ids
//   CONFORMANCE_CONCURRENCY=2 …                                       # trials in parallel (default 4)
//   CONFORMANCE_PUBLISH=1 node scripts/test.mjs conformance           # rewrite docs/conformance.md
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { canUseAvahi } from '../lib/avahi.js';
import { canUseNetns, haveCommand } from '../lib/netns.js';
import { runTrials, type Outcome, type TrialTiming } from './lib/runner.js';
import { judge, renderScorecard, type KnownFailures } from './lib/scorecard.js';
import { TRIALS } from './scenarios/index.js';

const ROOT = new URL('../../../', import.meta.url);
const KNOWN_PATH = fileURLToPath(new URL('test/conformance/known-failures.json', ROOT));
const CLI = fileURLToPath(new URL('dist/cli/bin.js', ROOT));

const known = JSON.parse(readFileSync(KNOWN_PATH, 'utf8')) as KnownFailures;
const only = process.env.CONFORMANCE_ONLY?.split(',').map((s) => s.trim()).filter(Boolean);
const selected = TRIALS.filter((t) => !only || only.some((o) => t.name.includes(o) || t.scenarios.some((s) => s.id.includes(o))));
const concurrency = Number(process.env.CONFORMANCE_CONCURRENCY ?? 4);
// CONFORMANCE_DUT=avahi: the reference run against avahi-daemon (no CI verdicts, its own report).
const dutKind = process.env.CONFORMANCE_DUT === 'avahi' ? 'avahi' : 'ambassador';
const PUBLISHED = dutKind === 'avahi' ? 'docs/conformance-avahi.md' : 'docs/conformance.md';
const DOC = process.env.CONFORMANCE_PUBLISH === '1' ? PUBLISHED : `.build/${PUBLISHED.slice('docs/'.length)}`;
const allSpecs = TRIALS.flatMap((t) => t.scenarios);

function skipReason(): string | undefined {
  const r = canUseNetns();
  if (r) return r;
  if (!haveCommand('tcpdump')) return 'tcpdump is not installed (apt-get install tcpdump)';
  if (dutKind === 'avahi') return canUseAvahi();
  try {
    readFileSync(CLI);
  } catch {
    return 'dist/cli/bin.js is missing: npm run build';
  }
  return undefined;
}

describe('RFC 6762/6763 conformance (test/conformance, docs/conformance.md)', { skip: skipReason() }, () => {
  let run: Promise<{ outcomes: Outcome[]; timings: TrialTiming[]; ms: number }>;
  const startedAt = new Date();
  const load = loadavg().map((x) => x.toFixed(1)).join(' ');

  before(() => {
    const t0 = Date.now();
    run = runTrials(selected, concurrency, (s) => console.log(`conformance ${new Date().toISOString().slice(11, 23)} ${s}`), dutKind)
      .then((r) => ({ ...r, ms: Date.now() - t0 }));
  });

  test('known-failures.json names only scenarios that exist, each with a reason', () => {
    const ids = new Set(allSpecs.map((s) => s.id));
    assert.equal(ids.size, allSpecs.length, 'scenario ids are unique');
    for (const [id, reason] of Object.entries(known)) {
      assert.ok(ids.has(id), `known-failures.json lists ${id}, which is no scenario`);
      assert.ok(typeof reason === 'string' && reason.length > 10, `known-failures.json: ${id} needs a reason`);
    }
  });

  for (const trial of TRIALS) {
    for (const spec of trial.scenarios) {
      const picked = selected.includes(trial);
      test(`${spec.id} (RFC ${spec.rfc})`, { skip: picked ? false : 'not selected by CONFORMANCE_ONLY', timeout: 900_000 }, async (t) => {
        const { outcomes } = await run;
        const o = outcomes.find((x) => x.spec.id === spec.id)!;
        if (dutKind === 'avahi') {
          // Reference run: report, never fail.
          if (o.skipped) return t.skip(o.skipped);
          t.diagnostic(`${o.verdict?.pass ? 'pass' : 'FAIL'}: ${o.verdict?.measured ?? `error: ${o.error}`}`);
          return;
        }
        const j = judge(o, known);
        if (j.status === 'skipped') return t.skip(j.message);
        t.diagnostic(j.message);
        assert.ok(j.status === 'pass' || j.status === 'known-failure', j.message);
      });
    }
  }

  after(async () => {
    if (!run) return;
    const { outcomes, timings, ms } = await run;
    const avahi = spawnSync('avahi-daemon', ['--version'], { encoding: 'utf8' }).stdout?.trim();
    const doc = renderScorecard(outcomes, allSpecs, dutKind === 'avahi' ? {} : known, {
      date: startedAt.toISOString().replace(/\.\d+Z$/, 'Z'),
      durationMs: ms,
      node: process.version,
      avahi: avahi || undefined,
      loadAvg: load,
      concurrency,
      trialTimes: [...timings].filter((t) => t.ms > 0).sort((a, b) => TRIALS.findIndex((t) => t.name === a.trial) - TRIALS.findIndex((t) => t.name === b.trial)),
    }, dutKind);
    if (selected.length === TRIALS.length) {
      writeFileSync(fileURLToPath(new URL(DOC, ROOT)), doc);
      console.log(`conformance: scorecard written to ${DOC} (${Math.round(ms / 1000)} s)${DOC === PUBLISHED ? '' : `; CONFORMANCE_PUBLISH=1 writes ${PUBLISHED}`}`);
    } else {
      console.log(`conformance: partial run (CONFORMANCE_ONLY), ${DOC} left as it is (${Math.round(ms / 1000)} s)`);
    }
  });
});
