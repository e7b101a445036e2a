import { isIPv4, isIPv6 } from 'node:net';
import { isLinkLocal6 } from '../../base/address.js';
import { type LinkAddress, type LinkInfo, readLinks } from '../../base/host-network.js';

/**
 * A fixed interface description (tests and tools that name one address, e.g. loopback):
 * its IPv4 address and, optionally, IPv6 addresses.
 */
export interface NetInterface {
  name: string;
  address: string;
  netmask: string;
  ipv6?: LinkAddress[];
}

export class InterfaceError extends Error {}

const bareV6 = (a: string) => a.split('%')[0]!.toLowerCase();

/** LinkInfo for fixed interface descriptions (several entries with one name merge). */
export function linksOf(fixed: readonly NetInterface[]): LinkInfo[] {
  const byName = new Map<string, LinkInfo>();
  for (const f of fixed) {
    let l = byName.get(f.name);
    if (!l) {
      l = { name: f.name, index: 0, loopback: f.address.startsWith('127.'), multicast: true, mtu: 1500, ipv4: [], ipv6: [] };
      byName.set(f.name, l);
    }
    if (!l.ipv4.some((a) => a.address === f.address)) l.ipv4.push({ address: f.address, netmask: f.netmask });
    for (const v of f.ipv6 ?? []) if (!l.ipv6.some((a) => a.address === bareV6(v.address))) l.ipv6.push({ address: bareV6(v.address), netmask: v.netmask });
  }
  return [...byName.values()];
}

// ---- choosing interfaces ----------------------------------------------------------------------

interface Pattern {
  raw: string;
  kind: 'address' | 'name' | 'glob';
  /** Address (normalised) or name, or the glob as a regular expression. */
  value: string;
  re?: RegExp;
}

function parsePattern(raw: string, flag: string): Pattern {
  const s = raw.trim();
  if (isIPv4(s)) return { raw, kind: 'address', value: s };
  if (isIPv6(bareV6(s))) return { raw, kind: 'address', value: bareV6(s) };
  const bad = (why: string) => new InterfaceError(`${flag} '${raw}': ${why}`);
  if (s.length === 0) throw bad('empty');
  if (/^[\d.]+$/.test(s)) throw bad('not a valid IPv4 address');
  if (/[\s/\\[\]{}]/.test(s)) throw bad('not an interface name, address or glob (names have no blanks or slashes; globs use * and ?)');
  if (s.length > 15) throw bad('longer than an interface name can be (15 characters)');
  if (/[*?]/.test(s)) {
    const re = new RegExp('^' + s.replace(/[.+^$()|]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
    return { raw, kind: 'glob', value: s, re };
  }
  return { raw, kind: 'name', value: s };
}

function matches(p: Pattern, link: LinkInfo): boolean {
  switch (p.kind) {
    case 'name':
      return link.name === p.value;
    case 'glob':
      return p.re!.test(link.name);
    case 'address':
      return link.ipv4.some((a) => a.address === p.value) || link.ipv6.some((a) => a.address === p.value);
  }
}

/**
 * Which interfaces mDNS runs on: `--interface` and `--exclude-interface` values, each a name
 * (`eth0`), an address (`192.168.7.2`, `fe80::1`) or a glob (`docker*`, `veth?`), as Avahi's
 * allow-interfaces and deny-interfaces. Without includes: every up, multicast-capable,
 * non-loopback interface. Loopback only when named exactly (name or address), never by a glob.
 * An exclude always wins.
 */
export class InterfaceSelection {
  private constructor(
    private readonly include: readonly Pattern[],
    private readonly exclude: readonly Pattern[],
  ) {}

  /** Throws InterfaceError (one line) for a malformed value; an interface that does not exist yet is fine. */
  static parse(include: readonly string[] = [], exclude: readonly string[] = []): InterfaceSelection {
    return new InterfaceSelection(
      include.map((s) => parsePattern(s, '--interface')),
      exclude.map((s) => parsePattern(s, '--exclude-interface')),
    );
  }

  static all(): InterfaceSelection {
    return new InterfaceSelection([], []);
  }

  get explicit(): boolean {
    return this.include.length > 0;
  }

  selects(link: LinkInfo): boolean {
    if (this.exclude.some((p) => matches(p, link))) return false;
    if (this.include.length === 0) return link.multicast && !link.loopback;
    return this.include.some((p) => {
      if (!matches(p, link)) return false;
      return p.kind === 'glob' ? link.multicast && !link.loopback : true;
    });
  }

  /** Include values that match none of `links` (waited for, with a warning). */
  unmatched(links: readonly LinkInfo[]): string[] {
    return this.include.filter((p) => !links.some((l) => matches(p, l))).map((p) => p.raw);
  }

  toString(): string {
    const inc = this.include.length ? this.include.map((p) => p.raw).join(', ') : 'every up multicast interface';
    return this.exclude.length ? `${inc} except ${this.exclude.map((p) => p.raw).join(', ')}` : inc;
  }
}

/**
 * Resolves `--interface`-style values to the fixed interfaces present now (tools and tests that
 * need one address, e.g. `127.0.0.1`). Throws InterfaceError when a value matches nothing.
 */
export function resolveInterfaces(specs: readonly string[] = []): NetInterface[] {
  const sel = InterfaceSelection.parse(specs);
  const links = readLinks().filter((l) => sel.selects(l) && l.ipv4.length > 0);
  const missing = sel.unmatched(links);
  if (missing.length) throw new InterfaceError(`interface '${missing[0]}' has no IPv4 address here`);
  if (links.length === 0) throw new InterfaceError('no up, multicast-capable IPv4 interface found; name one with --interface');
  return links.flatMap((l) => l.ipv4.slice(0, 1).map((a) => ({
    name: l.name, address: a.address, netmask: a.netmask, ...(l.ipv6.length && !l.loopback ? { ipv6: l.ipv6 } : {}),
  })));
}

// ---- on-link checks (RFC 6762 §11) ------------------------------------------------------------

function toInt(ip: string): number {
  const p = ip.split('.').map(Number);
  return (((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]!) >>> 0;
}

function v6ToBigInt(ip: string): bigint {
  const [head = '', tail = ''] = ip.split('%')[0]!.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.reduce((acc, g) => (acc << 16n) + BigInt(parseInt(g || '0', 16)), 0n);
}

/** Where a link's addresses come from: a LinkInfo or anything with the same address lists. */
export interface LinkAddresses {
  name: string;
  ipv4: readonly LinkAddress[];
  ipv6: readonly LinkAddress[];
}

/** Whether `address` (a packet's source) is on this link: same IPv4 subnet, our zone, or an IPv6 prefix of ours. */
export function onLink(link: LinkAddresses, address: string): boolean {
  const [addr, zone] = address.split('%') as [string, string | undefined];
  if (isIPv6(addr)) {
    if (isLinkLocal6(addr)) return zone === undefined || zone === link.name;
    const a = v6ToBigInt(addr);
    return link.ipv6.some((x) => {
      const mask = v6ToBigInt(x.netmask);
      return (a & mask) === (v6ToBigInt(x.address) & mask);
    });
  }
  if (!isIPv4(addr)) return false;
  const a = toInt(addr);
  return link.ipv4.some((x) => {
    const mask = toInt(x.netmask);
    return ((a & mask) >>> 0) === ((toInt(x.address) & mask) >>> 0);
  });
}
