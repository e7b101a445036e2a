/**
 * Options from the environment: every option of a command also reads AMBASSADOR_<OPTION>.
 * Precedence is the usual one (as in most CLIs and 12-factor tools): a flag on the command line
 * replaces the variable of the same option, for repeatable options too. Variables that cannot be
 * meant are reported instead of being ignored without a word.
 */
const PREFIX = 'AMBASSADOR_';
/** Read by the program itself, not an option. */
const NOT_OPTIONS = new Set(['AMBASSADOR_DEBUG']);

function editDistance(a: string, b: string): number {
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

/** Short flags of options (see runOptions/browseOptions). */
const ALIASES: Readonly<Record<string, string>> = { advertise: '-a', connect: '-c', interface: '-i' };

const envName = (option: string) => PREFIX + option.toUpperCase().replace(/-/g, '_');

/**
 * Removes from `env` every AMBASSADOR_* variable that is not an option of the command being run
 * (yargs' strict mode would otherwise turn a deployment's own AMBASSADOR_* variable into an
 * "unknown argument" error) and returns one notice per variable the user should hear about:
 * a name that is no option of any command (a typo, with a suggestion), and a variable that a
 * flag on the command line replaces.
 */
export function takeEnvironmentOptions(
  env: NodeJS.ProcessEnv,
  argv: readonly string[],
  commandOptions: readonly string[],
  allOptions: readonly string[],
  command: string,
): string[] {
  const notices: string[] = [];
  const ours = new Set(commandOptions);
  for (const key of Object.keys(env)) {
    if (!key.startsWith(PREFIX)) continue;
    if (NOT_OPTIONS.has(key)) {
      delete env[key]; // read before this runs; yargs would take it for an option
      continue;
    }
    const option = key.slice(PREFIX.length).toLowerCase().replace(/_/g, '-');
    if (!ours.has(option)) {
      delete env[key];
      if (!allOptions.includes(option)) {
        const near = allOptions.filter((o) => editDistance(o, option) <= 2).map(envName);
        notices.push(`${key} is not an option of 'ambassador ${command}': ignored${near.length ? ` (did you mean ${near.join(' or ')}?)` : ''}`);
      }
      continue;
    }
    const short = ALIASES[option];
    if (argv.some((a) => a === `--${option}` || a.startsWith(`--${option}=`) || a === `--no-${option}` || (short !== undefined && a === short))) {
      notices.push(`${key} is set, but --${option} on the command line replaces it (flags take precedence over the environment)`);
    }
  }
  return notices;
}
