import { setFlagsFromString } from 'node:v8';

/**
 * V8 heap settings for a long-running proxy whose steady state allocates little:
 *  - `--optimize-for-size`: heap heuristics that favour memory over speed;
 *  - `--semi-space-growth-factor=1`: the young generation keeps its initial 1 MB semi-space
 *    instead of doubling whenever start-up or a burst of traffic leaves survivors (V8 otherwise
 *    grows it towards 16 MB and rarely gives the pages back).
 * Measured for this program: RSS 59 MB idle instead of 70, throughput unchanged; the price is
 * CPU under heavy connection churn (~17 % more user time per connection). Figures:
 * bench/RESULTS.md, "Memory" and "What a new connection costs now".
 *
 * Only the CLI imports this module, first, so the settings apply while the rest loads; an
 * application embedding the library keeps its own.
 *
 * A heap chosen by the user wins: a young-generation size given to node (on its command line, or
 * in NODE_OPTIONS, how a user reaches node behind the `ambassador` command; node allows
 * `--max-semi-space-size` there, not `--optimize-for-size`) means neither flag is set, since
 * `--optimize-for-size` with a young generation free to grow is the slowest mix measured. The
 * choice for heavy connection churn: `NODE_OPTIONS=--max-semi-space-size=4` (V8 reads it only at
 * start, so this module cannot set it), measured on Node 24 at 0.955x a bare Node proxy's
 * connections/s against 0.82x, for 73 instead of 70 MB idle and ~100 instead of ~78 MB at the
 * peak of churn (bench/RESULTS.md).
 */
export function leanHeapFlags(nodeFlags: readonly string[]): string[] {
  const given = (name: string): boolean =>
    nodeFlags.some((a) => a.replace(/_/g, '-').replace(/^--no-/, '--').split('=')[0] === `--${name}`);
  const sizeGiven = given('semi-space-growth-factor') || given('max-semi-space-size') || given('min-semi-space-size');
  const flags: string[] = [];
  if (!given('optimize-for-size') && !sizeGiven) flags.push('--optimize-for-size');
  if (!sizeGiven) flags.push('--semi-space-growth-factor=1');
  return flags;
}

for (const flag of leanHeapFlags([...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean)])) {
  setFlagsFromString(flag);
}
