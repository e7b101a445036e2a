import { networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';

/** An IPv6 address of an interface (link-local ones are what mDNS over IPv6 mostly uses). */
export interface Ipv6Address {
  address: string;
  netmask: string;
}

/**
 * One network interface that mDNS runs on: its IPv4 address (required) and, where the
 * interface has them, its IPv6 addresses (mDNS then also runs on ff02::fb).
 */
export interface NetInterface {
  name: string;
  address: string;
  netmask: string;
  ipv6?: Ipv6Address[];
}

export class InterfaceError extends Error {}

const IFF_UP = 0x1;
const IFF_MULTICAST = 0x1000;

function linkFlags(name: string): number | undefined {
  try {
    return parseInt(readFileSync(`/sys/class/net/${name}/flags`, 'utf8').trim(), 16);
  } catch {
    return undefined;
  }
}

function ipv4Interfaces(): NetInterface[] {
  const out: NetInterface[] = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    // Link-local first: it is always there and is what peers on the link reach.
    const v6 = (addrs ?? [])
      .filter((a) => a.family === 'IPv6' && !a.internal)
      .map((a) => ({ address: a.address, netmask: a.netmask }))
      .sort((x, y) => Number(!x.address.startsWith('fe80')) - Number(!y.address.startsWith('fe80')));
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4') out.push({ name, address: a.address, netmask: a.netmask, ...(v6.length ? { ipv6: v6 } : {}) });
    }
  }
  return out;
}

/**
 * Turns `--interface` values (names like `eth0`, or addresses like `127.0.0.1`) into
 * interfaces. With none given: every up, multicast-capable, non-loopback IPv4 interface —
 * loopback only when named explicitly, so a test or a dev box opts in to it.
 */
export function resolveInterfaces(specs: readonly string[] = []): NetInterface[] {
  const all = ipv4Interfaces();
  if (specs.length === 0) {
    const chosen = all.filter((i) => {
      const flags = linkFlags(i.name);
      const up = flags === undefined ? true : (flags & IFF_UP) !== 0 && (flags & IFF_MULTICAST) !== 0;
      return up && !i.address.startsWith('127.');
    });
    if (chosen.length === 0) {
      throw new InterfaceError('no up, multicast-capable IPv4 interface found; name one with --interface');
    }
    return chosen;
  }
  const out: NetInterface[] = [];
  for (const spec of specs) {
    const matches = isIPv4(spec) ? all.filter((i) => i.address === spec) : all.filter((i) => i.name === spec);
    const flags = matches[0] ? linkFlags(matches[0].name) : undefined;
    if (flags !== undefined && (flags & IFF_UP) === 0) {
      throw new InterfaceError(`interface '${spec}' is down`);
    }
    if (matches.length === 0) {
      const known = [...new Set(all.map((i) => `${i.name} (${i.address})`))].join(', ') || 'none';
      throw new InterfaceError(`interface '${spec}' has no IPv4 address here; known: ${known}`);
    }
    const m = matches[0]!;
    if (!out.some((o) => o.address === m.address)) out.push(m);
  }
  return out;
}

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

/** Whether an IPv6 source is on this interface's link: link-local with our scope, or in a prefix of ours. */
function onLink6(iface: NetInterface, address: string): boolean {
  const [addr, scope] = address.split('%');
  if (addr!.toLowerCase().startsWith('fe80:')) return scope === undefined || scope === iface.name;
  const a = v6ToBigInt(addr!);
  return (iface.ipv6 ?? []).some((x) => {
    const mask = v6ToBigInt(x.netmask);
    return (a & mask) === (v6ToBigInt(x.address) & mask);
  });
}

/** Whether `address` is on the same subnet as the interface (RFC 6762 §11 source check). */
export function onLink(iface: NetInterface, address: string): boolean {
  if (isIPv6(address.split('%')[0]!)) return onLink6(iface, address);
  if (!isIPv4(address)) return false;
  const mask = toInt(iface.netmask);
  return ((toInt(address) & mask) >>> 0) === ((toInt(iface.address) & mask) >>> 0);
}
