import { createRequire } from 'node:module';

/**
 * require() for the CommonJS dependencies (dns-packet, pino, pino-pretty, prom-client).
 *
 * An ES module that `import`s a CommonJS package makes Node's ESM loader analyse the package
 * with cjs-module-lexer, a WebAssembly module, to find its named exports; loading and compiling
 * that lexer stays in the process for good: 70 → 61 MB RSS on an idle ambassador, 9 MB for
 * nothing the program uses. require() needs no such analysis. src/memory-guard.test.ts keeps it.
 */
export const requireCommonJs: NodeJS.Require = createRequire(import.meta.url);
