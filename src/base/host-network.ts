import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { isLoopback, isUnspecified, normalizeAddress } from './address.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';

export type Family = 'IPv4' | 'IPv6';

/** One address of an interface (IPv6 ones without a zone: the interface is the zone). */
export interface LinkAddress {
  address: string;
  netmask: string;
}

/** One network interface as seen at one look. */
export interface LinkInfo {
  name: string;
  /** Kernel interface index (0 when unknown): a re-created interface with the same name is another link. */
  index: number;
  loopback: boolean;
  /** IFF_MULTICAST (true where the flag cannot be read). */
  multicast: boolean;
  /** Link MTU in bytes: packets are sized to fit it without IP fragmentation. */
  mtu: number;
  ipv4: LinkAddress[];
  ipv6: LinkAddress[];
}

/** How one interface changed between two looks. */
export interface LinkDiff {
  kind: 'added' | 'removed' | 'changed';
  name: string;
  /** The interface as it is now ('added', 'changed') or was ('removed'). */
  link: LinkInfo;
  /** Addresses that appeared / went away (all of them for 'added' / 'removed'). */
  added: string[];
  removed: string[];
}

const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;
const IFF_MULTICAST = 0x1000;

function sysfs(name: string, file: string): string | undefined {
  try {
    return readFileSync(`/sys/class/net/${name}/${file}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

const bareV6 = (a: string) => a.split('%')[0]!.toLowerCase();

/**
 * The interfaces that are up and running now, with their addresses. Node lists only interfaces
 * that are UP and RUNNING (libuv skips the others), so a cable pulled or a link set down makes
 * its interface disappear here; the link flags (sysfs, Linux) add loopback and multicast.
 */
export function readLinks(): LinkInfo[] {
  const out: LinkInfo[] = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (!addrs || addrs.length === 0) continue;
    const flagText = sysfs(name, 'flags');
    const flags = flagText === undefined ? undefined : parseInt(flagText, 16);
    if (flags !== undefined && (flags & IFF_UP) === 0) continue;
    const internal = addrs.some((a) => a.internal);
    const v6 = addrs.filter((a) => a.family === 'IPv6');
    out.push({
      name,
      index: Number(sysfs(name, 'ifindex') ?? (v6.find((a) => a.scopeid)?.scopeid ?? 0)) || 0,
      loopback: flags !== undefined ? (flags & IFF_LOOPBACK) !== 0 : internal,
      multicast: flags !== undefined ? (flags & IFF_MULTICAST) !== 0 : !internal,
      mtu: Number(sysfs(name, 'mtu')) || 1500,
      ipv4: addrs.filter((a) => a.family === 'IPv4').map((a) => ({ address: a.address, netmask: a.netmask })),
      ipv6: v6.map((a) => ({ address: bareV6(a.address), netmask: a.netmask })),
    });
  }
  return out;
}

/** Every address of a link, IPv4 first (IPv6 without zone). */
export const addressesOf = (l: LinkInfo): string[] => [...l.ipv4.map((a) => a.address), ...l.ipv6.map((a) => a.address)];

/**
 * What changed between two looks, by interface name. An interface whose index changed (deleted
 * and re-created) is removed, then added; one whose addresses or MTU changed is 'changed'.
 */
export function diffLinks(before: ReadonlyMap<string, LinkInfo>, after: ReadonlyMap<string, LinkInfo>): LinkDiff[] {
  const diffs: LinkDiff[] = [];
  const recreated = (a: LinkInfo, b: LinkInfo) => a.index !== 0 && b.index !== 0 && a.index !== b.index;
  for (const [name, was] of before) {
    const now = after.get(name);
    if (!now || recreated(was, now)) diffs.push({ kind: 'removed', name, link: was, added: [], removed: addressesOf(was) });
  }
  for (const [name, now] of after) {
    const was = before.get(name);
    if (!was || recreated(was, now)) {
      diffs.push({ kind: 'added', name, link: now, added: addressesOf(now), removed: [] });
      continue;
    }
    const had = new Set(addressesOf(was));
    const has = new Set(addressesOf(now));
    const added = [...has].filter((a) => !had.has(a));
    const removed = [...had].filter((a) => !has.has(a));
    if (added.length || removed.length || was.mtu !== now.mtu) diffs.push({ kind: 'changed', name, link: now, added, removed });
  }
  return diffs;
}

/**
 * The one "no network" verdict of this host (its network namespace), for /healthz and /peers:
 *   waiting    no interface but loopback ever had an address (the network is not up yet)
 *   networked  one has an address now
 *   stranded   one had, none has now (a container's owner stopped, a cable, Wi-Fi off)
 */
export type NetworkVerdict = 'waiting' | 'networked' | 'stranded';

export interface HostNetworkOptions {
  /** Reads the interfaces that are up now (readLinks(), or a fake in tests). */
  read?: () => LinkInfo[];
  clock?: Clock;
  /** How often to look (ms); 0 = one look only (a fixed set of interfaces). Default 1000. */
  intervalMs?: number;
}

export type HostNetworkEvents = {
  /** After every look, whether or not anything changed. */
  look: [links: readonly LinkInfo[]];
  /** After a look that differs from the one before; `look` has been emitted first. */
  change: [diffs: LinkDiff[], links: readonly LinkInfo[]];
  warning: [err: Error];
};

/**
 * The host's network interfaces, looked at once a second, for everyone who follows them: the
 * mDNS engine (the interfaces it runs on), the loop screen (which addresses are this host's) and
 * the stranded watch (whether the namespace has any network). Node has no netlink binding, so it
 * polls: one os.networkInterfaces() and three small sysfs reads per interface each look, then a
 * diff against the last look (snapshot + diff, as Avahi, ciao and python-zeroconf keep one
 * interface monitor each).
 */
export class HostNetwork extends EventEmitter<HostNetworkEvents> {
  /** Looks taken, for whoever wants to count them (one a second while running). */
  readonly stats = { looks: 0 };
  verdict: NetworkVerdict = 'waiting';
  /** Since when no interface but loopback has an address (clock ms); undefined while one has. */
  noNetworkSince: number | undefined;
  private current = new Map<string, LinkInfo>();
  private looked = false;
  private local?: Set<string>;
  private timer?: TimerHandle;
  private running = false;
  private readonly read: () => LinkInfo[];
  private readonly clock: Clock;
  private readonly intervalMs: number;

  constructor(opts: HostNetworkOptions = {}) {
    super();
    this.read = opts.read ?? readLinks;
    this.clock = opts.clock ?? systemClock;
    this.intervalMs = opts.intervalMs ?? 1000;
  }

  /** Looks now, then every intervalMs until stop() (idempotent). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.look();
    this.schedule();
  }

  stop(): void {
    this.running = false;
    this.timer?.cancel();
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.intervalMs <= 0 || !this.running) return;
    this.timer = this.clock.setTimeout(() => {
      this.look();
      this.schedule();
    }, this.intervalMs);
  }

  /** The interfaces as of the last look (a first look is taken if there was none). */
  links(): LinkInfo[] {
    if (!this.looked) this.look();
    return [...this.current.values()];
  }

  /** Whether `address` is this host's: loopback, unspecified, or on one of its interfaces (any of them). */
  isLocal(address: string): boolean {
    if (isLoopback(address) || isUnspecified(address)) return true;
    if (!this.looked) this.look();
    this.local ??= new Set([...this.current.values()].flatMap((l) => addressesOf(l).map(normalizeAddress)));
    return this.local.has(normalizeAddress(address));
  }

  /**
   * Looks now. The snapshot and the verdict are updated first, then 'look' is emitted, then
   * 'change' with the diffs (returned; empty when nothing changed).
   */
  look(): LinkDiff[] {
    let seen: LinkInfo[];
    try {
      seen = this.read();
    } catch (err) {
      this.emit('warning', new Error(`cannot list network interfaces: ${(err as Error).message}`));
      return [];
    }
    this.stats.looks++;
    this.looked = true;
    const next = new Map(seen.map((l) => [l.name, l]));
    const diffs = diffLinks(this.current, next);
    this.current = next;
    if (diffs.length) this.local = undefined;
    this.judge(seen);
    const links = [...next.values()];
    this.emit('look', links);
    if (diffs.length) this.emit('change', diffs, links);
    return diffs;
  }

  private judge(links: readonly LinkInfo[]): void {
    if (links.some((l) => !l.loopback && l.ipv4.length + l.ipv6.length > 0)) {
      this.noNetworkSince = undefined;
      this.verdict = 'networked';
      return;
    }
    this.noNetworkSince ??= this.clock.now();
    if (this.verdict === 'networked') this.verdict = 'stranded';
  }
}
