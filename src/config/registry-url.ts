import { isIP } from 'node:net';
import type { HostPort } from '../base/address.js';
import { ConfigError, readable } from './specs.js';

export type RegistryKind = 'etcd' | 'zookeeper';

/** `--registry URL`, parsed: which registry, every member, where our keys live, how to trust it. */
export interface RegistryConfig {
  kind: RegistryKind;
  /** Every member of the cluster, tried in turn. */
  members: HostPort[];
  /** Path under which services are registered (`/mdns-ambassador`): `<prefix>/<service>/<instance>`. */
  prefix: string;
  /** etcds://: TLS to every member. */
  tls: boolean;
  /** Lease TTL (etcd) or session timeout (ZooKeeper), ms: how long a registration outlives a dead owner. */
  ttlMs: number;
  /** File with `user password` (etcd auth, ZooKeeper digest), re-read at each (re)connect; never logged. */
  authFile?: string;
  /** etcds://: CA bundle, and a client certificate and key (etcd --client-cert-auth). */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** The URL without anything secret-looking, for logs and /peers. */
  display: string;
  raw: string;
}

const DEFAULT_PORT: Record<string, number> = { etcd: 2379, etcds: 2379, zk: 2181 };
const DEFAULT_PREFIX = '/mdns-ambassador';
const OPTIONS = ['ttl', 'auth-file', 'ca', 'cert', 'key'];

/**
 * `etcd://host1:2379,host2:2379/prefix`, `etcds://…` (TLS), `zk://host1:2181,host2:2181/prefix`,
 * with options as a query: `?ttl=10s&auth-file=/run/secrets/etcd&ca=ca.pem&cert=c.pem&key=k.pem`.
 * Not node's URL parser: it takes one host only, and a comma list is what every etcd and
 * ZooKeeper tool writes.
 */
export function parseRegistryUrl(raw: string, parseDuration: (v: string, what: string) => number): RegistryConfig {
  const what = `--registry ${raw}`;
  const m = /^([a-z]+):\/\/([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(raw.trim());
  if (!m) throw new ConfigError(`${what}: not a registry URL (etcd://HOST:PORT[,HOST:PORT…]/PREFIX, etcds://… for TLS, zk://HOST:PORT[,…]/PREFIX)`);
  const scheme = m[1]!.toLowerCase();
  if (!(scheme in DEFAULT_PORT)) throw new ConfigError(`${what}: unknown scheme '${scheme}://' (etcd://, etcds:// or zk://)`);
  const kind: RegistryKind = scheme === 'zk' ? 'zookeeper' : 'etcd';
  if (m[2]!.includes('@')) throw new ConfigError(`${what}: credentials do not belong in the URL (they would show in ps and logs): use ?auth-file=FILE`);
  const members = m[2]!.split(',').map((h) => parseMember(h.trim(), DEFAULT_PORT[scheme]!, what));
  if (members.length === 0 || m[2]!.trim() === '') throw new ConfigError(`${what}: no host (e.g. ${scheme}://10.0.0.5:${DEFAULT_PORT[scheme]}/mesh)`);
  let prefix = (m[3] ?? '').replace(/\/+$/, '');
  if (prefix === '') prefix = DEFAULT_PREFIX;
  for (const seg of prefix.split('/').slice(1)) {
    if (!/^[A-Za-z0-9_.-]+$/.test(seg) || seg === '.' || seg === '..') {
      throw new ConfigError(`${what}: prefix '${prefix}' must be /-separated segments of letters, digits, '_', '.', '-'`);
    }
  }
  const opts = new Map<string, string>();
  for (const pair of (m[4] ?? '').split('&').filter(Boolean)) {
    const eq = pair.indexOf('=');
    const k = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
    const v = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1));
    if (!OPTIONS.includes(k)) throw new ConfigError(`${what}: unknown option '${k}' (${OPTIONS.join(', ')})`);
    if (v === '') throw new ConfigError(`${what}: option '${k}' needs a value`);
    opts.set(k, v);
  }
  const tls = scheme === 'etcds';
  for (const k of ['ca', 'cert', 'key']) {
    if (opts.has(k) && !tls) throw new ConfigError(`${what}: '${k}=' needs TLS: ${kind === 'etcd' ? 'use etcds://' : 'the ZooKeeper client has no TLS (use auth-file= for digest authentication)'}`);
  }
  if (opts.has('cert') !== opts.has('key')) throw new ConfigError(`${what}: a client certificate needs both cert= and key=`);
  for (const k of ['auth-file', 'ca', 'cert', 'key']) if (opts.has(k)) readable(opts.get(k)!, `${what}: ${k}`);
  const ttlMs = opts.has('ttl') ? parseDuration(opts.get('ttl')!, `${what}: ttl`) : 10_000;
  if (ttlMs < 2000 || ttlMs > 300_000) throw new ConfigError(`${what}: ttl must be between 2s and 5m (a registration outlives its dead owner this long)`);
  return {
    kind, members, prefix, tls, ttlMs,
    authFile: opts.get('auth-file'), caFile: opts.get('ca'), certFile: opts.get('cert'), keyFile: opts.get('key'),
    display: `${scheme}://${members.map((h) => (h.host.includes(':') ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`)).join(',')}${prefix}`,
    raw,
  };
}

function parseMember(text: string, defaultPort: number, what: string): HostPort {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(text);
  if (!m || (m[0].startsWith('[') && isIP(m[1]!) !== 6)) throw new ConfigError(`${what}: '${text}' is not HOST[:PORT]`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`${what}: '${text}': bad port`);
  if (!/^[A-Za-z0-9.:_-]+$/.test(m[1]!)) throw new ConfigError(`${what}: '${text}' is not a host name or address`);
  return { host: m[1]!, port };
}


/** `--registry-address ADDR`: an IP literal others dial to reach this host. */
export function parseRegistryAddress(text: string): string {
  const a = text.trim().replace(/^\[(.*)\]$/, '$1');
  if (isIP(a) === 0) throw new ConfigError(`--registry-address ${text}: not an IP address (the address others should dial to reach this host)`);
  return a;
}
