/**
 * Options from the environment: every option of a command also reads AMBASSADOR_<OPTION>.
 * Precedence is the usual one (as in most CLIs and 12-factor tools): a flag on the command line
 * replaces the variable of the same option, for repeatable options too. Variables that cannot be
 * meant are reported instead of being ignored without a word.
 */
import { editDistance } from './suggest.js';

const PREFIX = 'AMBASSADOR_';
/** Read by the program itself, not an option. */
const NOT_OPTIONS = new Set(['AMBASSADOR_DEBUG']);

/** A variable that cannot be read as its option wants (a boolean that says neither yes nor no). */
export class EnvironmentError extends Error {}

/** The usual ways to write a boolean (systemd, Docker and Compose users write all of them). */
const TRUE = new Set(['true', 'yes', 'on', '1']);
const FALSE = new Set(['false', 'no', 'off', '0', '']);

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
  booleanOptions: readonly string[] = [],
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
    if (booleanOptions.includes(option)) {
      // yargs reads only true/false: 'yes' would silently be false, 'maybe' accepted.
      const v = (env[key] ?? '').trim().toLowerCase();
      if (TRUE.has(v)) env[key] = 'true';
      else if (FALSE.has(v)) env[key] = 'false';
      else throw new EnvironmentError(`${key}='${env[key]}' is not a yes or a no (true/false, yes/no, on/off, 1/0)`);
    }
    const short = ALIASES[option];
    if (argv.some((a) => a === `--${option}` || a.startsWith(`--${option}=`) || a === `--no-${option}` || (short !== undefined && a === short))) {
      notices.push(`${key} is set, but --${option} on the command line replaces it (flags take precedence over the environment)`);
    }
  }
  return notices;
}
