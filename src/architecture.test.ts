// The floors of src/ (docs/architecture.md), kept by a test: every import of every file under
// src/ — type-only and dynamic imports included — goes to its own floor or one below, and no
// file imports itself through others (no cycle). Reads the TypeScript sources, not the build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { posix } from 'node:path';
import { importsOf, readSources, SRC } from './testing/source-imports.js';

/** Top to bottom: a floor imports its own and those after it. `index.ts` (the package entry) stands above all. */
export const FLOORS = ['cli', 'ambassador', 'admin', 'config', 'proxy', 'cluster', 'discovery', 'mdns', 'logging', 'base'] as const;

/**
 * Inside mdns/, the parts of docs/mdns-engine.md: engine.ts on top, publish/ and browse/ side by
 * side (neither imports the other), link/ under them, wire/ at the bottom.
 */
const MDNS_PARTS: Record<string, readonly string[]> = {
  engine: ['engine', 'publish', 'browse', 'link', 'wire'],
  publish: ['publish', 'link', 'wire'],
  browse: ['browse', 'link', 'wire'],
  link: ['link', 'wire'],
  wire: ['wire'],
};

/** Test helpers: only tests (and the helpers themselves) import them; they never ship. */
const TESTING = 'testing';

const isTest = (file: string) => file.endsWith('.test.ts');

/** The floor of a file (path relative to src/, '/'-separated): its top folder, 'index' for the entry. */
function floorOf(file: string): string {
  const [top, ...rest] = file.split('/');
  return rest.length === 0 ? (isTest(file) ? 'tests of src' : top!.replace(/\.ts$/, '')) : top!;
}

function mdnsPartOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 2 ? parts[1]! : 'engine';
}

/**
 * Checks a source tree (path relative to src/ → text): returns one line per import against the
 * floors and per file cycle; empty when the tree keeps the rule.
 */
export function checkArchitecture(sources: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  const graph = new Map<string, string[]>();
  const order = (floor: string) => (floor === 'index' ? -1 : (FLOORS as readonly string[]).indexOf(floor));
  for (const [file, text] of sources) {
    const floor = floorOf(file);
    const edges: string[] = [];
    graph.set(file, edges);
    if (floor !== 'index' && floor !== 'tests of src' && floor !== TESTING && order(floor) < 0) {
      problems.push(`src/${file}: src/${floor}/ is on no floor: place it in FLOORS (src/architecture.test.ts) and docs/architecture.md`);
      continue;
    }
    for (const { spec, typeOnly } of importsOf(file, text)) {
      const how = typeOnly ? 'type import' : 'import';
      if (!spec.startsWith('.')) {
        // A package or a node: built-in. The bottom floor stands on Node alone.
        if (floor === 'base' && !spec.startsWith('node:')) problems.push(`src/${file}: ${how} of '${spec}': base/ imports node:* only`);
        continue;
      }
      const target = posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.js$/, '.ts');
      if (target.startsWith('../')) {
        if (!isTest(file) && floor !== TESTING) problems.push(`src/${file}: ${how} of ${spec}: only tests reach outside src/`);
        continue;
      }
      if (!sources.has(target)) {
        problems.push(`src/${file}: ${how} of ${spec}: no such source file`);
        continue;
      }
      edges.push(target);
      const to = floorOf(target);
      if (to === TESTING) {
        if (!isTest(file) && floor !== TESTING) problems.push(`src/${file}: ${how} of src/${target}: test helpers are for tests only`);
        continue;
      }
      if (floor === TESTING || floor === 'tests of src') continue;
      if (to === 'index' || to === 'tests of src') {
        problems.push(`src/${file}: ${how} of src/${target}: nothing imports the package entry`);
        continue;
      }
      if (order(to) < order(floor)) {
        problems.push(`src/${file}: ${how} of src/${target} goes up from ${floor}/ to ${to}/ (floors, top to bottom: ${FLOORS.join(' → ')})`);
        continue;
      }
      if (floor === 'mdns' && to === 'mdns') {
        const from = mdnsPartOf(file);
        const part = mdnsPartOf(target);
        if (!MDNS_PARTS[from]!.includes(part)) {
          problems.push(`src/${file}: ${how} of src/${target} goes from mdns/${from} to mdns/${part} (engine → publish | browse → link → wire)`);
        }
      }
    }
  }
  for (const scc of cyclesOf(graph)) {
    const cycle = shortestCycle(graph, new Set(scc), scc[0]!);
    problems.push(`file cycle: ${[...cycle, cycle[0]].map((f) => `src/${f}`).join(' → ')}${scc.length > cycle.length ? ` (${scc.length} files in the loop)` : ''}`);
  }
  return problems;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function cyclesOf(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.reverse());
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

/** The shortest way from `start` back to itself inside one strongly connected component (breadth first). */
function shortestCycle(graph: ReadonlyMap<string, readonly string[]>, scc: ReadonlySet<string>, start: string): string[] {
  const from = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!scc.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(from.get(path[0]!)!);
        return path;
      }
      if (!from.has(w)) {
        from.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

test('src/ keeps its floors: no import goes up, none against the mDNS parts, no file cycle', () => {
  const sources = readSources();
  assert.ok(sources.size > 100, `read ${sources.size} files from ${SRC}`);
  for (const floor of FLOORS) assert.ok([...sources.keys()].some((f) => f.startsWith(`${floor}/`)), `src/${floor}/ exists`);
  assert.deepEqual(checkArchitecture(sources), []);
});

test('the check sees every kind of import against the floors, and cycles', () => {
  const tree = new Map([
    ['base/clock.ts', "import { x } from '../mdns/engine.js';\nimport pino from 'pino';\n"],
    ['mdns/engine.ts', "export const e = 1;\n"],
    ['mdns/wire/codec.ts', "import type { Link } from '../link/link.js';\n"],
    ['mdns/link/link.ts', "export type Link = { a: import('../wire/codec.js').X };\n"],
    ['mdns/browse/cache.ts', "import { Prober } from '../publish/prober.js';\n"],
    ['mdns/publish/prober.ts', "export const p = 1;\n"],
    ['discovery/static.ts', "import { type HostPort } from '../config/specs.js';\n"],
    ['config/specs.ts', "export type { Endpoint } from '../cluster/endpoint.js';\n"],
    ['cluster/endpoint.ts', "export const ep = () => import('../proxy/listener.js');\n"],
    ['proxy/listener.ts', "import { tcp } from '../testing/tcp-kit.js';\n"],
    ['proxy/listener.test.ts', "import { tcp } from '../testing/tcp-kit.js';\nimport { z } from '../../test/lib/netns.js';\n"],
    ['testing/tcp-kit.ts', "import { Ambassador } from '../ambassador/ambassador.js';\n"],
    ['ambassador/ambassador.ts', "import { main } from '../index.js';\n"],
    ['index.ts', "export { Ambassador } from './ambassador/ambassador.js';\n"],
    ['registry/etcd.ts', ''],
  ]);
  const problems = checkArchitecture(tree);
  const has = (re: RegExp) => assert.ok(problems.some((p) => re.test(p)), `${re} in:\n${problems.join('\n')}`);
  has(/base\/clock\.ts: import of src\/mdns\/engine\.ts goes up from base\/ to mdns\//);
  has(/base\/clock\.ts: import of 'pino': base\/ imports node:\* only/);
  has(/mdns\/wire\/codec\.ts: type import of src\/mdns\/link\/link\.ts goes from mdns\/wire to mdns\/link/);
  has(/mdns\/browse\/cache\.ts: import of src\/mdns\/publish\/prober\.ts goes from mdns\/browse to mdns\/publish/);
  has(/discovery\/static\.ts: type import of src\/config\/specs\.ts goes up/);
  has(/cluster\/endpoint\.ts: import of src\/proxy\/listener\.ts goes up from cluster\/ to proxy\//);
  has(/proxy\/listener\.ts: import of src\/testing\/tcp-kit\.ts: test helpers are for tests only/);
  has(/ambassador\/ambassador\.ts: import of src\/index\.ts: nothing imports the package entry/);
  has(/src\/registry\/ is on no floor/);
  has(/file cycle: src\/mdns\/link\/link\.ts → src\/mdns\/wire\/codec\.ts → src\/mdns\/link\/link\.ts/);
  assert.ok(!problems.some((p) => p.includes('listener.test.ts')), 'tests may use the helpers and test/lib');
  assert.ok(!problems.some((p) => p.startsWith('src/testing/')), 'the helpers may use any floor');
  assert.ok(!problems.some((p) => p.startsWith('src/config/specs.ts')), 'a re-export down a floor is fine');
});
