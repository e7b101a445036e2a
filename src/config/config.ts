import type { HostPort } from '../base/address.js';
import type { LogFormat, LogLevel } from '../logging/logger.js';
import { InterfaceError, InterfaceSelection } from '../mdns/link/interfaces.js';
import { credentialExposure } from './credential-exposure.js';
import { type RegistryConfig, parseRegistryAddress, parseRegistryUrl } from './registry-url.js';
import {
  type AdvertiseSpec, type ConnectSpec, type SrvSpec, type StaticSpec, ConfigError,
  parseAdvertise, parseConnect, parseDnsServer, parseHostPort, parsePort, parseSrv, parseStatic, readable,
} from './specs.js';


export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** Everything `ambassador run` needs, validated. */
export interface Config {
  advertise: AdvertiseSpec[];
  connect: ConnectSpec[];
  static: StaticSpec[];
  srv: SrvSpec[];
  /** mDNS interfaces by name, address or glob; empty = all up multicast interfaces. */
  interfaces: string[];
  /** Interfaces never used for mDNS (names, addresses, globs). */
  excludeInterfaces: string[];
  hostname?: string;
  /** Also run mDNS over IPv6 where interfaces have it. */
  ipv6: boolean;
  /** Record TTL override (s) for all published records; undefined = Avahi defaults. */
  ttl?: number;
  tls?: TlsFiles;
  admin?: { host: string; port: number };
  logLevel: LogLevel;
  logFormat?: LogFormat;
  /** Active health checks and host probes (ms). */
  healthInterval: number;
  healthTimeout: number;
  /** Bound on one connect attempt (ms); a slower one is raced by another after raceDelay. */
  connectTimeout: number;
  /** A connect still pending after this long (ms) is raced by a second attempt. */
  raceDelay: number;
  /** UDP port answering host probes when advertising (0 = any free port). */
  probePort: number;
  /** Close a proxied connection after this long without traffic either way (ms); 0 = never. */
  idleTimeout: number;
  /** How long a client waits for an endpoint to appear when there is none (ms). */
  noEndpointWait: number;
  /** Bounded drain of open connections on shutdown (ms). */
  drainTimeout: number;
  /** Keep connections to an endpoint that went away (default: close them). */
  keepConnections: boolean;
  /** DNS servers for --srv, in failover order; empty = the nameservers of /etc/resolv.conf. */
  dnsServers: HostPort[];
  /**
   * The operator trusts every host on the LAN: injected credentials may go to any peer that
   * announces the service over mDNS (without this, only to mutual-TLS peers or named endpoints).
   */
  trustedLan: boolean;
  /** Things given that cannot have the effect the user meant (logged at start, printed by --check). */
  warnings: string[];
  /** --registry: etcd or ZooKeeper, beside mDNS (or instead of it, with --no-mdns). */
  registry?: RegistryConfig;
  /** mDNS on (default); --no-mdns where multicast is useless: only the registry, --static, --srv. */
  mdns: boolean;
  /** --registry-address: what others should dial to reach this host (default: the mDNS addresses). */
  registryAddresses: string[];
  /** Exit (status 75) when stranded and the namespace's owner is back (see ambassador/stranded.ts). */
  exitWhenStranded: boolean;
}

/** Raw option values as yargs hands them over (strings from flags or environment). */
export interface RawOptions {
  advertise?: string[];
  connect?: string[];
  static?: string[];
  srv?: string[];
  interface?: string[];
  excludeInterface?: string[];
  hostname?: string;
  ipv6?: boolean;
  ttl?: number | string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  admin?: string;
  logLevel?: string;
  logFormat?: string;
  healthInterval?: number | string;
  healthTimeout?: number | string;
  connectTimeout?: number | string;
  raceDelay?: number | string;
  probePort?: number | string;
  idleTimeout?: number | string;
  waitForEndpoint?: number | string;
  drainTimeout?: number | string;
  keepConnections?: boolean;
  dnsServer?: string[];
  trustedLan?: boolean;
  exitWhenStranded?: boolean;
  registry?: string;
  mdns?: boolean;
  registryAddress?: string[];
}

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * Repeatable options may arrive as one environment variable (AMBASSADOR_ADVERTISE="a=1 b=2"):
 * entries are separated by ';', newlines, or whitespace when every piece starts like a spec
 * (`NAME=`), so `instance=My Redis` keeps its space.
 */
export function splitList(values: readonly unknown[] | unknown): string[] {
  const arr = Array.isArray(values) ? values : values === undefined ? [] : [values];
  return arr
    .flatMap((v) => String(v).split(/[;\n]+/))
    .flatMap((v) => {
      const parts = v.trim().split(/\s+/);
      return parts.every((p) => /^[A-Za-z0-9_.-]+=/.test(p)) ? parts : [v.trim()];
    })
    .filter((s) => s.length > 0);
}


/**
 * A duration flag in milliseconds: a number, or a number with a unit (`500ms`, `2s`, `1.5m`),
 * as HAProxy and Envoy users write them. yargs hands over strings (so 'abc' is not already NaN).
 */
export function parseDuration(v: number | string | undefined, def: number, what: string, opts: { allowZero?: boolean } = {}): number {
  if (v === undefined) return def;
  const text = String(v).trim();
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(text);
  if (!m) throw new ConfigError(`${what}: '${text}' is not a duration (milliseconds, or with a unit: 500ms, 2s, 1m)`);
  const ms = Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1);
  if (ms === 0 && opts.allowZero) return 0;
  if (!(ms >= 1)) throw new ConfigError(`${what}: '${text}' must be at least 1 ms${opts.allowZero ? ' (or 0 for never)' : ''}`);
  return Math.round(ms);
}

export function buildConfig(raw: RawOptions): Config {
  const advertise = splitList(raw.advertise).map(parseAdvertise);
  const connect = splitList(raw.connect).map(parseConnect);
  const statics = splitList(raw.static).map(parseStatic);
  const srv = splitList(raw.srv).map(parseSrv);

  if (advertise.length === 0 && connect.length === 0) {
    throw new ConfigError('nothing to do: give at least one --advertise NAME=[HOST:]PORT or --connect NAME=[BIND:]PORT');
  }

  const listeners = new Map<string, string>();
  for (const c of connect) {
    const key = `${c.bind}:${c.port}`;
    const prev = listeners.get(key);
    if (prev) throw new ConfigError(`--connect ${c.raw}: ${key} is already used by --connect ${prev}`);
    listeners.set(key, c.raw);
    if (c.authFile) readable(c.authFile, `--connect ${c.raw}: auth-file`);
    if (c.serverCa) readable(c.serverCa, `--connect ${c.raw}: server-ca`);
  }
  const names = new Set(connect.map((c) => c.name));
  for (const s of [...statics, ...srv]) {
    if (!names.has(s.name)) throw new ConfigError(`${'endpoints' in s ? '--static' : '--srv'} ${s.raw}: no --connect ${s.name}=… uses it`);
  }
  const advertised = new Set<string>();
  const instances = new Map<string, AdvertiseSpec>();
  const defaultNamed = new Set<string>();
  for (const a of advertise) {
    const key = `${a.name}|${a.instance ?? ''}|${a.targetHost ?? ''}:${a.port}`;
    if (advertised.has(key)) throw new ConfigError(`--advertise ${a.raw}: given twice`);
    advertised.add(key);
    if (a.instance !== undefined) {
      const named = `${a.name}|${a.instance.toLowerCase()}`;
      const prev = instances.get(named);
      if (prev) throw new ConfigError(`--advertise ${a.raw}: instance '${a.instance}' is already announced by --advertise ${prev.raw} (one instance name, one service: give each its own instance=)`);
      instances.set(named, a);
    } else if (defaultNamed.has(a.name)) {
      a.instanceByPort = true;
    } else {
      defaultNamed.add(a.name);
    }
  }

  let tls: TlsFiles | undefined;
  if (raw.tlsCert || raw.tlsKey || raw.tlsCa) {
    if (!raw.tlsCert || !raw.tlsKey || !raw.tlsCa) {
      throw new ConfigError('mutual TLS needs all three of --tls-cert, --tls-key and --tls-ca');
    }
    tls = {
      cert: readable(raw.tlsCert, '--tls-cert'),
      key: readable(raw.tlsKey, '--tls-key'),
      ca: readable(raw.tlsCa, '--tls-ca'),
    };
  }

  const warnings: string[] = [];
  for (const c of connect) {
    if (c.raw.includes('failback=') && c.balance !== 'srv') {
      warnings.push(`--connect ${c.raw}: failback has no effect without balance=srv (no endpoint is preferred over another)`);
    }
    if (c.tlsName !== undefined && tls === undefined) {
      warnings.push(`--connect ${c.raw}: tls-name has no effect without --tls-cert/--tls-key/--tls-ca (endpoints are reached in plain TCP)`);
    }
  }
  if (raw.trustedLan && !connect.some((c) => c.authFile !== undefined)) {
    warnings.push('--trusted-lan has no effect: no --connect injects credentials (auth-file=)');
  }
  if (raw.probePort !== undefined && raw.probePort !== '' && advertise.length === 0) {
    warnings.push('--probe-port has no effect without --advertise (host probes are answered by an advertising ambassador)');
  }
  if (splitList(raw.dnsServer).length > 0 && srv.length === 0) {
    warnings.push('--dns-server has no effect without --srv (it is the DNS server for SRV lookups only; mDNS and --static names do not use it)');
  }

  const registry = raw.registry !== undefined && String(raw.registry).trim() !== ''
    ? parseRegistryUrl(String(raw.registry), (v, what) => parseDuration(v, 0, what)) : undefined;
  const mdns = raw.mdns !== false;
  const registryAddresses = splitList(raw.registryAddress).flatMap((v) => v.split(/[\s,]+/)).filter(Boolean).map(parseRegistryAddress);
  if (registryAddresses.length > 0 && !registry) throw new ConfigError('--registry-address has nothing to say without --registry URL');
  const fixedNames = new Set([...statics, ...srv].map((s) => s.name));
  if (!mdns && !registry) {
    if (advertise.length > 0) throw new ConfigError(`--no-mdns: --advertise ${advertise[0]!.raw} could not be announced anywhere: give --registry URL`);
    const lost = connect.find((c) => !fixedNames.has(c.name));
    if (lost) throw new ConfigError(`--no-mdns: --connect ${lost.raw} would find no endpoint: give --registry URL, or --static/--srv ${lost.name}=…`);
  }

  // Credentials only go where identity is proven or was named; checked here so --check says it too.
  // An authenticated registry names its endpoints as the operator would (mDNS beside it does not).
  const registryNamed = !!registry?.authFile || !!registry?.certFile;
  for (const c of connect) {
    credentialExposure(c, { tls: tls !== undefined, named: fixedNames.has(c.name) || (registryNamed && !mdns), trustedLan: !!raw.trustedLan });
  }

  let admin: Config['admin'];
  if (raw.admin !== undefined && raw.admin !== '') {
    const hp = parseHostPort(String(raw.admin), '--admin');
    admin = { host: hp.host ?? '127.0.0.1', port: hp.port };
    const key = `${admin.host}:${admin.port}`;
    if (listeners.has(key)) throw new ConfigError(`--admin ${raw.admin}: ${key} is already used by --connect ${listeners.get(key)}`);
  }

  const logLevel = (raw.logLevel ?? 'info') as LogLevel;
  if (!LEVELS.includes(logLevel)) throw new ConfigError(`--log-level: '${raw.logLevel}' is not one of ${LEVELS.join(', ')}`);
  const logFormat = raw.logFormat as LogFormat | undefined;
  if (logFormat !== undefined && logFormat !== 'json' && logFormat !== 'pretty') {
    throw new ConfigError(`--log-format: '${raw.logFormat}' is not json or pretty`);
  }
  let ttl: number | undefined;
  if (raw.ttl !== undefined) {
    ttl = /^\d+$/.test(String(raw.ttl).trim()) ? Number(raw.ttl) : NaN;
    if (!(ttl >= 1 && ttl <= 86400)) throw new ConfigError(`--ttl: '${String(raw.ttl).trim()}' must be whole seconds between 1 and 86400`);
  }
  if (raw.hostname !== undefined && !/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(raw.hostname)) {
    throw new ConfigError(`--hostname: '${raw.hostname}' is not a single DNS label`);
  }

  const interfaces = splitList(raw.interface);
  const excludeInterfaces = splitList(raw.excludeInterface);
  try {
    // Only a malformed value is an error: an interface that is not there yet is waited for.
    InterfaceSelection.parse(interfaces, excludeInterfaces);
  } catch (err) {
    if (err instanceof InterfaceError) throw new ConfigError(err.message);
    throw err;
  }

  return {
    advertise,
    connect,
    static: statics,
    srv,
    interfaces,
    excludeInterfaces,
    hostname: raw.hostname,
    ipv6: raw.ipv6 !== false,
    ttl,
    tls,
    admin,
    logLevel,
    logFormat,
    healthInterval: parseDuration(raw.healthInterval, 500, '--health-interval'),
    healthTimeout: parseDuration(raw.healthTimeout, 500, '--health-timeout'),
    connectTimeout: parseDuration(raw.connectTimeout, 3000, '--connect-timeout'),
    raceDelay: parseDuration(raw.raceDelay, 250, '--race-delay'),
    probePort: raw.probePort === undefined || raw.probePort === '' ? 0 : parsePort(String(raw.probePort), '--probe-port', true),
    idleTimeout: parseDuration(raw.idleTimeout, 0, '--idle-timeout', { allowZero: true }),
    noEndpointWait: parseDuration(raw.waitForEndpoint, 5000, '--wait-for-endpoint'),
    drainTimeout: parseDuration(raw.drainTimeout, 10000, '--drain-timeout'),
    keepConnections: !!raw.keepConnections,
    // also `AMBASSADOR_DNS_SERVER="10.0.0.1 10.0.0.2:5353"` (addresses do not look like NAME=…)
    dnsServers: splitList(raw.dnsServer).flatMap((v) => v.split(/[\s,]+/)).filter(Boolean).map(parseDnsServer),
    trustedLan: !!raw.trustedLan,
    warnings,
    exitWhenStranded: !!raw.exitWhenStranded,
    registry,
    mdns,
    registryAddresses,
  };
}

export { ConfigError };
