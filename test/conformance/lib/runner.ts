// Runs trials, a few at a time, each in a lab of its own, and collects one outcome per scenario.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from '../../lib/netns.js';
import { Capture } from './capture.js';
import { describePacket } from './observe.js';
import { Peer } from './peer.js';
import { makeContext, type DutKind, type ScenarioSpec, type Trial, type Verdict } from './trial.js';

export interface Outcome {
  spec: ScenarioSpec;
  trial: string;
  /** Undefined when the trial ended without recording this scenario. */
  verdict?: Verdict;
  /** Why there is no verdict (the trial's error). */
  error?: string;
  /** Not run: a prerequisite is missing here (e.g. avahi-daemon). */
  skipped?: string;
}

export interface TrialTiming {
  trial: string;
  ms: number;
}

/** CONFORMANCE_TIMELINES=DIR: one text timeline of the wire per capture, for reading failures. */
export function writeTimeline(name: string, cap: Capture): void {
  const dir = process.env.CONFORMANCE_TIMELINES;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  const t0 = cap.packets[0]?.t ?? 0;
  writeFileSync(join(dir, `${name}.txt`), cap.packets.map((p) => describePacket(p, t0)).join('\n') + '\n');
}

async function runTrial(trial: Trial, dutKind: DutKind, log: (s: string) => void): Promise<{ outcomes: Outcome[]; ms: number }> {
  const t0 = Date.now();
  const missing = !(trial.duts ?? ['ambassador']).includes(dutKind) ? `not applicable to ${dutKind}` : trial.requires?.();
  if (missing) return { outcomes: trial.scenarios.map((spec) => ({ spec, trial: trial.name, skipped: missing })), ms: 0 };
  const verdicts = new Map<string, Verdict>();
  const declared = new Set(trial.scenarios.map((s) => s.id));
  let error: string | undefined;
  let lab: Lab | undefined;
  let peer: Peer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let cap: Capture | undefined;
  try {
    lab = await Lab.create({ hosts: ['dut'], attach: true, prefix: 'conf', ipv6: trial.ipv6 });
    cap = await Capture.start(lab, lab.host('dut'));
    peer = await Peer.open(lab.gateway!);
    const ctx = makeContext(lab, peer, cap, (id, pass, measured) => {
      if (!declared.has(id)) throw new Error(`trial ${trial.name} recorded undeclared scenario ${id}`);
      verdicts.set(id, { pass, measured });
    }, dutKind);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`trial timed out after ${trial.budgetMs} ms`)), trial.budgetMs);
    });
    await Promise.race([trial.run(ctx), timeout]);
  } catch (e) {
    error = (e as Error).message.split('\n').slice(0, 3).join(' ').slice(0, 300);
    log(`trial ${trial.name}: ${(e as Error).stack ?? e}`);
  } finally {
    clearTimeout(timer);
    peer?.close();
    // CONFORMANCE_TIMELINES=DIR: one text timeline of the wire per trial, for reading failures.
    if (cap) writeTimeline(trial.name, cap);
    await lab?.destroy(1000);
  }
  const outcomes = trial.scenarios.map((spec) => {
    const verdict = verdicts.get(spec.id);
    return verdict ? { spec, trial: trial.name, verdict } : { spec, trial: trial.name, error: error ?? 'trial ended without measuring this' };
  });
  return { outcomes, ms: Date.now() - t0 };
}

/** Runs every trial, at most `concurrency` at once, longest budgets first. */
export async function runTrials(trials: Trial[], concurrency: number, log: (s: string) => void = () => {}, dutKind: DutKind = 'ambassador'): Promise<{ outcomes: Outcome[]; timings: TrialTiming[] }> {
  const queue = [...trials].sort((a, b) => b.budgetMs - a.budgetMs);
  const outcomes: Outcome[] = [];
  const timings: TrialTiming[] = [];
  const worker = async () => {
    for (let t = queue.shift(); t; t = queue.shift()) {
      log(`trial ${t.name}: start`);
      const r = await runTrial(t, dutKind, log);
      log(`trial ${t.name}: done in ${r.ms} ms`);
      outcomes.push(...r.outcomes);
      timings.push({ trial: t.name, ms: r.ms });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return { outcomes, timings };
}
