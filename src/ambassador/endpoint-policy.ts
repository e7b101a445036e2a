import type { EndpointSpec } from '../discovery/source.js';
import { dialledAddresses, formatAddressPort, isLoopback, isUnspecified, parseAddressPort } from '../base/address.js';

/**
 * TXT key of an announcement made for a relay: where the relay forwards to (`127.0.0.1:6379`,
 * `198.18.0.2:6379`), an address of the announcing host when it is a loopback one. It travels in
 * the announcement itself, so a connector knows before its first connection when an endpoint
 * would send its clients back to it.
 */
export const RELAY_TO_TXT = 'relay-to';

/** A listener of this process: what it is, in words ("--connect redis=6379 listener"). */
export interface OwnListenerInfo {
  kind: 'connect' | 'relay' | 'admin';
  what: string;
  /** A relay whose target is on this host (loopback or a local address). */
  toThisHost?: boolean;
}

/** What the loop checks need to know about this process and the other ambassadors. */
export interface LoopFacts {
  /** The listener of this process that a connection to address:port reaches. */
  ownListener(address: string, port: number): OwnListenerInfo | undefined;
  /**
   * Another ambassador's --connect listener (one that forwards to endpoints found over mDNS)
   * reached by a connection to address:port, in words.
   */
  peerListener(address: string, port: number): string | undefined;
  /** Whether `address` is one of this host's. */
  isLocal(address: string): boolean;
  /** mDNS runs on a loopback interface here: announcements with a loopback address can come from this host. */
  mdnsOnLoopback(): boolean;
}

/**
 * Why a connection to `address`:`port` must never be made for `spec`, or undefined:
 * - an mDNS announcement at an unspecified address (0.0.0.0, ::), or at a loopback address heard
 *   on a network where it cannot mean the announcing host;
 * - an address and port where this process listens (its --connect listeners, admin, its relays
 *   to other hosts): a connection would come back here, or leave again towards another;
 * - another ambassador's --connect listener fed by mDNS: connections would circle between them.
 */
export function addressRefusal(spec: EndpointSpec, address: string, facts: LoopFacts): string | undefined {
  const at = formatAddressPort(address, spec.port);
  if (spec.source === 'registry' && isUnspecified(address)) return `registered at ${at}, an address that names no host (a connection to it reaches this one): ignored`;
  if (spec.source === 'mdns') {
    if (isUnspecified(address)) return `announced at ${at}, an address that names no host (a connection to it reaches this one): ignored`;
    if (isLoopback(address) && !facts.mdnsOnLoopback()) {
      return `announced at ${at}, a loopback address, which cannot mean the announcing host on this network: ignored`;
    }
  }
  for (const a of dialledAddresses(address)) {
    const own = facts.ownListener(a, spec.port);
    if (own?.kind === 'relay') {
      // Our relay to a service of this host is fine (this host both offers and uses it; a relay
      // to one of our listeners is never announced). Our relay to another host is not: two
      // ambassadors relaying to each other's listeners would each go out through their own.
      if (!own.toThisHost) return `${at} is this ambassador's own ${own.what}, which forwards to another host: a connector never goes out through its own relay (two ambassadors relaying to each other's listeners would loop that way)`;
    } else if (own) {
      return `${at} is this ambassador's own ${own.what}: a connection sent there would come straight back (a loop)`;
    }
    const peer = facts.peerListener(a, spec.port);
    if (peer) return `${at} is ${peer}: connections would circle between ambassadors (a loop)`;
  }
  return undefined;
}

/**
 * Why `spec` must never be an endpoint, or undefined when it may be: every address of it is
 * refused (addressRefusal), or the relay it announces forwards (TXT relay-to) to a --connect
 * listener of this process or of another ambassador.
 */
export function loopRefusal(spec: EndpointSpec, facts: LoopFacts): string | undefined {
  const screened = screenEndpoint(spec, facts);
  return typeof screened === 'string' ? screened : undefined;
}

/**
 * The instance as it may be used — `spec` itself, or without the addresses that must never be
 * dialled (a peer's other addresses are tried when one fails) — or why it must never be an
 * endpoint at all.
 */
export function screenEndpoint(spec: EndpointSpec, facts: LoopFacts): EndpointSpec | string {
  const all = spec.addresses?.length ? (spec.addresses.includes(spec.host) ? spec.addresses : [spec.host, ...spec.addresses]) : [spec.host];
  const relayTo = spec.txt[RELAY_TO_TXT];
  const target = relayTo === undefined ? undefined : parseAddressPort(relayTo);
  if (target) {
    // A loopback target is the announcing host's: ours only when the announcer is this host.
    const announcerHere = all.some((a) => isLoopback(a) || facts.isLocal(a));
    if (announcerHere || !(isLoopback(target.host) || isUnspecified(target.host))) {
      const at = formatAddressPort(spec.host, spec.port);
      for (const a of dialledAddresses(target.host)) {
        // Only a --connect listener sends a connection on again (a relay of ours goes to its target).
        const own = facts.ownListener(a, target.port);
        if (own?.kind === 'connect') return `${at} relays to ${relayTo}, this ambassador's own ${own.what}: a connection sent there would come back (a loop)`;
        const peer = facts.peerListener(a, target.port);
        if (peer) return `${at} relays to ${relayTo}, ${peer}: connections would circle between ambassadors (a loop)`;
      }
    }
  }
  let first: string | undefined;
  const kept: string[] = [];
  for (const address of all) {
    const why = addressRefusal(spec, address, facts);
    if (why === undefined) kept.push(address);
    else first ??= why;
  }
  if (first === undefined) return spec;
  if (kept.length === 0) return first;
  return { ...spec, host: kept.includes(spec.host) ? spec.host : kept[0]!, addresses: kept };
}

/**
 * The backend an instance stands for: the service process its connections end at. Two instances
 * with one backend (two ambassadors on one host advertising the same target) are one endpoint,
 * else that backend gets twice its share. A relay's is its relay-to target (a loopback one is
 * the announcing host's, so with the host's address); any other's, the address and port dialled.
 */
export function backendOf(spec: EndpointSpec): string {
  const relayTo = spec.txt[RELAY_TO_TXT];
  const target = relayTo === undefined ? undefined : parseAddressPort(relayTo);
  if (target) return isLoopback(target.host) || isUnspecified(target.host) ? `${spec.host} → ${relayTo}` : relayTo!;
  return formatAddressPort(spec.host, spec.port);
}
