import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { BROWSE_BOOLEAN_OPTIONS, BROWSE_OPTION_NAMES, browseCommand, browseOptions } from './browse.js';
import { DEMO_OPTION_NAMES, demoCommand, demoOptions } from './demo.js';
import { EnvironmentError, takeEnvironmentOptions } from './environment.js';
import { fail } from './fail.js';
import { RUN_BOOLEAN_OPTIONS, RUN_OPTION_NAMES, runCommand, runOptions } from './run.js';
import { nearest } from './suggest.js';

// A bug must still end as one clear line, never a stack trace on the user's terminal
// (set AMBASSADOR_DEBUG=1 to see the trace).
const debug = !!process.env.AMBASSADOR_DEBUG;
const crash = (err: unknown) => {
  if (debug) console.error(err);
  fail(`internal error: ${err instanceof Error ? err.message : String(err)}`, 70);
};
process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);

// Every option reads AMBASSADOR_<OPTION> from the environment (a flag replaces it); variables
// of other commands are set aside, and the ones that cannot be meant are reported by `run`.
const subcommand = hideBin(process.argv)[0];
const command = subcommand === 'browse' || subcommand === 'demo' ? subcommand : 'run';
const commandOptions = command === 'browse' ? BROWSE_OPTION_NAMES : command === 'demo' ? DEMO_OPTION_NAMES : RUN_OPTION_NAMES;

// `-redis=6379` is read by yargs as the short flags -r -e -d -i -s: say what was meant instead.
for (const arg of hideBin(process.argv)) {
  if (arg === '--') break;
  const m = /^-([A-Za-z][A-Za-z0-9-]+)(=.*)?$/.exec(arg);
  if (!m) continue;
  const word = m[1]!.toLowerCase();
  const option = commandOptions.includes(word) ? word : nearest(word, commandOptions)[0];
  fail(`'${arg}': options start with two dashes${option ? ` (did you mean --${option}${m[2] ?? ''}?)`
    : m[2] ? ` (to announce or reach a service: --advertise ${m[1]}${m[2]} or --connect ${m[1]}${m[2]})` : ''} (see ambassador --help)`);
}

/** Unknown flags, each with the option it probably meant. */
function unknownArguments(msg: string): string | undefined {
  const m = /^Unknown arguments?: (.*)$/.exec(msg);
  if (!m) return undefined;
  const names = m[1]!.split(', ');
  const hints = names.map((n) => {
    const near = nearest(n.toLowerCase(), [...commandOptions, 'help', 'version']);
    return near.length ? `--${n} (did you mean --${near[0]}?)` : `--${n}`;
  });
  return `unknown option${names.length > 1 ? 's' : ''} ${hints.join(', ')}`;
}
let environmentNotices: string[] = [];
try {
  environmentNotices = takeEnvironmentOptions(
    process.env, hideBin(process.argv),
    command === 'browse' ? BROWSE_OPTION_NAMES : command === 'demo' ? [] : RUN_OPTION_NAMES,
    [...RUN_OPTION_NAMES, ...BROWSE_OPTION_NAMES], command,
    command === 'browse' ? BROWSE_BOOLEAN_OPTIONS : RUN_BOOLEAN_OPTIONS,
  );
} catch (err) {
  if (err instanceof EnvironmentError) fail(err.message);
  throw err;
}

await yargs(hideBin(process.argv))
  .scriptName('ambassador')
  .usage('$0 [run] [options]\n\nA zero-configuration ambassador: advertise the services next to you over mDNS,\nand reach the ones you need through a local port.')
  .command(['run', '$0'], 'run an ambassador (the default command)', (y) => runOptions(y), (argv) => runCommand(argv, environmentNotices))
  .command('browse [name]', 'list services on the network, live (like avahi-browse -r)', (y) => browseOptions(y), (argv) => browseCommand(argv as never))
  .command('demo', 'a whole mesh on this machine over loopback, narrated (no root needed)', (y) => demoOptions(y), (argv) => demoCommand(argv as never))
  .example('$0 --advertise redis=6379', 'announce the Redis on this host as _redis._tcp.local')
  .example('$0 --connect redis=6379', 'forward 127.0.0.1:6379 to whichever peer announces redis')
  .example('$0 --connect redis=6379 --static redis=10.0.0.5:6380+10.0.0.6:6380', 'fixed endpoints, no multicast')
  .example('$0 browse redis', 'watch redis instances come and go')
  .env('AMBASSADOR')
  .strict()
  .help()
  .alias('h', 'help')
  .version()
  .wrap(Math.min(110, process.stdout.columns ?? 100))
  .fail((msg, err) => {
    if (err) crash(err);
    fail(`${unknownArguments(msg) ?? msg} (see ambassador --help)`);
  })
  .parseAsync();
