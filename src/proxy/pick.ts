import type { Balancer } from '../cluster/balancer.js';
import type { Endpoint } from '../cluster/endpoint.js';

/** An endpoint that failed for one client, at the generation (address) tried. */
export interface FailedTry {
  generation: number;
  /** Refused, reset, handshake failed: deterministic, not retried for this client. */
  hard: boolean;
}

export type FailedTries = ReadonlyMap<Endpoint, FailedTry>;

/** What a pick reads of a cluster. */
export interface PickSource {
  /** Usable endpoints. */
  healthy(): Endpoint[];
  /** Down only on health evidence (panic mode). */
  panicCandidates(): Endpoint[];
}

/**
 * 'full': every usable endpoint has `maxPerEndpoint` clients, and nothing is being tried;
 * undefined: nothing to try now.
 */
export type Pick = Endpoint | 'full' | undefined;

export const NO_ENDPOINTS: readonly Endpoint[] = [];
export const NO_FAILURES: FailedTries = new Map();

/**
 * The endpoint for a client's next attempt: a usable one not tried yet; racing a slow attempt
 * with nothing else left, the same endpoint again (a fresh SYN beside the one TCP is
 * retransmitting); when none is usable, those down only on health evidence (panic mode); last,
 * one that only timed out for this client (a timeout proves nothing on a lossy path).
 * `busy`: endpoints with an attempt of this client pending; `failed`: what failed for it (an
 * endpoint that moved since is fresh again). Reads the cluster, changes nothing but the
 * balancer's rotation.
 */
export function pickEndpoint(source: PickSource, balancer: Balancer, maxPerEndpoint: number, busy: readonly Endpoint[], failed: FailedTries): Pick {
  const withRoom = (eps: Endpoint[]): Endpoint[] => (maxPerEndpoint === Infinity ? eps : eps.filter((ep) => ep.active < maxPerEndpoint));
  const healthy = source.healthy();
  const usable = withRoom(healthy);
  if (usable.length === 0 && healthy.length > 0 && busy.length === 0) return 'full';
  let exclude: Set<Endpoint> | undefined;
  if (failed.size > 0 || busy.length > 0) {
    exclude = new Set(busy);
    for (const [ep, f] of failed) if (f.generation === ep.generation) exclude.add(ep);
  }
  let ep = balancer.pick(usable, exclude);
  if (ep) return ep;
  if (busy.length > 0) {
    for (const b of busy) exclude!.delete(b);
    ep = balancer.pick(usable, exclude);
    if (ep) return ep;
  }
  if (usable.length === 0 || usable.every((u) => exclude?.has(u))) {
    ep = balancer.pick(withRoom(source.panicCandidates()), exclude);
    if (ep) return ep;
  }
  if (busy.length === 0 && failed.size > 0) {
    const retry = [...usable, ...source.panicCandidates()].filter((e) => {
      const f = failed.get(e);
      return f !== undefined && !f.hard && f.generation === e.generation;
    });
    return balancer.pick(retry);
  }
  return undefined;
}
