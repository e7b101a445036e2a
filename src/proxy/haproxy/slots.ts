import type { BalancerName } from '../../cluster/balancer.js';
import type { DownReason } from '../../cluster/endpoint.js';

/**
 * The mapping from a cluster's endpoints to HAProxy server slots: pure functions, no I/O.
 *
 * A backend has a fixed number of pre-allocated servers (slots) per tier, created at start
 * (`server-template`), so membership changes never need a reload: a new endpoint fills a free
 * slot (`set server … addr … port …`, `weight`, `state ready`), a leaving one empties it. HAProxy
 * never checks an endpoint: the slot's state is the ambassador's verdict.
 *
 * balance=srv (RFC 2782 priorities) has two tiers, HAProxy's active and backup servers: the best
 * priority level with a usable endpoint fills the active slots, the next level the backup ones.
 * HAProxy has no third level: endpoints of worse priorities get no slot until the levels above
 * have no usable endpoint, and are then promoted by the ambassador (one runtime API round trip),
 * not by HAProxy on its own.
 */

export type SlotState = 'ready' | 'drain' | 'maint';
export type Tier = 'active' | 'backup';

/** What the mapping knows of an endpoint (a snapshot of cluster/endpoint.ts's Endpoint). */
export interface EndpointFacts {
  key: string;
  host: string;
  port: number;
  priority: number;
  weight: number;
  /** Why it is not usable now; undefined = usable. */
  down?: DownReason;
}

/** One pre-allocated server of a backend. */
export interface Slot {
  /** Server name in HAProxy: `s1`… for the active tier, `b1`… for the backup tier. */
  readonly name: string;
  readonly tier: Tier;
  /** Key of the endpoint it carries; undefined = free. A retiring slot keeps it. */
  endpoint?: string;
  host: string;
  port: number;
  /** HAProxy weight, 0-256. */
  weight: number;
  state: SlotState;
  /**
   * Its endpoint left, moved or changed tier: no new connection goes there, but the connections
   * open to its address stay until they end (or are shut down); the caller frees it then.
   */
  retiring?: boolean;
}

/** Address of a free slot: HAProxy needs one (a port of 0 would mean "the client's port"). */
export const FREE_HOST = '0.0.0.0';
export const FREE_PORT = 1;

export function slotName(tier: Tier, n: number): string {
  return `${tier === 'active' ? 's' : 'b'}${n}`;
}

/** A table of free slots: `active` active ones and `backup` backup ones. */
export function emptySlots(capacity: Record<Tier, number>): Slot[] {
  const out: Slot[] = [];
  for (const tier of ['active', 'backup'] as const) {
    for (let i = 1; i <= capacity[tier]; i++) out.push({ name: slotName(tier, i), tier, host: FREE_HOST, port: FREE_PORT, weight: 1, state: 'maint' });
  }
  return out;
}

/** `slots` grown to `capacity` (existing slots kept as they are, new ones free). */
export function growSlots(slots: readonly Slot[], capacity: Record<Tier, number>): Slot[] {
  const out: Slot[] = [];
  for (const tier of ['active', 'backup'] as const) {
    const mine = slots.filter((s) => s.tier === tier).map((s) => ({ ...s }));
    out.push(...mine);
    for (let i = mine.length + 1; i <= capacity[tier]; i++) out.push({ name: slotName(tier, i), tier, host: FREE_HOST, port: FREE_PORT, weight: 1, state: 'maint' });
  }
  return out;
}

export function capacityOf(slots: readonly Slot[]): Record<Tier, number> {
  return { active: slots.filter((s) => s.tier === 'active').length, backup: slots.filter((s) => s.tier === 'backup').length };
}

/** Down only on evidence a lossy link can fake: tried anyway in panic mode (as the Node data plane does). */
function panicCandidate(down: DownReason | undefined): boolean {
  return down === 'host-probe' || down === 'health-check' || down === 'outlier';
}

/**
 * SRV weights (0-65535) as HAProxy weights (0-256), proportionally. As the Node data plane's
 * balancer: weight 0 gets no traffic while another endpoint of its level has a weight, and
 * every endpoint the same share when all have 0.
 */
export function haproxyWeights(weights: readonly number[]): number[] {
  const max = Math.max(0, ...weights);
  if (max === 0) return weights.map(() => 1);
  return weights.map((w) => (w <= 0 ? 0 : Math.max(1, Math.round((w * 256) / max))));
}

export interface SlotPlanInput {
  balance: BalancerName;
  endpoints: readonly EndpointFacts[];
  /** The cluster is in panic mode: endpoints down only on health evidence carry traffic. */
  panic: boolean;
  /** The table as it is now (not changed). */
  slots: readonly Slot[];
}

export interface SlotPlan {
  /** The table wanted: same slots, same order. */
  slots: Slot[];
  /** Endpoints per tier that found no free slot: the table must grow (a reload). */
  missing: Record<Tier, number>;
}

interface Wanted {
  /** undefined: no slot of its own wanted (balance=srv, not in the two best levels): keep one if it has it. */
  tier?: Tier;
  state: SlotState;
  weight: number;
}

/** What each endpoint should be: tier, state, weight. */
function wanted(input: SlotPlanInput): Map<string, Wanted> {
  const out = new Map<string, Wanted>();
  const serving = (ep: EndpointFacts): boolean => ep.down === undefined || (input.panic && panicCandidate(ep.down));
  // A goodbye or the advertiser's own withdrawal: no new connections, the open ones stay.
  const idleState = (ep: EndpointFacts): SlotState => (ep.down === 'goodbye' || ep.down === 'source-check' ? 'drain' : 'maint');
  if (input.balance !== 'srv') {
    for (const ep of input.endpoints) out.set(ep.key, { tier: 'active', state: serving(ep) ? 'ready' : idleState(ep), weight: 1 });
    return out;
  }
  const levels = [...new Set(input.endpoints.filter(serving).map((ep) => ep.priority))].sort((a, b) => a - b);
  const tiers: Array<[Tier, number | undefined]> = [['active', levels[0]], ['backup', levels[1]]];
  for (const [tier, level] of tiers) {
    if (level === undefined) continue;
    const group = input.endpoints.filter((ep) => serving(ep) && ep.priority === level);
    const weights = haproxyWeights(group.map((ep) => ep.weight));
    group.forEach((ep, i) => out.set(ep.key, { tier, state: 'ready', weight: weights[i]! }));
  }
  for (const ep of input.endpoints) {
    if (!out.has(ep.key)) out.set(ep.key, { state: serving(ep) ? 'maint' : idleState(ep), weight: 1 });
  }
  return out;
}

/**
 * The slot table for the endpoints as they are now. An endpoint keeps its slot while its
 * address and tier stay the same (only state and weight change); otherwise its old slot retires
 * (state maint, address kept for the connections still open there) and it takes the first free
 * slot of its tier. Retiring slots are freed by the caller (freeSlot) once their connections
 * are gone. Deterministic: the same input gives the same table.
 */
export function planSlots(input: SlotPlanInput): SlotPlan {
  const slots = input.slots.map((s) => ({ ...s }));
  const want = wanted(input);
  const byKey = new Map(input.endpoints.map((ep) => [ep.key, ep]));
  const placed = new Set<string>();
  for (const slot of slots) {
    if (slot.endpoint === undefined || slot.retiring) continue;
    const ep = byKey.get(slot.endpoint);
    const w = ep && want.get(ep.key)!;
    if (!ep || !w || ep.host !== slot.host || ep.port !== slot.port || (w.tier !== undefined && w.tier !== slot.tier)) {
      slot.retiring = true;
      slot.state = 'maint';
      continue;
    }
    placed.add(ep.key);
    slot.state = w.state;
    slot.weight = w.weight;
  }
  const missing: Record<Tier, number> = { active: 0, backup: 0 };
  for (const ep of input.endpoints) {
    const w = want.get(ep.key)!;
    if (placed.has(ep.key) || w.tier === undefined) continue;
    const free = slots.find((s) => s.tier === w.tier && s.endpoint === undefined && !s.retiring);
    if (!free) {
      missing[w.tier]++;
      continue;
    }
    free.endpoint = ep.key;
    free.host = ep.host;
    free.port = ep.port;
    free.weight = w.weight;
    free.state = w.state;
    placed.add(ep.key);
  }
  return { slots, missing };
}

/** A retiring slot whose connections are gone becomes free (HAProxy keeps its last address, in maint). */
export function freeSlot(slot: Slot): Slot {
  return { name: slot.name, tier: slot.tier, host: slot.host, port: slot.port, weight: slot.weight, state: 'maint' };
}

/**
 * Runtime API commands that turn slot `from` (what HAProxy has) into `to`. Order matters: a slot
 * leaving service goes to maint before its address changes; one entering gets its address and
 * weight before it is made ready, so no connection goes to a half-set server.
 */
export function slotCommands(backend: string, from: Slot, to: Slot): string[] {
  const server = `${backend}/${from.name}`;
  const out: string[] = [];
  if (to.state === 'maint' && from.state !== 'maint') out.push(`set server ${server} state maint`);
  if (from.host !== to.host || from.port !== to.port) out.push(`set server ${server} addr ${to.host} port ${to.port}`);
  if (from.weight !== to.weight) out.push(`set server ${server} weight ${to.weight}`);
  if (to.state !== 'maint' && from.state !== to.state) out.push(`set server ${server} state ${to.state}`);
  return out;
}
