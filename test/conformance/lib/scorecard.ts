// Verdicts against the known-failures list, and the published scorecard (docs/conformance.md).
import type { Outcome } from './runner.js';
import type { ScenarioSpec } from './trial.js';

/** test/conformance/known-failures.json: scenario id → why it fails today. */
export type KnownFailures = Record<string, string>;

export type Status =
  | 'pass'
  /** fails, and is listed: fine for CI */
  | 'known-failure'
  /** fails and is not listed: CI fails */
  | 'regression'
  /** passes but is listed: CI fails until the entry is removed, so the list stays true */
  | 'stale'
  /** not run here (a prerequisite is missing) */
  | 'skipped';

export interface Judged {
  status: Status;
  /** One line for the test output. */
  message: string;
}

export function judge(o: Outcome, known: KnownFailures): Judged {
  const listed = Object.prototype.hasOwnProperty.call(known, o.spec.id);
  if (o.skipped) return { status: 'skipped', message: `skipped: ${o.skipped}` };
  const pass = o.verdict?.pass === true;
  const what = o.verdict ? o.verdict.measured : `error: ${o.error}`;
  if (pass && !listed) return { status: 'pass', message: what };
  if (pass && listed) {
    return { status: 'stale', message: `${o.spec.id} passes now (${what}) but is listed in test/conformance/known-failures.json: remove the entry` };
  }
  if (listed) return { status: 'known-failure', message: `known failure (${known[o.spec.id]}): ${what}` };
  return { status: 'regression', message: `${o.spec.id} fails (RFC ${o.spec.rfc}: ${o.spec.rule}): ${what}` };
}

export interface RunInfo {
  date: string;
  durationMs: number;
  node: string;
  avahi?: string;
  loadAvg: string;
  concurrency: number;
  trialTimes: Array<{ trial: string; ms: number }>;
}

const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

const RESULT: Record<Status, string> = {
  pass: 'pass',
  'known-failure': '**fail** (known)',
  regression: '**FAIL** (new)',
  stale: 'pass (still listed as known failure)',
  skipped: 'skipped',
};

const INTRO = `# RFC 6762 / 6763 conformance scorecard

This file is written by the conformance suite (\`test/conformance/\`), which runs with \`npm test\`.
Each row is one rule of Multicast DNS (RFC 6762) or DNS-SD (RFC 6763), checked against the real
\`ambassador\` CLI in a network namespace by a scripted peer (built on dns-packet) and a packet
capture of the ambassador's link (tcpdump on the lab bridge: kernel timestamps, IP TTL, sizes).
The rules follow issue 12's list, modelled on what Apple's Bonjour Conformance Test and the
systemd-resolved mDNS scorecard check — probing and its timing, simultaneous-probe tiebreaking, conflicts and their rate limit,
announcing, reply timing, known-answer / duplicate suppression, unicast and legacy replies,
cache-flush bits, goodbyes, cache refresh, the one-second rule, additional records and NSEC,
IP TTL — plus issue 12's target against a real avahi-daemon publishing the same 30 services.

**Result**: *pass*; *fail (known)*: listed in
[test/conformance/known-failures.json](../test/conformance/known-failures.json) with its reason;
*FAIL (new)*: a regression. CI fails on a new failure, and also when a listed failure passes
(remove it from the list, so the list stays true). Timing rules are measured on the wire; where
a machine under load can push a measurement, the tolerance applied is stated below the table.
Re-run one area with \`CONFORMANCE_ONLY=probe,tiebreak node scripts/test.mjs conformance\`
(trial names or scenario ids; a partial run does not rewrite this file). The same scenarios
against avahi-daemon, as a check of the instrument and a reference:
[conformance-avahi.md](conformance-avahi.md).
`;

const AVAHI_INTRO = `# Reference: avahi-daemon on the conformance suite

The scenarios of [conformance.md](conformance.md) that do not need the ambassador's own features
(its \`--connect\` querier, health-gated withdrawal, the comparison with Avahi itself), run with
avahi-daemon as the device under test: same host label, instance names, ports and TXT, from
static service files. It checks the instrument (a rule the ambassador fails should be one a
mature stack can pass, or the rule is suspect) and shows where Avahi itself departs from the
RFCs. Written by \`CONFORMANCE_DUT=avahi node scripts/test.mjs conformance\`; not part of CI.
`;

export function renderScorecard(outcomes: Outcome[], order: ScenarioSpec[], known: KnownFailures, info: RunInfo, subject: 'ambassador' | 'avahi' = 'ambassador'): string {
  const byId = new Map(outcomes.map((o) => [o.spec.id, o]));
  const rows = order.map((s) => byId.get(s.id)).filter((o): o is Outcome => !!o);
  const judged = rows.map((o) => ({ o, j: judge(o, known) }));
  const count = (st: Status) => judged.filter((x) => x.j.status === st).length;
  const passes = count('pass') + count('stale');
  const fails = count('known-failure') + count('regression');
  const lines: string[] = [subject === 'avahi' ? AVAHI_INTRO : INTRO];
  lines.push('## Summary', '');
  const split = subject === 'ambassador' ? ` (${count('known-failure')} known, ${count('regression')} new)` : '';
  lines.push(`${rows.length} scenarios: **${passes} pass, ${fails} fail**${split}` +
    (count('skipped') ? `, ${count('skipped')} skipped` : '') + (count('stale') ? `; ${count('stale')} listed failure(s) now pass` : '') + '.');
  lines.push('');
  lines.push(`Run ${info.date}, ${Math.round(info.durationMs / 1000)} s wall clock (${info.concurrency} trials in parallel), Node ${info.node}` +
    (info.avahi ? `, ${info.avahi}` : '') + `, load average at start ${info.loadAvg} (2 cores, shared).`);
  lines.push('');
  lines.push('## Scenarios', '');
  lines.push('| Scenario | RFC | Result | Measured |');
  lines.push('|---|---|---|---|');
  for (const { o, j } of judged) {
    const measured = o.skipped ? o.skipped : o.verdict ? o.verdict.measured : `error: ${o.error}`;
    const result = subject === 'avahi' && j.status === 'regression' ? '**fail**' : RESULT[j.status];
    lines.push(`| **${o.spec.id}** — ${esc(o.spec.rule)} | ${esc(o.spec.rfc)} | ${result} | ${esc(measured)} |`);
  }
  lines.push('');
  const knownRows = judged.filter((x) => x.j.status === 'known-failure' || x.j.status === 'stale');
  if (knownRows.length && subject === 'ambassador') {
    lines.push('## Known failures', '');
    for (const { o } of knownRows) lines.push(`- **${o.spec.id}** (RFC ${o.spec.rfc}): ${esc(known[o.spec.id] ?? '')}`);
    lines.push('');
  }
  const timed = rows.filter((o) => o.spec.timing);
  if (timed.length) {
    lines.push('## Timing bounds under load', '');
    lines.push('Times are kernel capture timestamps on the lab bridge, so the capture adds no delay; what a');
    lines.push('loaded machine can add is the ambassador\'s own scheduling (timers firing late). Tolerances:', '');
    for (const o of timed) lines.push(`- **${o.spec.id}**: ${esc(o.spec.timing!)}`);
    lines.push('');
  }
  lines.push('## Trials', '');
  lines.push('Each trial is one lab (fresh network namespaces) and one script; scenarios that one run shows share it.', '');
  lines.push('| Trial | Scenarios | Time |');
  lines.push('|---|---|---|');
  for (const t of info.trialTimes) {
    const ids = rows.filter((o) => o.trial === t.trial).map((o) => o.spec.id);
    lines.push(`| ${t.trial} | ${ids.join(', ')} | ${(t.ms / 1000).toFixed(1)} s |`);
  }
  lines.push('');
  return lines.join('\n');
}
