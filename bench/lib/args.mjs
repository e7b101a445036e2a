import { readFileSync } from 'node:fs';

/**
 * The bench scripts' command line: `--name value` options and `--flag` switches, read from
 * `argv` (default: this process's arguments). Repeated options (`--amb`, `--variant`) are read
 * by the scripts themselves from `argv`.
 */
export function benchArgs(argv = process.argv.slice(2), script = process.argv[1]) {
  // --help prints the script's header comment (its usage) instead of starting a long run.
  if (argv.includes('--help') || argv.includes('-h')) {
    const header = readFileSync(script, 'utf8').split('\n').filter((l) => !l.startsWith('#!'));
    const end = header.findIndex((l) => !l.startsWith('//'));
    console.log(header.slice(0, end < 0 ? undefined : end).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
    process.exit(0);
  }
  return {
    argv,
    opt: (name, def) => {
      const i = argv.indexOf(`--${name}`);
      return i >= 0 ? argv[i + 1] : def;
    },
    quick: argv.includes('--quick'),
  };
}

/** The proxies' `--listen PORT=HOST:PORT` options (bench/proxies/*.mjs). */
export function listenArgs(argv = process.argv.slice(2)) {
  const listens = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] !== '--listen') continue;
    const [port, target] = argv[i + 1].split('=');
    const [host, tport] = target.split(':');
    listens.push({ port: Number(port), host, tport: Number(tport) });
  }
  return listens;
}
