// A real avahi-daemon inside a lab host (see netns.ts), for interop tests.
//
// Recipe (each piece checked on Debian 12, avahi 0.8):
//  * a private system D-Bus per host: `dbus-daemon --config-file=DIR/dbus.conf --nofork
//    --nopidfile --print-address`, listening on a path socket DIR/system_bus_socket (a path
//    socket, unlike an abstract one, is reachable from any network namespace). Everyone who
//    talks to that avahi gets DBUS_SYSTEM_BUS_ADDRESS=unix:path=DIR/system_bus_socket, which
//    libdbus honours for the system bus: avahi-daemon, avahi-browse, avahi-publish-*.
//  * avahi-daemon keeps its pid file and socket in the compiled-in /run/avahi-daemon, so each
//    one runs in a private mount namespace with a tmpfs on /run (and DIR/services bound over
//    /etc/avahi/services, so the machine's static services are not published, only the ones
//    given in AvahiOptions.services):
//      ip netns exec NS unshare -m --propagation private -- sh -c \
//        'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/avahi-daemon &&
//         mount --bind DIR/services /etc/avahi/services && exec avahi-daemon --no-drop-root
//         --no-chroot --no-rlimits -f DIR/avahi-daemon.conf'
//    Every layer execs the next, so the tracked PID is avahi-daemon's own. It logs to stderr;
//    "Server startup complete" means it is up.
//  * avahi-daemon.conf: unique host-name, use-ipv4=yes, use-ipv6=no, allow-interfaces=<lab veth>,
//    publish-workstation=no, publish-hinfo=no, enable-dbus=yes, rate limit off, wide-area off.
//    Avahi ignores loopback; the lab veth is multicast-capable, which is all it needs.

import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { canUseNetns, haveCommand, waitFor, type Host, type LabProcess, type ExecResult } from './netns.js';

/** Why avahi interop tests must skip, or undefined. */
export function canUseAvahi(): string | undefined {
  const r = canUseNetns();
  if (r) return r;
  for (const cmd of ['avahi-daemon', 'dbus-daemon', 'avahi-browse', 'avahi-publish-service', 'unshare']) {
    if (!haveCommand(cmd)) return `${cmd} is not installed (apt-get install avahi-daemon avahi-utils dbus)`;
  }
  return undefined;
}

export interface AvahiOptions {
  /** mDNS host name (without .local); default `avahi-${host.name}`. */
  hostName?: string;
  /** Interfaces avahi may use; default the host's lab interface. */
  interfaces?: string[];
  /** Extra lines for the [server] section, e.g. { 'cache-entries-max': '0' }. */
  server?: Record<string, string>;
  /** Extra lines for the [publish] section. */
  publish?: Record<string, string>;
  /**
   * Static service files (file name → XML, as in /etc/avahi/services) the daemon publishes from
   * its start; default none (an empty directory is mounted over /etc/avahi/services).
   */
  services?: Record<string, string>;
  timeoutMs?: number;
}

export class AvahiDaemon {
  constructor(
    readonly host: Host,
    readonly hostName: string,
    readonly dir: string,
    readonly busAddress: string,
    readonly dbus: LabProcess,
    readonly daemon: LabProcess,
  ) {}

  /** Environment that points D-Bus clients (avahi-browse, …) at this daemon's bus. */
  get env(): NodeJS.ProcessEnv {
    return { DBUS_SYSTEM_BUS_ADDRESS: this.busAddress };
  }

  /** Runs an avahi client tool on the host, connected to this daemon. */
  exec(cmd: string, args: string[], timeoutMs = 15_000): Promise<ExecResult> {
    return this.host.exec(cmd, args, { env: this.env, timeoutMs });
  }

  spawn(cmd: string, args: string[]): LabProcess {
    return this.host.spawn(cmd, args, { env: this.env });
  }

  /** Stops avahi-daemon (it sends goodbyes), then its D-Bus. */
  async stop(graceMs = 3000): Promise<void> {
    await this.daemon.stop(graceMs);
    await this.dbus.stop(graceMs);
    daemons.delete(this.host);
  }
}

const daemons = new WeakMap<Host, AvahiDaemon>();
let avahiSeq = 0;

/** The avahi started on `host` by startAvahi, if any. */
export function avahiOn(host: Host): AvahiDaemon | undefined {
  return daemons.get(host);
}

function dbusConfig(socket: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
`;
}

function section(name: string, kv: Record<string, string>): string {
  return `[${name}]\n` + Object.entries(kv).map(([k, v]) => `${k}=${v}\n`).join('');
}

/** Starts a private D-Bus and a real avahi-daemon inside `host`; resolves once it is up. */
export async function startAvahi(host: Host, opts: AvahiOptions = {}): Promise<AvahiDaemon> {
  const existing = daemons.get(host);
  if (existing) throw new Error(`avahi already runs on ${host.name}`);
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const dir = join(host.dir, `avahi-${++avahiSeq}`);
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, 'system_bus_socket');
  const busAddress = `unix:path=${socket}`;
  const hostName = opts.hostName ?? `avahi-${host.name}`;
  writeFileSync(join(dir, 'dbus.conf'), dbusConfig(socket));
  const conf = join(dir, 'avahi-daemon.conf');
  writeFileSync(conf, [
    section('server', {
      'host-name': hostName,
      'domain-name': 'local',
      'use-ipv4': 'yes',
      'use-ipv6': 'no',
      'allow-interfaces': (opts.interfaces ?? [host.ifname]).join(','),
      'enable-dbus': 'yes',
      'ratelimit-interval-usec': '0',
      'ratelimit-burst': '0',
      ...opts.server,
    }),
    section('wide-area', { 'enable-wide-area': 'no' }),
    section('publish', { 'publish-workstation': 'no', 'publish-hinfo': 'no', ...opts.publish }),
    section('reflector', { 'enable-reflector': 'no' }),
  ].join('\n'));

  const dbus = host.spawn('dbus-daemon', ['--config-file=' + join(dir, 'dbus.conf'), '--nofork', '--nopidfile', '--print-address'],
    { name: `[${host.name}] dbus-daemon` });
  try {
    await dbus.waitForLine(/^unix:path=/, { stream: 'stdout', timeoutMs });
  } catch (e) {
    await dbus.stop(500);
    throw e;
  }
  const servicesDir = join(dir, 'services');
  mkdirSync(servicesDir, { recursive: true });
  for (const [file, xml] of Object.entries(opts.services ?? {})) {
    if (!/^[\w.-]+\.service$/.test(file)) throw new Error(`bad avahi service file name ${JSON.stringify(file)}`);
    writeFileSync(join(servicesDir, file), xml);
  }
  const script = 'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/avahi-daemon && ' +
    'mount --bind "$1" /etc/avahi/services && ' +
    'exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f "$0"';
  const daemon = host.spawn('unshare', ['-m', '--propagation', 'private', '--', 'sh', '-c', script, conf, servicesDir],
    { env: { DBUS_SYSTEM_BUS_ADDRESS: busAddress }, name: `[${host.name}] avahi-daemon` });
  const avahi = new AvahiDaemon(host, hostName, dir, busAddress, dbus, daemon);
  try {
    await daemon.waitForLine(/Server startup complete/, { timeoutMs });
  } catch (e) {
    await daemon.stop(500);
    await dbus.stop(500);
    throw e;
  }
  daemons.set(host, avahi);
  host.lab.onDestroy(() => avahi.stop(2000));
  return avahi;
}

function daemonFor(target: Host | AvahiDaemon): AvahiDaemon {
  if (target instanceof AvahiDaemon) return target;
  const d = daemons.get(target);
  if (!d) throw new Error(`no avahi-daemon on ${target.name}: call startAvahi(host) first`);
  return d;
}

export interface AvahiRow {
  /** '+' new, '-' removed, '=' resolved. */
  event: '+' | '-' | '=';
  iface: string;
  protocol: string;
  name: string;
  type: string;
  domain: string;
  /** Only on resolved ('=') rows. */
  hostname?: string;
  address?: string;
  port?: number;
  txt?: string[];
}

/** Splits on `sep` outside backslash escapes (avahi escapes ';' and '\\' in parseable output). */
function splitEscaped(line: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      cur += c + line[i + 1];
      i++;
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Decodes avahi's label escapes: \DDD (decimal byte) and \X (literal X). */
export function unescapeAvahi(s: string): string {
  const bytes: number[] = [];
  const buf = Buffer.from(s, 'utf8');
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i]!;
    if (c === 0x5c && i + 1 < buf.length) {
      const d = buf.subarray(i + 1, i + 4).toString('latin1');
      if (/^\d{3}$/.test(d)) {
        bytes.push(Number(d));
        i += 3;
      } else {
        bytes.push(buf[i + 1]!);
        i += 1;
      }
    } else bytes.push(c);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Parses the TXT field of `avahi-browse -p`: `"a=b" "c=d"` with backslash escapes. */
export function parseAvahiTxt(field: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < field.length) {
    if (field[i] !== '"') { i++; continue; }
    i++;
    const bytes: number[] = [];
    while (i < field.length && field[i] !== '"') {
      if (field[i] === '\\' && i + 1 < field.length) {
        const d = field.slice(i + 1, i + 4);
        if (/^\d{3}$/.test(d)) { bytes.push(Number(d)); i += 4; continue; }
        bytes.push(...Buffer.from(field[i + 1]!, 'utf8'));
        i += 2;
        continue;
      }
      bytes.push(...Buffer.from(field[i]!, 'utf8'));
      i++;
    }
    i++;
    out.push(Buffer.from(bytes).toString('utf8'));
  }
  return out;
}

/** Parses `avahi-browse -p` output (one record per line). */
export function parseAvahiBrowse(stdout: string): AvahiRow[] {
  const rows: AvahiRow[] = [];
  for (const line of stdout.split('\n')) {
    const f = splitEscaped(line.trimEnd(), ';');
    const event = f[0];
    if ((event !== '+' && event !== '-' && event !== '=') || f.length < 6) continue;
    const row: AvahiRow = {
      event, iface: f[1]!, protocol: f[2]!, name: unescapeAvahi(f[3]!), type: f[4]!, domain: f[5]!,
    };
    if (event === '=' && f.length >= 10) {
      row.hostname = unescapeAvahi(f[6]!);
      row.address = f[7]!;
      row.port = Number(f[8]);
      row.txt = parseAvahiTxt(f.slice(9).join(';'));
    }
    rows.push(row);
  }
  return rows;
}

export interface AvahiBrowseOptions {
  /** Resolve services (-r); default true. Without it only '+'/'-' rows come back. */
  resolve?: boolean;
  /** Keep '+' and '-' rows too; default: resolved rows only when resolving. */
  all?: boolean;
  /**
   * Browse again (avahi-browse -t ends at "all for now", possibly before a remote announcement
   * arrived) until this returns true or timeoutMs passes; then return the last rows.
   */
  until?: (rows: AvahiRow[]) => boolean;
  /** Overall time for `until` (default 15 s); each single browse is bounded at 10 s. */
  timeoutMs?: number;
}

/**
 * Runs `avahi-browse -rpt TYPE` (or `-a` when type is 'all') on `host` against its avahi-daemon
 * and returns the parsed rows.
 */
export async function avahiBrowse(target: Host | AvahiDaemon, type: string, opts: AvahiBrowseOptions = {}): Promise<AvahiRow[]> {
  const d = daemonFor(target);
  const resolve = opts.resolve ?? true;
  const args = ['-p', '-t', ...(resolve ? ['-r'] : []), ...(type === 'all' ? ['-a'] : [type])];
  const once = async (): Promise<AvahiRow[]> => {
    const r = await d.exec('avahi-browse', args, 10_000);
    if (r.code !== 0 && !r.timedOut) throw new Error(`avahi-browse ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
    const rows = parseAvahiBrowse(r.stdout);
    return opts.all || !resolve ? rows : rows.filter((x) => x.event === '=');
  };
  if (!opts.until) return once();
  let last: AvahiRow[] = [];
  try {
    await waitFor(async () => {
      last = await once();
      return opts.until!(last);
    }, { timeoutMs: opts.timeoutMs ?? 15_000, intervalMs: 200, message: `avahi-browse ${type} on ${d.host.name}` });
  } catch (e) {
    throw new Error(`${(e as Error).message}; last rows: ${JSON.stringify(last)}`);
  }
  return last;
}

export interface AvahiPublishOptions {
  subtypes?: string[];
  /** Host name the SRV points at (-H), default the daemon's own. */
  hostName?: string;
  domain?: string;
  timeoutMs?: number;
}

/**
 * Publishes a service with `avahi-publish-service` through `host`'s avahi-daemon; resolves once
 * avahi reports it established. Stop the returned process to withdraw it (avahi sends goodbyes).
 */
export async function avahiPublish(
  target: Host | AvahiDaemon, name: string, type: string, port: number, txt: string[] = [], opts: AvahiPublishOptions = {},
): Promise<LabProcess> {
  const d = daemonFor(target);
  const args: string[] = [];
  for (const s of opts.subtypes ?? []) args.push('--subtype', s);
  if (opts.hostName) args.push('-H', opts.hostName);
  if (opts.domain) args.push('-d', opts.domain);
  args.push(name, type, String(port), ...txt);
  const p = d.spawn('avahi-publish-service', args);
  try {
    await p.waitForLine(/Established under name/, { timeoutMs: opts.timeoutMs ?? 15_000 });
  } catch (e) {
    await p.stop(500);
    throw e;
  }
  return p;
}
