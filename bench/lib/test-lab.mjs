import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const build = resolve(dirname(fileURLToPath(import.meta.url)), '../../.build/test');

/**
 * The compiled test lab (test/lib/netns.ts, test/lib/avahi.ts, test/e2e/ambassador-kit.ts) for
 * the lab-based benchmarks: imports `modules` (paths under .build/test/), or exits 2 with one
 * line saying how to build them.
 */
export async function importTestLab(who, ...modules) {
  const paths = modules.map((m) => resolve(build, m));
  if (!paths.every((p) => existsSync(p))) {
    console.error(`${who}: run \`npx tsc -p tsconfig.test.json\` first (uses the test lab)`);
    process.exit(2);
  }
  return Promise.all(paths.map((p) => import(p)));
}
