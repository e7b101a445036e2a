import { setFlagsFromString } from 'node:v8';

/**
 * V8's heap for a long-running proxy, chosen before the program loads (`--heap fast|lean`,
 * AMBASSADOR_HEAP; lean by default with `--data-plane haproxy`). Measured for this program on
 * Node 24 (bench/RESULTS.md, "The heap decides the churn target"):
 *  - V8's own default lets the young generation grow to 16 MB under connection churn;
 *  - fast (the default): the young generation allowed up to 4 MB (`--max-semi-space-size=4`, the
 *    knee of seven variants): about 0.95× a bare Node proxy's new connections/s, +4 MB idle and
 *    ~+20 MB at the peak of heavy churn against lean;
 *  - lean: kept at 1 MB (`--semi-space-growth-factor=1`) with `--optimize-for-size`: the smallest
 *    footprint, but each connection's objects are copied and promoted often: about 0.82× (0.76×
 *    on Node 20) at 1.29× the bare proxy's CPU per connection.
 * V8 reads the young generation's size only when the heap is made (a setFlagsFromString after
 * start changes nothing, checked), so for fast, where Node has process.execve (22.15, 23.11 and
 * later), the executable replaces itself before loading anything else, with the same node, flags
 * and arguments plus that one: the same PID, stdio and environment, ~75 ms more at start. Where
 * it has not (Node 20), it runs on with the lean heap, set in place at run time.
 *
 * A heap given to node by the user wins: a young-generation size, on node's command line or in
 * NODE_OPTIONS (how a user reaches node behind the `ambassador` command), means no flag and no
 * restart; `--optimize-for-size` on node's command line means lean.
 *
 * Only the CLI imports this module, first; an application embedding the library keeps its own.
 */
export type HeapName = 'fast' | 'lean';
export const HEAP_NAMES: readonly HeapName[] = ['fast', 'lean'];

export interface HeapChoice {
  /** Node flags to restart the process with (process.execve), or none. */
  restartWith: string[];
  /** V8 flags to set in place (v8.setFlagsFromString), when there is no restart. */
  flags: string[];
}

/** The young generation's size of the fast heap (MB per semi-space). */
export const YOUNG_GENERATION_MB = 4;

/** The value of `--NAME V` / `--NAME=V` on the command line (the last one), else of its variable. */
function optionValue(args: readonly string[], env: NodeJS.ProcessEnv, name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--') break;
    if (args[i] === `--${name}`) value = args[i + 1];
    else if (args[i]!.startsWith(`--${name}=`)) value = args[i]!.slice(name.length + 3);
  }
  return (value ?? env[`AMBASSADOR_${name.toUpperCase().replace(/-/g, '_')}`])?.trim().toLowerCase();
}

/**
 * The heap asked for: `--heap` (or AMBASSADOR_HEAP); else lean with `--data-plane haproxy`, where
 * HAProxy carries the bytes and a larger young generation buys nothing; else none (fast). A
 * value yargs will refuse counts as none.
 */
export function heapAsked(args: readonly string[], env: NodeJS.ProcessEnv): HeapName | undefined {
  const heap = optionValue(args, env, 'heap');
  const named = HEAP_NAMES.find((n) => n === heap);
  if (named) return named;
  return optionValue(args, env, 'data-plane') === 'haproxy' ? 'lean' : undefined;
}

export function heapChoice(nodeFlags: readonly string[], canRestart: boolean, asked: HeapName | undefined = undefined): HeapChoice {
  const named = (a: string) => a.replace(/_/g, '-').split('=')[0]!;
  const given = (name: string): boolean => nodeFlags.some((a) => named(a).replace(/^--no-/, '--') === `--${name}`);
  const sizeGiven = given('semi-space-growth-factor') || given('max-semi-space-size') || given('min-semi-space-size');
  if (sizeGiven) return { restartWith: [], flags: [] };
  const leanAsked = asked === 'lean' || nodeFlags.some((a) => named(a) === '--optimize-for-size');
  const lean = { restartWith: [], flags: [...(given('optimize-for-size') ? [] : ['--optimize-for-size']), '--semi-space-growth-factor=1'] };
  if (leanAsked || !canRestart) return lean;
  return { restartWith: [`--max-semi-space-size=${YOUNG_GENERATION_MB}`], flags: [] };
}

type Execve = (file: string, args: string[], env?: NodeJS.ProcessEnv) => never;

const execve = (process as { execve?: Execve }).execve;
const nodeFlags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean)];
const asked = heapAsked(process.argv.slice(2), process.env);
let choice = heapChoice(nodeFlags, typeof execve === 'function', asked);
if (choice.restartWith.length > 0) {
  try {
    execve!(process.execPath, [process.execPath, ...process.execArgv, ...choice.restartWith, ...process.argv.slice(1)]);
  } catch {
    // (e.g. node's binary replaced by an upgrade since it started) run on, with the lean heap
    choice = heapChoice(nodeFlags, false, asked);
  }
}
for (const flag of choice.flags) setFlagsFromString(flag);
