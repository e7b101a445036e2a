import { readFileSync } from 'node:fs';

/**
 * Circuit breakers of one listener (as Envoy's per-cluster thresholds and HAProxy's maxconn): past
 * a limit a new client is refused at once instead of costing two more file descriptors. A loop or
 * a flood reaches them within a fraction of a second; a normal workload never does.
 */
export interface ListenerLimits {
  /** Clients open or waiting at once. */
  maxConnections: number;
  /** Clients waiting for an endpoint or for their upstream connect (a --connect listener only). */
  maxPending: number;
  /** Clients piped to one endpoint at once (a --connect listener only). */
  maxPerEndpoint: number;
}

/** Which limit refused a client (the `limit` label of the metrics, the option names). */
export type LimitName = 'max-connections' | 'max-pending' | 'max-per-endpoint';

export const LIMIT_NAMES: readonly LimitName[] = ['max-connections', 'max-pending', 'max-per-endpoint'];

/** Per-listener default when the file-descriptor limit allows it (Envoy's default is 1024 per cluster). */
export const DEFAULT_MAX_CONNECTIONS = 4096;
export const DEFAULT_MAX_PENDING = 1024;
/**
 * File descriptors kept for everything that is not a proxied connection: mDNS sockets, health
 * checks (one per endpoint at a time), DNS lookups, the admin endpoint, files being read.
 */
export const FD_RESERVE = 256;

/**
 * Refused clients that get their error reply (a RESP error) and a graceful close at the same
 * time (each holds its socket for about a round trip); beyond this they are just closed, so a
 * flood cannot hold file descriptors in replies.
 */
export const MAX_LINGERING_REFUSALS = 256;

/** The process's limit on open file descriptors (Node raises the soft limit to the hard one at start); undefined when unknown. */
export function fileDescriptorLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    if (soft === undefined || soft === 'unlimited') return undefined;
    const n = Number(soft);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined; // not Linux: no /proc
  }
}

/**
 * Defaults for each of `listeners` listeners: every proxied connection costs two file descriptors
 * (client and upstream), and the listeners share what the process may open after FD_RESERVE, so
 * a flood on one of them cannot starve the others (nor the admin endpoint, nor mDNS). `fdLimit`:
 * fileDescriptorLimit(), undefined when unknown.
 */
export function defaultLimits(listeners: number, fdLimit: number | undefined): ListenerLimits {
  let maxConnections = DEFAULT_MAX_CONNECTIONS;
  if (fdLimit !== undefined) {
    const share = Math.floor((fdLimit - FD_RESERVE) / 2 / Math.max(1, listeners));
    maxConnections = Math.max(16, Math.min(maxConnections, share));
  }
  return { maxConnections, maxPending: Math.min(DEFAULT_MAX_PENDING, maxConnections), maxPerEndpoint: maxConnections };
}

