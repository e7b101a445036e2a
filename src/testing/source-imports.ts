// The sources of src/ as text, and the modules each one imports: what the architecture test and
// the memory guard read. Parsed with the TypeScript compiler, so comments and strings never count.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** src/ of this checkout (the tests run from .build/src/). */
export const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src');

/** Every .ts file under src/: path relative to src/ ('/'-separated) → text. */
export function readSources(dir = SRC, out = new Map<string, string>()): Map<string, string> {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) readSources(p, out);
    else if (p.endsWith('.ts')) out.set(relative(SRC, p).split('\\').join('/'), readFileSync(p, 'utf8'));
  }
  return out;
}

export interface Import {
  /** The specifier as written. */
  spec: string;
  typeOnly: boolean;
}

const parsed = new Map<string, { text: string; imports: Import[] }>();

/** Every module a source file names: import/export … from, import type, import(), import('…').Type. */
export function importsOf(file: string, text: string): Import[] {
  const hit = parsed.get(file);
  if (hit?.text === text) return hit.imports;
  const imports = parse(file, text);
  parsed.set(file, { text, imports });
  return imports;
}

function parse(file: string, text: string): Import[] {
  const src = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: Import[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const typeOnly = !!clause && (clause.isTypeOnly || (!clause.name && !!clause.namedBindings && ts.isNamedImports(clause.namedBindings)
        && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      out.push({ spec: node.moduleSpecifier.text, typeOnly });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ spec: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) out.push({ spec: arg.text, typeOnly: false });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push({ spec: node.argument.literal.text, typeOnly: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
  return out;
}
