import { isIP, isIPv4 } from 'node:net';

/**
 * Addresses as this program compares, orders and prints them, written once. Compared in one
 * spelling (normalizeAddress): no IPv6 zone, IPv4-mapped IPv6 as plain IPv4, lower case. Printed
 * with the port as `host:port`, `[v6]:port` (formatAddressPort); a link-local IPv6 address means
 * nothing without its zone (`fe80::1%eth0`, zoned).
 */

/** A host (name or address) and a port, as given on the command line or found by discovery. */
export interface HostPort {
  host: string;
  port: number;
}

/** The one spelling addresses are compared in (see above). */
export function normalizeAddress(address: string): string {
  let a = address.trim().toLowerCase();
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  return mapped ? mapped[1]! : a;
}

/** 0.0.0.0 or :: — no host: a connection to it reaches this host (Linux), a listener on it every local address. */
export function isUnspecified(address: string): boolean {
  const a = normalizeAddress(address);
  return a === '0.0.0.0' || a === '::' || a === '0:0:0:0:0:0:0:0';
}

/** 127.0.0.0/8 or ::1: this host, whoever says it. */
export function isLoopback(address: string): boolean {
  const a = normalizeAddress(address);
  return (isIPv4(a) && a.startsWith('127.')) || a === '::1' || a === 'localhost';
}

/**
 * The addresses a connection to `host` may go to, for comparing with listeners: an IP literal
 * as itself; `localhost` as 127.0.0.1 and ::1; 0.0.0.0 / :: as the loopback address they reach.
 * Empty for other names (resolved by whoever knows to, or not compared).
 */
export function dialledAddresses(host: string): string[] {
  const a = normalizeAddress(host);
  if (a === 'localhost') return ['127.0.0.1', '::1'];
  if (isIP(a) === 0) return [];
  if (isUnspecified(a)) return [isIPv4(a) ? '127.0.0.1' : '::1'];
  return [a];
}

/**
 * Whether a listener bound to `bind` accepts a connection to `address` (both of one host):
 * 0.0.0.0 takes every IPv4 address of the host, :: every address (dual stack), any other
 * address only itself. `isLocal` says whether an address is one of that host's.
 */
export function bindAccepts(bind: string, address: string, isLocal: (a: string) => boolean): boolean {
  const b = normalizeAddress(bind);
  const a = normalizeAddress(address);
  if (b === '0.0.0.0') return isIPv4(a) && (isLoopback(a) || isLocal(a));
  if (isUnspecified(b)) return isLoopback(a) || isLocal(a);
  return a === b;
}

/** `host:port`, `[v6]:port`: the value of a TXT relay-to, or undefined when it is not one. */
export function parseAddressPort(text: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!, port };
}

/** `10.0.0.5:6379`, `[fe80::1%eth0]:6379`: an IPv6 address never has the port glued on. */
export function formatAddressPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** fe80::/10. */
export function isLinkLocal6(address: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(address);
}

/** `fe80::1` on eth0 → `fe80::1%eth0` (a link-local address means nothing without its zone); others unchanged. */
export function zoned(address: string, link: string): string {
  return isLinkLocal6(address) ? `${address}%${link}` : address;
}

/**
 * A peer's addresses, the likeliest to work first: routable IPv4 (what services listen on most,
 * and what our own health checks use), IPv4 link-local, routable IPv6, IPv6 link-local (which
 * needs its zone). Ties in text order, so the result does not depend on arrival order.
 */
export function orderAddresses(addresses: readonly string[]): string[] {
  const rank = (a: string) => {
    const bare = a.split('%')[0]!;
    if (isIPv4(bare)) return bare.startsWith('169.254.') ? 1 : 0;
    return isLinkLocal6(bare) ? 3 : 2;
  };
  return [...new Set(addresses)].sort((x, y) => rank(x) - rank(y) || (x < y ? -1 : x > y ? 1 : 0));
}
