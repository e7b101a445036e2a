import type { Argv, ArgumentsCamelCase } from 'yargs';
import { Ambassador } from '../ambassador/ambassador.js';
import { buildConfig, type Config, type RawOptions } from '../config/config.js';
import { ConfigError } from '../config/specs.js';
import { createLogger } from '../logging/logger.js';
import { fail } from './fail.js';

/** Options that may also come from AMBASSADOR_<NAME> environment variables. */
export const RUN_OPTION_NAMES = [
  'advertise', 'connect', 'static', 'srv', 'interface', 'exclude-interface', 'hostname', 'ipv6', 'ttl', 'dns-server', 'tls-cert', 'tls-key', 'tls-ca',
  'health-interval', 'health-timeout', 'connect-timeout', 'race-delay', 'probe-port', 'idle-timeout', 'wait-for-endpoint', 'drain-timeout',
  'keep-connections', 'trusted-lan', 'admin', 'log-level', 'log-format', 'check', 'exit-when-stranded', 'heap',
  'data-plane', 'haproxy', 'haproxy-slots',
  'registry', 'mdns', 'registry-address',
];

/** Those of RUN_OPTION_NAMES that are booleans (their variables take yes/no, on/off, 1/0 too). */
export const RUN_BOOLEAN_OPTIONS = ['ipv6', 'keep-connections', 'trusted-lan', 'check', 'exit-when-stranded', 'mdns'];

export function runOptions<T>(y: Argv<T>) {
  return y
    .option('advertise', {
      alias: 'a', type: 'string', array: true, group: 'Services:',
      describe: 'announce NAME=[HOST:]PORT[,priority=N,weight=N,instance=LABEL,subtype=S,relay-port=N,max-connections=N,check=tcp|redis,txt.KEY=VALUE] as _NAME._tcp.local while it accepts connections (check=redis: while it answers PING)',
    })
    .option('connect', {
      alias: 'c', type: 'string', array: true, group: 'Services:',
      describe: 'listen on NAME=[BIND:]PORT[,balance=round-robin|least-conn|random|srv,where.KEY=VALUE,auth-file=FILE,db=N,protocol=redis|postgres,server-tls=off|prefer|require,server-verify=full|ca|none,server-ca=FILE,server-name=NAME,tls-name=NAME,check=tcp|redis|none,max-connections=N,max-pending=N,max-per-endpoint=N] (default bind 127.0.0.1) and forward to a peer announcing NAME; auth-file holds credentials (\'password\' or \'user password\') the ambassador logs in with on every upstream connection: Redis AUTH, or with protocol=postgres the PostgreSQL login (SCRAM-SHA-256, MD5); server-* is TLS to the PostgreSQL server (verified by default); check= is how endpoints with no ambassador behind them are checked; past a max-… limit a client is refused at once',
    })
    .option('static', { type: 'string', array: true, group: 'Services:', describe: 'fixed endpoints NAME=HOST:PORT[+HOST:PORT…] for a --connect NAME (no multicast)' })
    .option('srv', { type: 'string', array: true, group: 'Services:', describe: 'endpoints from unicast DNS SRV NAME=_svc._tcp.domain (relative names use the search list of /etc/resolv.conf), re-resolved as TTLs run out' })
    .option('registry', {
      type: 'string', group: 'Registry:',
      describe: 'also register every --advertise in, and find every --connect through, etcd or ZooKeeper: etcd://HOST:PORT[,HOST:PORT…]/PREFIX, etcds://… (TLS), zk://HOST:PORT[,…]/PREFIX; options ?ttl=10s&auth-file=FILE&ca=FILE&cert=FILE&key=FILE (see README)',
    })
    .option('registry-address', { type: 'string', array: true, group: 'Registry:', describe: 'address others should dial to reach this host, as registered (NAT, several NICs, containers); default: the addresses announced over mDNS, loopback never' })
    .option('mdns', { type: 'boolean', group: 'Registry:', default: true, describe: 'use mDNS (--no-mdns where multicast is useless: only --registry, --static, --srv)' })
    .option('interface', { alias: 'i', type: 'string', array: true, group: 'mDNS:', describe: 'mDNS interface by name, address or glob (eth0, 192.168.7.2, \'wl*\'; repeatable); default: every up multicast interface. One that does not exist yet is waited for' })
    .option('exclude-interface', { type: 'string', array: true, group: 'mDNS:', describe: 'never use these interfaces for mDNS: names, addresses or globs (\'docker*\', \'veth*\'; repeatable)' })
    .option('hostname', { type: 'string', group: 'mDNS:', describe: 'host label to announce as HOSTNAME.local (default: this host\'s name)' })
    .option('ipv6', { type: 'boolean', group: 'mDNS:', default: true, describe: 'also speak mDNS over IPv6 (ff02::fb) where an interface has IPv6; --no-ipv6 to disable' })
    .option('ttl', { type: 'string', group: 'mDNS:', describe: 'TTL in seconds for every published record (default, as RFC 6762 §10 and Avahi: 120 for A/AAAA/SRV, 4500 for PTR/TXT)' })
    .option('dns-server', { type: 'string', array: true, group: 'Services:', describe: 'DNS server ADDRESS[:PORT] or [IPV6]:PORT for --srv, repeatable: tried in order, failing over (default: the nameservers of /etc/resolv.conf)' })
    .option('tls-cert', { type: 'string', group: 'TLS:', describe: 'certificate (PEM) for mutual TLS 1.3 between ambassadors (advertised services are then relayed over TLS only, TXT tls=1); reloaded when it changes' })
    .option('tls-key', { type: 'string', group: 'TLS:', describe: 'private key (PEM) for --tls-cert' })
    .option('tls-ca', { type: 'string', group: 'TLS:', describe: 'CA (PEM) that signs every ambassador\'s certificate' })
    .option('trusted-lan', {
      type: 'boolean', group: 'TLS:', default: false,
      describe: 'without TLS, send auth-file credentials to ANY host that announces the service over mDNS (anyone on the LAN can announce any name); only for a LAN you trust',
    })
    .option('health-interval', { type: 'string', group: 'Health:', default: 500, describe: 'ms between host probes of peer ambassadors, and between checks of advertised targets and of endpoints with no ambassador behind them' })
    .option('health-timeout', { type: 'string', group: 'Health:', default: 500, describe: 'ms before a health check (connect, or PING with check=redis) counts as failed' })
    .option('connect-timeout', { type: 'string', group: 'Health:', default: 3000, describe: 'ms one connect attempt to an endpoint may take (it is raced by another after --race-delay)' })
    .option('race-delay', { type: 'string', group: 'Health:', default: 250, describe: 'ms after which a connect still pending is raced by a second attempt (the next endpoint, or the same one again); the first to complete carries the client' })
    .option('probe-port', { type: 'string', group: 'Health:', describe: 'UDP port answering host probes from connecting ambassadors, announced in TXT hostprobe= (default: any free port)' })
    .option('idle-timeout', { type: 'string', group: 'Health:', default: 0, describe: 'ms without traffic either way after which a proxied connection is closed (0 = never)' })
    .option('wait-for-endpoint', { type: 'string', group: 'Health:', default: 5000, describe: 'ms a client waits for an endpoint to appear before it is closed' })
    .option('drain-timeout', { type: 'string', group: 'Health:', default: 10000, describe: 'ms open connections may take to finish on shutdown' })
    .option('keep-connections', { type: 'boolean', group: 'Health:', default: false, describe: 'keep open connections when their endpoint disappears (default: close them)' })
    .option('data-plane', {
      type: 'string', group: 'Data plane:', default: 'node', choices: ['node', 'haproxy'],
      describe: 'what carries the bytes of --connect listeners: node (embedded) or haproxy (a local HAProxy 2.6+ as a child, driven over its runtime API: the ambassador still discovers and judges endpoints); listeners HAProxy cannot serve (auth-file, protocol=, --tls-*) stay on node, and the log says so',
    })
    .option('haproxy', { type: 'string', group: 'Data plane:', describe: 'the HAProxy program for --data-plane haproxy (default: haproxy on PATH)' })
    .option('haproxy-slots', { type: 'string', group: 'Data plane:', describe: 'server slots per HAProxy backend at start (default 16); more replicas than slots cost one seamless reload (connections kept)' })
    .option('exit-when-stranded', {
      type: 'boolean', group: 'Operations:', default: false,
      describe: 'for a sidecar sharing a container\'s network namespace: once that namespace lost every interface and the container is up again in a new one, exit with status 75 so the restart policy re-attaches this one (on in the image)',
    })
    .option('admin', { type: 'string', group: 'Operations:', describe: '[HOST:]PORT for HTTP: the status page at /, /healthz, /peers and /metrics (default host 127.0.0.1)' })
    .option('log-level', { type: 'string', group: 'Operations:', default: 'info', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] })
    .option('log-format', { type: 'string', group: 'Operations:', choices: ['json', 'pretty'], describe: 'default: pretty on a terminal, json otherwise' })
    .option('heap', {
      type: 'string', group: 'Operations:', choices: ['fast', 'lean'],
      defaultDescription: 'fast; lean with --data-plane haproxy',
      describe: 'V8 heap: fast (a young generation up to 4 MB: ~15 % more new connections/s than lean, +4 MB idle) or lean (the smallest footprint); read before the program loads (README, "Footprint")',
    })
    .option('check', { type: 'boolean', group: 'Operations:', default: false, describe: 'validate the configuration and exit' });
}

export async function runCommand(argv: ArgumentsCamelCase<Record<string, unknown>>, environmentNotices: readonly string[] = []): Promise<void> {
  let config;
  try {
    config = buildConfig(argv as unknown as RawOptions);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const warnings = [...environmentNotices, ...config.warnings];
  if (argv.check) {
    await check(config, warnings);
    return;
  }
  const log = createLogger(config.logLevel, config.logFormat);
  for (const w of warnings) log.warn(w);
  const amb = new Ambassador(config, log);

  let stopAsked: { signal: NodeJS.Signals; at: number } | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopAsked) {
      // One request delivered twice (`timeout` signals the process, then its group; a wrapper
      // forwards the Ctrl-C the terminal sent to the whole group) is not a second request.
      if (sig === stopAsked.signal && Date.now() - stopAsked.at < SAME_REQUEST_MS) return;
      log.warn({ signal: sig }, 'second signal: exiting now');
      process.exit(1);
    }
    stopAsked = { signal: sig, at: Date.now() };
    log.info({ signal: sig, drainMs: config.drainTimeout }, 'shutting down: goodbyes, stop accepting, drain');
    amb.stop().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err) => {
        log.error({ err: String(err) }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A reload, as daemons do (HAProxy, nginx, Avahi), not Node's default (exit 129 without a word).
  process.on('SIGHUP', () => {
    if (stopAsked) return;
    log.info({ signal: 'SIGHUP' }, 'reloading: re-reading TLS and credentials files, looking up --srv and --static names again');
    amb.reload().then(
      (report) => log.info({ signal: 'SIGHUP', ...report }, 'reloaded'),
      (err) => log.error({ signal: 'SIGHUP', err: String(err) }, 'reload failed'),
    );
  });
  if (config.exitWhenStranded) {
    amb.stranded.once('owner-back', (address) => {
      log.warn({ address }, 'stranded: the container whose network this was is up again in a new namespace; exiting (75) so the restart policy re-attaches this one to it');
      void amb.stop().finally(() => process.exit(75));
    });
  }

  // Run until a signal, even with nothing open yet (no network interface to listen on).
  setInterval(() => {}, 1 << 30);
  try {
    await amb.start();
  } catch (err) {
    // Stopped by a signal while starting: the signal's handler ends the process (exit 0).
    if (stopAsked) return;
    await amb.stop().catch(() => {});
    if (err instanceof ConfigError) fail(err.message);
    fail((err as Error).message, 1);
  }
}

/** A stop signal repeated within this long is the same request delivered twice, not a second one. */
const SAME_REQUEST_MS = 250;

/**
 * `--check`: everything `run` would refuse, found before `run` would send its first packet —
 * the same preparation (TLS and credentials files read and parsed, every port bound), released
 * again. Warnings go to stderr, the verdict to stdout.
 */
async function check(config: Config, warnings: string[]): Promise<void> {
  const amb = new Ambassador(config, createLogger('silent'));
  try {
    await amb.prepare({ check: true });
  } catch (err) {
    await amb.stop().catch(() => {});
    if (err instanceof ConfigError) fail(err.message);
    fail((err as Error).message, 1);
  }
  const interfaces = amb.engine?.selected.peek().map((l) => `${l.name} (${[...l.ipv4, ...l.ipv6].map((a) => a.address).join(' ')})`);
  // Several of one service: each under its own instance name, and the user should see which.
  const instanceOf = new Map(amb.advertisements.map((a) => [a.spec, a.plannedInstance]));
  const several = (name: string) => config.advertise.filter((a) => a.name === name).length > 1;
  await amb.stop();
  if (amb.interfaceProblem) warnings = [...warnings, `mDNS on this host now: ${amb.interfaceProblem}`];
  for (const w of warnings) process.stderr.write(`ambassador: warning: ${w}\n`);
  const what = [
    ...config.advertise.map((a) => `advertise ${a.name}=${a.targetHost ? a.targetHost + ':' : ''}${a.port}${several(a.name) ? ` as '${instanceOf.get(a)}'` : ''}`),
    ...config.connect.map((c) => `connect ${c.name} on ${c.bind}:${c.port} (${c.balance})`),
    ...(config.registry ? [`registry ${config.registry.display}${config.mdns ? ' beside mDNS' : ' (no mDNS)'}`] : []),
    ...(interfaces?.length ? [`mDNS on ${interfaces.join(', ')}`] : []),
  ];
  process.stdout.write(`configuration OK: ${what.join('; ')}\n`);
  // Nothing may keep the process alive after a check (file watches, timers of the prepared parts).
  process.exit(0);
}
