// The proxies the data path benchmarks compare, each a "path" in front of one redis-server and
// one iperf3 server on 127.0.0.1: direct, HAProxy, socat, the ambassador, other ambassador builds
// (--amb) and the Node proxies of bench/proxies (--variant). Shared by datapath.mjs and
// conncost.mjs; every process is started through bench/lib/proc.mjs (killed by PID on exit).
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { startProcess, waitPort, waitListen, sleep, sh } from './proc.mjs';

/**
 * Paths: direct, haproxy (a bare HAProxy), socat, ambassador (the Node data plane), amb-haproxy
 * (the ambassador with --data-plane haproxy), then the ones given here.
 * Path definitions from the command line:
 *   --ambassador-bin FILE                  the ambassador's entry point (default dist/cli/bin.js)
 *   --node BIN                             Node binary of the ambassador and the Node variants
 *   --amb "NAME=[NODE ARGS][@BIN][^NODE]"  another ambassador build, node flags or Node binary
 *   --amb-haproxy "NAME=…"                 the same, with --data-plane haproxy
 *   --variant "NAME=FILE[ ARGS][^NODE]"    a Node proxy taking --listen PORT=HOST:PORT
 *   --amb-args "ARGS"                      more ambassador options, every ambassador path (e.g.
 *                                          longer timeouts for a run under valgrind)
 *   --node-args "ARGS"                     node/V8 flags for every Node path (e.g. --single-threaded)
 * `wrap(cmd, args, name)` may return another command line to run a proxy under (valgrind,
 * strace); `startTimeoutMs` bounds the wait for its port (a proxy under valgrind starts slowly).
 * Returns { defs: name → async () => { pids, redis, bulk, stop }, names (every path, in order),
 * node: name → version of the Node binary that runs it (Node paths only) }.
 */
export function pathDefinitions({ root, argv, opt, redisPort, bulkPort, wrap = (cmd, args) => [cmd, args], startTimeoutMs = 30_000 }) {
  const ambBin = resolve(root, opt('ambassador-bin', 'dist/cli/bin.js'));
  const nodeBin = opt('node', process.execPath);
  const ambArgs = (opt('amb-args') ?? '').split(' ').filter(Boolean);
  const nodeArgsAll = (opt('node-args') ?? '').split(' ').filter(Boolean);
  const versions = new Map();
  const versionOf = (bin) => {
    if (!versions.has(bin)) versions.set(bin, sh(bin, ['--version']));
    return versions.get(bin);
  };
  const node = {};
  let nextPort = 7100;
  const ports = () => {
    // Below the ephemeral range the harnesses set (10000-65000): a long run (many paths, many
    // rounds) cycles through 7200-9900 instead of landing on a port a client connection holds.
    nextPort = nextPort >= 9900 ? 7200 : nextPort + 100;
    return { redis: nextPort, bulk: nextPort + 1 };
  };
  const start = (name, cmd, args) => {
    const [c, a] = wrap(cmd, args, name);
    return startProcess(c, a);
  };
  const ready = async (proc, p) => {
    await waitPort(p.redis, '127.0.0.1', startTimeoutMs).catch((e) => fail(e, proc));
    await waitListen(p.bulk, startTimeoutMs).catch((e) => fail(e, proc));
  };

  const defs = {
    direct: async () => ({ pids: [], redis: redisPort, bulk: bulkPort, stop: async () => {} }),
    haproxy: async () => {
      const p = ports();
      const cfg = join(os.tmpdir(), `bench-haproxy-${process.pid}-${p.redis}.cfg`);
      writeFileSync(
        cfg,
        `global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1m
  timeout server 1m
listen redis
  bind 127.0.0.1:${p.redis}
  server r1 127.0.0.1:${redisPort}
listen bulk
  bind 127.0.0.1:${p.bulk}
  server b1 127.0.0.1:${bulkPort}
`,
      );
      const proc = start('haproxy', 'haproxy', ['-db', '-f', cfg]);
      await ready(proc, p);
      return { pids: [proc.pid], ...p, stop: () => proc.stop() };
    },
    socat: async () => {
      const p = ports();
      const a = start('socat', 'socat', [`TCP-LISTEN:${p.redis},bind=127.0.0.1,fork,reuseaddr,nodelay`, `TCP:127.0.0.1:${redisPort},nodelay`]);
      const b = start('socat', 'socat', [`TCP-LISTEN:${p.bulk},bind=127.0.0.1,fork,reuseaddr,nodelay`, `TCP:127.0.0.1:${bulkPort},nodelay`]);
      await waitPort(p.redis, '127.0.0.1', startTimeoutMs).catch((e) => fail(e, a));
      await waitListen(p.bulk, startTimeoutMs).catch((e) => fail(e, b));
      return { pids: [a.pid, b.pid], ...p, stop: async () => Promise.all([a.stop(), b.stop()]) };
    },
  };

  // Every feature on, as a user runs it: retry before the first byte and outlier detection
  // (always on), metrics (--admin) and logging at info (JSON lines to a pipe).
  const ambassador = (name, bin, nodeArgs, nodeBinary, planeArgs = []) => async () => {
    const p = ports();
    const proc = start(name, nodeBinary, [
      ...nodeArgsAll,
      ...nodeArgs.split(' ').filter(Boolean),
      bin,
      '--connect', `redis=${p.redis}`, '--static', `redis=127.0.0.1:${redisPort}`,
      '--connect', `bulk=${p.bulk}`, '--static', `bulk=127.0.0.1:${bulkPort}`,
      '--admin', `127.0.0.1:${p.redis + 2}`,
      '--log-level', 'info',
      ...planeArgs,
      ...ambArgs,
    ]);
    await ready(proc, p);
    await sleep(300); // first health check round marks the static endpoints up
    // A profiled process needs time to write its profile on exit.
    return { pids: [proc.pid], ...p, admin: p.redis + 2, stop: () => proc.stop(nodeArgs.includes('-prof') ? 15_000 : 2000) };
  };
  defs.ambassador = ambassador('ambassador', ambBin, process.env.BENCH_NODE_ARGS ?? '', nodeBin);
  node.ambassador = versionOf(nodeBin);
  // The same ambassador with HAProxy as its data plane: the ambassador discovers and decides, a
  // child HAProxy carries the bytes. Its pids include HAProxy's (a child: counted in the tree).
  defs['amb-haproxy'] = ambassador('amb-haproxy', ambBin, process.env.BENCH_NODE_ARGS ?? '', nodeBin, ['--data-plane', 'haproxy']);
  node['amb-haproxy'] = versionOf(nodeBin);

  const extra = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--amb' || argv[i] === '--amb-haproxy') {
      const [name, rest] = argv[i + 1].split(/=(.*)/s);
      const [spec, nodeOpt] = rest.split('^');
      const [nodeArgs, bin] = spec.split('@');
      defs[name] = ambassador(name, bin ? resolve(root, bin) : ambBin, nodeArgs, nodeOpt || nodeBin,
        argv[i] === '--amb-haproxy' ? ['--data-plane', 'haproxy'] : []);
      node[name] = versionOf(nodeOpt || nodeBin);
      extra.push(name);
    } else if (argv[i] === '--variant') {
      const [name, rest] = argv[i + 1].split(/=(.*)/s);
      const [spec, nodeOpt] = rest.split('^');
      const [file, ...args] = spec.split(' ').filter(Boolean);
      node[name] = versionOf(nodeOpt || nodeBin);
      defs[name] = async () => {
        const p = ports();
        const proc = start(name, nodeOpt || nodeBin, [
          ...nodeArgsAll,
          resolve(root, file), ...args,
          '--listen', `${p.redis}=127.0.0.1:${redisPort}`, '--listen', `${p.bulk}=127.0.0.1:${bulkPort}`,
        ]);
        await ready(proc, p);
        return { pids: [proc.pid], ...p, stop: () => proc.stop() };
      };
      extra.push(name);
    }
  }
  return { defs, names: ['direct', 'haproxy', 'socat', 'ambassador', 'amb-haproxy', ...extra], node };
}

function fail(err, proc) {
  throw new Error(`${err.message}\n${proc.out()}`);
}
