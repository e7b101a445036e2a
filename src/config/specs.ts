import { accessSync, constants } from 'node:fs';
import { isIP } from 'node:net';
import type { HostPort } from '../base/address.js';
import { BALANCER_NAMES as BALANCERS, type BalancerName } from '../cluster/balancer.js';
import { CHECK_KINDS, type CheckKind } from '../cluster/health-checker.js';
import { LIVENESS_TXT_KEY } from '../cluster/liveness-wire.js';
import {
  PROTOCOL_NAMES, SERVER_TLS_MODES, SERVER_VERIFY_MODES, type ServerTlsMode, type ServerVerifyMode,
} from '../proxy/handshakes/index.js';
import type { ListenerLimits } from '../proxy/limits.js';

/** A user-facing configuration problem: printed as one line, exit status 2. */
export class ConfigError extends Error {}

/** `path`, when this process may read it; else a ConfigError naming `what` and why. */
export function readable(path: string, what: string): string {
  try {
    accessSync(path, constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`${what}: cannot read '${path}' (${code === 'ENOENT' ? 'no such file' : code})`);
  }
  return path;
}

export interface AdvertiseSpec {
  /** Service name, e.g. `redis` → `_redis._tcp.local`. */
  name: string;
  /** Where the real service is; undefined = this host. */
  targetHost?: string;
  port: number;
  instance?: string;
  /**
   * Another --advertise of the same service before this one has the default instance name too:
   * this one's default is `NAME@HOST:PORT`, not `NAME@HOST` (two registrations under one name
   * would put two SRV records on one instance, and browsers would see one of them).
   */
  instanceByPort?: boolean;
  priority: number;
  weight: number;
  txt: Record<string, string>;
  subtypes: string[];
  /** Port of the relay listener when one is needed (0 = any free port). */
  relayPort: number;
  /** How the ambassador checks its target before and while announcing it. */
  check: CheckKind;
  /** Circuit breaker of the relay (max-connections=); undefined = the default. */
  maxConnections?: number;
  /** The flag as the user wrote it, for messages. */
  raw: string;
}

export interface ConnectSpec {
  name: string;
  bind: string;
  /**
   * No BIND given, or `localhost`: listen on both loopback addresses, 127.0.0.1 (bind) and ::1
   * where the host has it, so that `localhost` works whichever address a client tries first.
   */
  bothLoopbacks: boolean;
  port: number;
  balance: BalancerName;
  where: Record<string, string>;
  authFile?: string;
  db?: number;
  /** Protocol handshake (credentials injection, errors in the client's protocol); auth-file/db imply 'redis'. */
  protocol?: string;
  /** protocol=postgres: TLS to the server (server-tls=), its verification (server-verify=), CA file, name. */
  serverTls?: ServerTlsMode;
  serverVerify?: ServerVerifyMode;
  serverCa?: string;
  serverName?: string;
  /** With mutual TLS: the name the endpoint's certificate must carry (SAN DNS or CN). */
  tlsName?: string;
  /**
   * balance=srv: when a better-priority endpoint is back, connections held on worse ones close
   * at their first pause ('retire', the default) or stay where they are ('keep').
   */
  failback: 'retire' | 'keep';
  /**
   * Our own check of endpoints nobody else vouches for (no ambassador behind them: Avahi,
   * --static, --srv); 'none' leaves them to passive outlier detection.
   */
  check: CheckKind | 'none';
  /** Circuit breakers given (max-connections=, max-pending=, max-per-endpoint=); the others take their defaults. */
  limits: Partial<ListenerLimits>;
  raw: string;
}


export interface StaticSpec {
  name: string;
  endpoints: HostPort[];
  raw: string;
}

export interface SrvSpec {
  name: string;
  query: string;
  raw: string;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A service name (`redis`, `_redis._tcp`, `_redis._tcp.local` → `redis`) as RFC 6335 §5.1 allows
 * it: 1-15 letters, digits and hyphens, at least one letter, no hyphen first, last or twice in a
 * row. `subtype`: a DNS-SD subtype label instead (RFC 6763 §7.1: any label up to 63 bytes).
 */
export function parseServiceName(name: string, flag: string, opts: { subtype?: boolean } = {}): string {
  const n = name.trim().toLowerCase().replace(/^_/, '').replace(/\._tcp(\.local)?$/, '');
  const why = !LABEL.test(n) ? "letters, digits and '-', like 'redis'"
    : opts.subtype ? undefined
      : n.length > 15 ? 'at most 15 characters, RFC 6335'
        : !/[a-z]/.test(n) ? 'at least one letter, RFC 6335'
          : n.includes('--') ? "no '--', RFC 6335"
            : undefined;
  if (why) throw new ConfigError(`${flag}: '${name}' is not a ${opts.subtype ? 'subtype' : 'service name'} (${why})`);
  return n;
}

export function parsePort(value: string, what: string, allowZero = false): number {
  if (!/^\d+$/.test(value.trim())) throw new ConfigError(`${what}: '${value}' is not a port number`);
  const p = Number(value);
  if (p > 65535 || (p === 0 && !allowZero)) throw new ConfigError(`${what}: port ${value} is out of range (1-65535)`);
  return p;
}

/** `host:port`, `[v6]:port` or `port` (host undefined). */
export function parseHostPort(value: string, what: string): { host?: string; port: number } {
  const v = value.trim();
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(v);
  if (v6) {
    if (isIP(v6[1]!) !== 6) throw new ConfigError(`${what}: '${v6[1]}' is not an IPv6 address`);
    return { host: v6[1]!, port: parsePort(v6[2]!, what) };
  }
  const i = v.lastIndexOf(':');
  if (i < 0) return { port: parsePort(v, what) };
  const host = v.slice(0, i);
  if (!host || !/^[A-Za-z0-9.-]+$/.test(host)) throw new ConfigError(`${what}: '${host}' is not a host name or address`);
  return { host, port: parsePort(v.slice(i + 1), what) };
}

/** `NAME=VALUE[,k=v…]` → name, value and options. */
function splitSpec(raw: string, flag: string, shape: string): { name: string; value: string; opts: Array<[string, string]> } {
  const eq = raw.indexOf('=');
  if (eq <= 0) throw new ConfigError(`${flag} '${raw}': expected ${shape}`);
  const name = raw.slice(0, eq);
  const [value = '', ...rest] = raw.slice(eq + 1).split(',');
  if (!value) throw new ConfigError(`${flag} '${raw}': expected ${shape}`);
  const opts: Array<[string, string]> = rest.map((kv) => {
    const j = kv.indexOf('=');
    if (j <= 0) throw new ConfigError(`${flag} '${raw}': option '${kv}' should be key=value`);
    return [kv.slice(0, j).trim(), kv.slice(j + 1)];
  });
  return { name, value, opts };
}

/** A circuit-breaker limit: a whole number of connections, at least 1. */
function parseLimit(v: string, what: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 10_000_000) throw new ConfigError(`${what}: '${v}' should be a whole number of connections (at least 1)`);
  return Number(v);
}

function parseUInt16(v: string, what: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw new ConfigError(`${what}: '${v}' should be 0-65535`);
  return Number(v);
}

export function parseAdvertise(raw: string): AdvertiseSpec {
  const flag = '--advertise';
  const { name, value, opts } = splitSpec(raw, flag, 'NAME=[HOST:]PORT[,priority=,weight=,instance=,check=,txt.KEY=VALUE]');
  const hp = parseHostPort(value, `${flag} ${raw}`);
  const spec: AdvertiseSpec = {
    name: parseServiceName(name, flag),
    targetHost: hp.host,
    port: hp.port,
    priority: 0,
    weight: 0,
    txt: {},
    subtypes: [],
    relayPort: 0,
    check: 'tcp',
    raw,
  };
  for (const [k, v] of opts) {
    if (k === 'priority') spec.priority = parseUInt16(v, `${flag} ${raw}: priority`);
    else if (k === 'weight') spec.weight = parseUInt16(v, `${flag} ${raw}: weight`);
    else if (k === 'instance') {
      if (!v || v.includes('.') || Buffer.byteLength(v) > 63) {
        throw new ConfigError(`${flag} ${raw}: instance must be 1-63 bytes without '.'`);
      }
      spec.instance = v;
    } else if (k === 'subtype') spec.subtypes.push(parseServiceName(v, `${flag} ${raw}: subtype`, { subtype: true }));
    else if (k === 'relay-port') spec.relayPort = parsePort(v, `${flag} ${raw}: relay-port`, true);
    else if (k === 'check') {
      if (!(CHECK_KINDS as readonly string[]).includes(v)) throw new ConfigError(`${flag} ${raw}: unknown check '${v}' (known: ${CHECK_KINDS.join(', ')})`);
      spec.check = v as CheckKind;
    } else if (k === 'max-connections') spec.maxConnections = parseLimit(v, `${flag} ${raw}: max-connections`);
    else if (k.startsWith('txt.') && k.length > 4) {
      const key = k.slice(4);
      if (key.includes('=') || Buffer.byteLength(`${key}=${v}`) > 255) throw new ConfigError(`${flag} ${raw}: TXT entry '${key}' too long or has '='`);
      if (key.toLowerCase() === LIVENESS_TXT_KEY) throw new ConfigError(`${flag} ${raw}: TXT key '${LIVENESS_TXT_KEY}' is reserved (the ambassador announces its host probe port there)`);
      spec.txt[key.toLowerCase()] = v;
    } else throw new ConfigError(`${flag} ${raw}: unknown option '${k}' (known: priority, weight, instance, subtype, relay-port, check, max-connections, txt.KEY)`);
  }
  return spec;
}

export function parseConnect(raw: string): ConnectSpec {
  const flag = '--connect';
  const { name, value, opts } = splitSpec(raw, flag, 'NAME=[BIND:]PORT[,balance=,where.KEY=VALUE,auth-file=,db=,protocol=,server-tls=,server-verify=,server-ca=,server-name=,tls-name=,failback=,check=,max-connections=,max-pending=,max-per-endpoint=]');
  const hp = parseHostPort(value, `${flag} ${raw}`);
  if (hp.host !== undefined && hp.host !== 'localhost' && isIP(hp.host) === 0) {
    throw new ConfigError(`${flag} ${raw}: bind address '${hp.host}' must be an IP address`);
  }
  const spec: ConnectSpec = {
    name: parseServiceName(name, flag),
    bind: hp.host === 'localhost' ? '127.0.0.1' : (hp.host ?? '127.0.0.1'),
    bothLoopbacks: hp.host === undefined || hp.host === 'localhost',
    port: hp.port,
    balance: 'round-robin',
    where: {},
    failback: 'retire',
    check: 'tcp',
    limits: {},
    raw,
  };
  for (const [k, v] of opts) {
    if (k === 'balance') {
      if (!(BALANCERS as readonly string[]).includes(v)) {
        throw new ConfigError(`${flag} ${raw}: unknown balance '${v}' (known: ${BALANCERS.join(', ')})`);
      }
      spec.balance = v as BalancerName;
    } else if (k.startsWith('where.') && k.length > 6) spec.where[k.slice(6).toLowerCase()] = v;
    else if (k === 'auth-file') spec.authFile = v;
    else if (k === 'db') {
      if (!/^\d+$/.test(v)) throw new ConfigError(`${flag} ${raw}: db must be a number`);
      spec.db = Number(v);
    } else if (k === 'protocol') {
      if (!PROTOCOL_NAMES.includes(v)) throw new ConfigError(`${flag} ${raw}: unknown protocol '${v}' (known: ${PROTOCOL_NAMES.join(', ')})`);
      spec.protocol = v;
    } else if (k === 'server-tls') {
      if (!(SERVER_TLS_MODES as readonly string[]).includes(v)) throw new ConfigError(`${flag} ${raw}: server-tls must be ${SERVER_TLS_MODES.join(', ')}`);
      spec.serverTls = v as ServerTlsMode;
    } else if (k === 'server-verify') {
      if (!(SERVER_VERIFY_MODES as readonly string[]).includes(v)) throw new ConfigError(`${flag} ${raw}: server-verify must be ${SERVER_VERIFY_MODES.join(', ')}`);
      spec.serverVerify = v as ServerVerifyMode;
    } else if (k === 'server-ca') spec.serverCa = v;
    else if (k === 'server-name') {
      if (isIP(v) === 0 && !/^[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})$/.test(v)) throw new ConfigError(`${flag} ${raw}: server-name '${v}' is not a DNS name or an IP address`);
      spec.serverName = v;
    } else if (k === 'tls-name') {
      if (!/^[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})$/.test(v)) throw new ConfigError(`${flag} ${raw}: tls-name '${v}' is not a DNS name`);
      spec.tlsName = v;
    } else if (k === 'failback') {
      if (v !== 'retire' && v !== 'keep') throw new ConfigError(`${flag} ${raw}: failback must be retire or keep`);
      spec.failback = v;
    } else if (k === 'check') {
      if (v !== 'none' && !(CHECK_KINDS as readonly string[]).includes(v)) {
        throw new ConfigError(`${flag} ${raw}: unknown check '${v}' (known: ${[...CHECK_KINDS, 'none'].join(', ')})`);
      }
      spec.check = v as CheckKind | 'none';
    } else if (k === 'max-connections') spec.limits.maxConnections = parseLimit(v, `${flag} ${raw}: max-connections`);
    else if (k === 'max-pending') spec.limits.maxPending = parseLimit(v, `${flag} ${raw}: max-pending`);
    else if (k === 'max-per-endpoint') spec.limits.maxPerEndpoint = parseLimit(v, `${flag} ${raw}: max-per-endpoint`);
    else throw new ConfigError(`${flag} ${raw}: unknown option '${k}' (known: balance, where.KEY, auth-file, db, protocol, server-tls, server-verify, server-ca, server-name, tls-name, failback, check, max-connections, max-pending, max-per-endpoint)`);
  }
  if ((spec.authFile !== undefined || spec.db !== undefined) && spec.protocol === undefined) spec.protocol = 'redis';
  const serverOption = ['server-tls', 'server-verify', 'server-ca', 'server-name'].find((k) => opts.some(([o]) => o === k));
  if (serverOption !== undefined && spec.protocol !== 'postgres') {
    throw new ConfigError(`${flag} ${raw}: ${serverOption} is for protocol=postgres (TLS negotiated inside the PostgreSQL protocol)`);
  }
  if (spec.db !== undefined && spec.protocol !== 'redis') throw new ConfigError(`${flag} ${raw}: db is for protocol=redis (PostgreSQL: the client names its database)`);
  return spec;
}

export function parseStatic(raw: string): StaticSpec {
  const flag = '--static';
  const eq = raw.indexOf('=');
  if (eq <= 0 || eq === raw.length - 1) throw new ConfigError(`${flag} '${raw}': expected NAME=HOST:PORT[+HOST:PORT…]`);
  const endpoints = raw.slice(eq + 1).split('+').map((hp) => {
    const parsed = parseHostPort(hp, `${flag} ${raw}`);
    if (!parsed.host) throw new ConfigError(`${flag} ${raw}: '${hp}' needs a host (HOST:PORT)`);
    return { host: parsed.host, port: parsed.port };
  });
  return { name: parseServiceName(raw.slice(0, eq), flag), endpoints, raw };
}

export function parseSrv(raw: string): SrvSpec {
  const flag = '--srv';
  const eq = raw.indexOf('=');
  const query = raw.slice(eq + 1).trim();
  if (eq <= 0 || !/^_[A-Za-z0-9-]+\._(tcp|udp)\.[A-Za-z0-9.-]+$/.test(query)) {
    throw new ConfigError(`${flag} '${raw}': expected NAME=_service._tcp.domain`);
  }
  if (/\.\./.test(query)) throw new ConfigError(`${flag} '${raw}': '${query}' has an empty label`);
  // a trailing dot is kept: it makes the name absolute (no search domains), as for every resolver
  return { name: parseServiceName(raw.slice(0, eq), flag), query, raw };
}

/**
 * `--dns-server`: an IP address, optionally with a port: `10.0.0.2`, `10.0.0.2:5353`, `fd00::53`,
 * `[fd00::53]:5353`. Not a host name: resolving the resolver would need a resolver.
 */
export function parseDnsServer(raw: string): HostPort {
  const what = `--dns-server '${raw}'`;
  const v = raw.trim();
  if (isIP(v) === 6) return { host: v, port: 53 };
  let host = v;
  let port = 53;
  const bracketed = /^\[([^\]]+)\](?::(\d*))?$/.exec(v);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] !== undefined) port = parsePort(bracketed[2], what);
  } else if (v.includes(':')) {
    host = v.slice(0, v.lastIndexOf(':'));
    port = parsePort(v.slice(v.lastIndexOf(':') + 1), what);
  }
  if (isIP(host) === 0) throw new ConfigError(`${what}: expected an IP address with an optional port (ADDRESS[:PORT] or [IPV6]:PORT)`);
  return { host, port };
}
