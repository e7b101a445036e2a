import type { Endpoint } from './endpoint.js';

/** Names accepted by createBalancer, the first is the default. */
export const BALANCER_NAMES = ['round-robin', 'least-conn', 'random', 'srv'] as const;
export type BalancerName = (typeof BALANCER_NAMES)[number];
export const DEFAULT_BALANCER: BalancerName = 'round-robin';

export interface Balancer {
  readonly name: BalancerName;
  /**
   * Choose one of `endpoints` (normally cluster.healthy()) that is not in `exclude` (endpoints
   * that already failed for this client). Undefined when none is left.
   */
  pick(endpoints: readonly Endpoint[], exclude?: ReadonlySet<Endpoint>): Endpoint | undefined;
}

export interface BalancerOptions {
  /** Source of randomness in [0, 1) for 'random' and 'srv'; inject a seeded one in tests. */
  random?: () => number;
}

export function isBalancerName(name: string): name is BalancerName {
  return (BALANCER_NAMES as readonly string[]).includes(name);
}

export function createBalancer(name: string = DEFAULT_BALANCER, options: BalancerOptions = {}): Balancer {
  const random = options.random ?? Math.random;
  switch (name) {
    case 'round-robin':
      return new RoundRobinBalancer();
    case 'least-conn':
      return new LeastConnBalancer();
    case 'random':
      return new RandomBalancer(random);
    case 'srv':
      return new SrvBalancer(random);
    default:
      throw new Error(`unknown balancer "${name}" (expected one of: ${BALANCER_NAMES.join(', ')})`);
  }
}

const NONE: ReadonlySet<Endpoint> = new Set();

/**
 * Cycles through the list. A pick with exclusions (a client's retry or raced attempt: the
 * excluded endpoints failed or are pending for it) takes the next one without moving the
 * rotation: else, with two endpoints and one of them slow, each client's race would move the
 * rotation past the good one and every new client would start at the slow one again.
 */
export class RoundRobinBalancer implements Balancer {
  readonly name = 'round-robin';
  private next = 0;

  pick(endpoints: readonly Endpoint[], exclude: ReadonlySet<Endpoint> = NONE): Endpoint | undefined {
    const n = endpoints.length;
    if (n === 0) return undefined;
    const start = this.next % n;
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      const ep = endpoints[i]!;
      if (exclude.has(ep)) continue;
      if (exclude.size === 0) this.next = i + 1;
      return ep;
    }
    return undefined;
  }
}

/** Fewest active connections; ties are rotated so equal endpoints share the load. */
export class LeastConnBalancer implements Balancer {
  readonly name = 'least-conn';
  private next = 0;

  pick(endpoints: readonly Endpoint[], exclude: ReadonlySet<Endpoint> = NONE): Endpoint | undefined {
    const n = endpoints.length;
    if (n === 0) return undefined;
    const start = this.next % n;
    let best: Endpoint | undefined;
    let bestIndex = 0;
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      const ep = endpoints[i]!;
      if (exclude.has(ep)) continue;
      if (best === undefined || ep.active < best.active) {
        best = ep;
        bestIndex = i;
      }
    }
    if (best) this.next = bestIndex + 1;
    return best;
  }
}

/** Uniformly random. */
export class RandomBalancer implements Balancer {
  readonly name = 'random';
  constructor(private readonly random: () => number = Math.random) {}

  pick(endpoints: readonly Endpoint[], exclude: ReadonlySet<Endpoint> = NONE): Endpoint | undefined {
    const candidates = exclude.size === 0 ? endpoints : endpoints.filter((e) => !exclude.has(e));
    if (candidates.length === 0) return undefined;
    return candidates[Math.min(candidates.length - 1, Math.floor(this.random() * candidates.length))];
  }
}

/**
 * RFC 2782 selection: only the lowest-priority group that has a candidate is considered; inside
 * it an endpoint is chosen with probability weight / sum(weights). Weight-0 endpoints get
 * traffic only when every candidate of the group has weight 0 (then uniformly).
 */
export class SrvBalancer implements Balancer {
  readonly name = 'srv';
  constructor(private readonly random: () => number = Math.random) {}

  pick(endpoints: readonly Endpoint[], exclude: ReadonlySet<Endpoint> = NONE): Endpoint | undefined {
    let priority = Infinity;
    for (const ep of endpoints) if (!exclude.has(ep) && ep.priority < priority) priority = ep.priority;
    if (priority === Infinity) return undefined;
    let total = 0;
    let count = 0;
    for (const ep of endpoints) {
      if (ep.priority !== priority || exclude.has(ep)) continue;
      count++;
      total += Math.max(0, ep.weight);
    }
    if (total === 0) {
      // All weights 0: uniform among the group.
      let nth = Math.min(count - 1, Math.floor(this.random() * count));
      for (const ep of endpoints) {
        if (ep.priority !== priority || exclude.has(ep)) continue;
        if (nth-- === 0) return ep;
      }
      return undefined;
    }
    const target = this.random() * total;
    let running = 0;
    let last: Endpoint | undefined;
    for (const ep of endpoints) {
      if (ep.priority !== priority || exclude.has(ep) || ep.weight <= 0) continue;
      running += ep.weight;
      last = ep;
      if (target < running) return ep;
    }
    return last; // floating-point edge: target ≈ total
  }
}
