// Every benchmark runs in a network namespace of its own: re-exec under `unshare -n` (root
// needed), then refuse to run if anything but `lo` is visible, so no traffic can leave the machine.
import { spawnSync } from 'node:child_process';
import { sh } from './proc.mjs';

/**
 * Call first thing in a bench script. Outside the private namespace it re-executes `script`
 * there and exits with its status; inside, it checks the namespace and brings `lo` up.
 */
export function enterPrivateNetns(script, label, extraEnv = {}) {
  if (process.env.BENCH_PRIVATE_NETNS !== '1') {
    if (process.getuid?.() !== 0) {
      console.error(`${label}: needs root (unshare -n) to run in a private network namespace`);
      process.exit(2);
    }
    const r = spawnSync('unshare', ['-n', '--', process.execPath, ...process.execArgv, script, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, BENCH_PRIVATE_NETNS: '1', ...extraEnv },
    });
    process.exit(r.status ?? 1);
  }
  const links = sh('ip', ['-o', 'link', 'show']).split('\n').filter(Boolean);
  if (links.length !== 1 || !/^\d+: lo:/.test(links[0])) {
    console.error(`${label}: refusing to run outside a fresh network namespace:\n${links.join('\n')}`);
    process.exit(2);
  }
  sh('ip', ['link', 'set', 'lo', 'up']);
}
