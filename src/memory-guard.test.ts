// A guard for the two measured memory tricks (README, "Footprint"; bench/RESULTS.md):
//  - base/commonjs.ts: CommonJS dependencies are require()d, never imported. An `import` of a
//    CommonJS package makes Node's ESM loader load cjs-module-lexer (WebAssembly) to find its
//    named exports, and it stays: 70 → 61 MB RSS on an idle ambassador when it went.
//  - cli/heap.ts: V8's heap is chosen before the program loads: the executable imports heap.ts
//    first and everything else dynamically after it; nothing else imports it (an
//    application embedding the library keeps its own heap).
// It reads the sources (not the build) and resolves each imported package as Node would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { importsOf, readSources } from './testing/source-imports.js';

/** Whether `spec` (a package, as an ES module import resolves it) is CommonJS. */
export function isCommonJs(spec: string): boolean {
  const file = fileURLToPath(import.meta.resolve(spec));
  if (file.endsWith('.mjs')) return false;
  if (file.endsWith('.cjs')) return true;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      const type = (JSON.parse(readFileSync(pkg, 'utf8')) as { type?: string }).type;
      // A package.json without a name only sets the type of its folder; with none, keep looking.
      if (type !== undefined) return type !== 'module';
      if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name) return true;
    }
    if (dirname(dir) === dir) return true;
  }
}

const shipped = (file: string) => !file.endsWith('.test.ts') && !file.startsWith('testing/');
const isPackage = (spec: string) => !spec.startsWith('.') && !spec.startsWith('node:');

/** Imports of CommonJS packages that load code (type-only imports vanish in the build): one line each. */
export function staticCommonJsImports(sources: ReadonlyMap<string, string>, commonJs: (spec: string) => boolean = isCommonJs): string[] {
  const out: string[] = [];
  for (const [file, text] of sources) {
    if (!shipped(file)) continue;
    for (const { spec, typeOnly } of importsOf(file, text)) {
      if (typeOnly || !isPackage(spec) || !commonJs(spec)) continue;
      out.push(`src/${file} imports the CommonJS package '${spec}': load it with requireCommonJs (base/commonjs.ts) — an import keeps cjs-module-lexer in memory (~9 MB RSS)`);
    }
  }
  return out;
}

test('the dependencies are told apart: pino, prom-client, dns-packet are CommonJS, yargs is not', () => {
  for (const cjs of ['pino', 'pino-pretty', 'prom-client', 'dns-packet']) assert.ok(isCommonJs(cjs), cjs);
  assert.ok(!isCommonJs('yargs') && !isCommonJs('yargs/helpers'));
});

test('no shipped file imports a CommonJS package: they are require()d (base/commonjs.ts)', () => {
  const sources = readSources();
  assert.deepEqual(staticCommonJsImports(sources), []);
  // The guard sees what it guards: the requires are there, and an import would be caught.
  assert.ok([...sources.values()].some((t) => t.includes("requireCommonJs('prom-client')")));
  const bad = new Map([
    ['admin/metrics.ts', "import { Registry } from 'prom-client';\nimport type * as P from 'prom-client';\n"],
    ['logging/logger.ts', "const pretty = await import('pino-pretty');\nexport type X = typeof import('pino');\n"],
    ['cli/main.ts', "import yargs from 'yargs';\n"],
    ['admin/metrics.test.ts', "import { pino } from 'pino';\n"],
  ]);
  const found = staticCommonJsImports(bad);
  assert.equal(found.length, 2, found.join('\n'));
  assert.match(found[0]!, /src\/admin\/metrics\.ts imports the CommonJS package 'prom-client'/);
  assert.match(found[1]!, /src\/logging\/logger\.ts imports the CommonJS package 'pino-pretty'/);
});

test('the executable sets the heap flags before anything else loads, and only it does', () => {
  const sources = readSources();
  const bin = sources.get('cli/bin.ts')!;
  const statements = ts.createSourceFile('bin.ts', bin, ts.ScriptTarget.Latest).statements;
  const imports = statements.filter(ts.isImportDeclaration).map((s) => (s.moduleSpecifier as ts.StringLiteral).text);
  assert.deepEqual(imports, ['./heap.js'], 'cli/bin.ts: heap.js is its one static import; the program follows with await import()');
  assert.ok(ts.isImportDeclaration(statements[0]!), 'and the first statement');
  assert.match(bin, /await import\('\.\/main\.js'\)/);
  const importers = [...sources].filter(([file, text]) => file !== 'cli/bin.ts' && shipped(file)
    && importsOf(file, text).some((i) => i.spec.endsWith('/heap.js') || i.spec === './heap.js')).map(([f]) => f);
  assert.deepEqual(importers, [], 'nothing else imports heap.ts: an application embedding the library keeps its own heap');
  assert.ok(importsOf('cli/heap.ts', sources.get('cli/heap.ts')!).every((i) => i.spec.startsWith('node:')));
});
