import { readFileSync } from 'node:fs';

let cached: string | undefined;

/**
 * This package's version, from its package.json (beside dist/ once installed, the image's /app,
 * or the repository root for a build under .build/); 'unknown' when none is found.
 */
export function packageVersion(): string {
  if (cached !== undefined) return cached;
  cached = 'unknown';
  for (let up = '../'; up.length <= 12; up += '../') {
    try {
      const pkg = JSON.parse(readFileSync(new URL(`${up}package.json`, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'mdns-ambassador' && typeof pkg.version === 'string') {
        cached = pkg.version;
        break;
      }
    } catch {
      // not there: one folder up
    }
  }
  return cached;
}
