/** "Did you mean …?": the closest names to a misspelled one (flags, environment variables). */

/** Levenshtein distance (insertions, deletions, substitutions). */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/**
 * The candidates within two edits of `name` (a third of its length for short names, so that
 * `-a` does not suggest everything), closest first.
 */
export function nearest(name: string, candidates: readonly string[]): string[] {
  const max = Math.min(2, Math.max(1, Math.floor(name.length / 3)));
  return candidates
    .map((c) => [c, editDistance(name, c)] as const)
    .filter(([, d]) => d <= max)
    .sort((x, y) => x[1] - y[1])
    .map(([c]) => c);
}
