import { formatAddressPort } from '../base/address.js';
import type { EndpointSpec, SourceKind } from '../discovery/source.js';

/**
 * Why an endpoint is not usable. 'goodbye': its source says it is leaving; 'source-check': the
 * ambassador that advertises it says its own check of the service fails (answered in a host
 * probe); 'host-probe': the peer's host (its ambassador) stopped answering host probes;
 * 'health-check': our own active checks failed; 'outlier': connects failed.
 */
export type DownReason = 'goodbye' | 'source-check' | 'host-probe' | 'health-check' | 'outlier';
export type HealthState = 'up' | 'down';

/**
 * Who judges an endpoint's health besides passive outlier detection (which always runs).
 * 'host-probe': a peer ambassador advertises it; it checks the service itself (source check) and
 * answers our host probes. 'own-check': nobody else can tell (Avahi, --static, --srv), we check
 * it ourselves. 'passive': no active check at all (`check=none`).
 */
export type HealthOrigin = 'host-probe' | 'own-check' | 'passive';

/** The active verdicts an endpoint carries, one per judge. */
export type HealthJudge = 'own-check' | 'host-probe' | 'source-check';

/** Unique key of an endpoint inside a cluster: the same id from two sources are two endpoints. */
export function endpointKey(source: SourceKind, id: string): string {
  return `${source}/${id}`;
}

/**
 * One instance of a service, as the cluster tracks it. The spec fields come from discovery and
 * may change (migration); counters and health state survive such updates. State is changed
 * only through the owning Cluster, which emits events for every transition.
 */
export class Endpoint {
  readonly key: string;
  readonly id: string;
  readonly source: SourceKind;
  /** The address dialled now: one of `addresses`. */
  host: string;
  /** Every address of the peer, likeliest first. */
  addresses: string[];
  port: number;
  priority: number;
  weight: number;
  txt: Record<string, string>;
  label: string;
  expiresAt: number | undefined;

  /** Every source that reports it, when more than one may (mDNS and a registry). */
  via: SourceKind[];
  /** Named by the operator: from an authenticated registry (credentials may go to it). */
  named: boolean;
  /** The source announced its departure (mDNS goodbye); removal follows unless it is revoked. */
  draining: boolean;
  /** Result of our own active health checks (true until a checker says otherwise). */
  checkHealthy = true;
  /** The peer host answers host probes (true until the host liveness check says otherwise). */
  hostAlive = true;
  /** The advertising ambassador says it serves this port (reported in host probe replies). */
  sourceServing = true;
  /** Who actively judges this endpoint's health (set by the checker or the host liveness check adopting it). */
  healthOrigin: HealthOrigin = 'passive';
  /** Epoch ms until which passive outlier detection keeps this endpoint out; 0 = not ejected. */
  ejectedUntil = 0;
  /** How many times in a row the endpoint was ejected without a successful connect in between. */
  ejections = 0;
  /** Connect failures in a row (reset by a successful connect). */
  consecutiveFailures = 0;
  /** Epoch ms of the last successful connect (0: none yet). */
  lastConnectedAt = 0;
  /** Times it came back up after being judged down (host probe, own check, outlier) while announced. */
  flaps = 0;

  /** Proxied connections currently open to this endpoint. */
  active = 0;
  /** Proxied connections ever established / connect attempts that failed. */
  connections = 0;
  failures = 0;
  /** Bytes received from / sent to the endpoint over closed proxied connections. */
  bytesIn = 0;
  bytesOut = 0;
  /** Epoch ms when the endpoint was last part of its source's set. */
  lastSeen: number;
  /** Epoch ms of its last up/down transition (its arrival when there was none): "down since". */
  stateSince: number;
  /** Bumped whenever host/port change, so in-flight checks on the old address can be discarded. */
  generation = 0;
  /** True once the cluster dropped it; holders of a reference can notice. */
  removed = false;
  /** Addresses that failed since the peer's addresses last changed (see failOver). */
  private failedAddresses: Set<string> | undefined;

  constructor(spec: EndpointSpec, now: number = Date.now()) {
    this.key = endpointKey(spec.source, spec.id);
    this.id = spec.id;
    this.source = spec.source;
    this.host = spec.host;
    this.addresses = addressesOf(spec);
    this.port = spec.port;
    this.priority = spec.priority;
    this.weight = spec.weight;
    this.txt = { ...spec.txt };
    this.label = spec.label;
    this.expiresAt = spec.expiresAt;
    this.draining = spec.draining ?? false;
    this.via = spec.via ?? [spec.source];
    this.named = spec.named ?? false;
    this.lastSeen = now;
    this.stateSince = now;
  }

  get address(): string {
    return formatAddressPort(this.host, this.port);
  }

  /** 'down' when active checks failed (reported first) or while ejected as an outlier. */
  stateAt(now: number): HealthState {
    return this.downReasonAt(now) === undefined ? 'up' : 'down';
  }

  downReasonAt(now: number): DownReason | undefined {
    if (this.draining) return 'goodbye';
    if (!this.sourceServing) return 'source-check';
    if (!this.hostAlive) return 'host-probe';
    if (!this.checkHealthy) return 'health-check';
    if (this.ejectedUntil > now) return 'outlier';
    return undefined;
  }

  get state(): HealthState {
    return this.stateAt(Date.now());
  }

  get downReason(): DownReason | undefined {
    return this.downReasonAt(Date.now());
  }

  /** Usable for new connections: not removed, passing health checks, not ejected. */
  isUsable(now: number = Date.now()): boolean {
    return !this.removed && this.downReasonAt(now) === undefined;
  }

  /**
   * Apply a new spec. Returns 'address' if host or port changed (health state is then reset, as
   * it described another address), 'meta' for other changes, undefined if nothing changed.
   */
  update(spec: EndpointSpec, now: number = Date.now()): 'address' | 'meta' | undefined {
    this.lastSeen = now;
    this.expiresAt = spec.expiresAt;
    this.via = spec.via ?? [spec.source];
    this.named = spec.named ?? false;
    let change: 'address' | 'meta' | undefined;
    const addresses = addressesOf(spec);
    const sameAddresses = addresses.length === this.addresses.length && addresses.every((a, i) => a === this.addresses[i]);
    // Moved: another port, or the address in use is no longer the peer's. An address joining or
    // leaving beside it (the IPv4 arriving after the IPv6) is no move: open connections stay,
    // new ones use the likeliest address.
    if (spec.port !== this.port || !addresses.includes(this.host)) {
      this.host = spec.host;
      this.addresses = addresses;
      this.failedAddresses = undefined;
      this.port = spec.port;
      this.generation++;
      this.checkHealthy = true;
      this.hostAlive = true;
      this.sourceServing = true;
      this.ejectedUntil = 0;
      this.ejections = 0;
      this.consecutiveFailures = 0;
      change = 'address';
    } else if (!sameAddresses) {
      this.addresses = addresses;
      this.host = spec.host;
      this.failedAddresses = undefined;
      change = 'meta';
    }
    if ((spec.draining ?? false) !== this.draining) {
      this.draining = spec.draining ?? false;
      change ??= 'meta';
    }
    if (
      spec.priority !== this.priority ||
      spec.weight !== this.weight ||
      spec.label !== this.label ||
      !sameTxt(spec.txt, this.txt)
    ) {
      this.priority = spec.priority;
      this.weight = spec.weight;
      this.label = spec.label;
      this.txt = { ...spec.txt };
      change ??= 'meta';
    }
    return change;
  }

  /**
   * A connect (or health check) to `failed`, one of the peer's addresses, did not work: move on
   * to the next address not tried yet and return true. False when the peer has no other address
   * or every one failed: then it is the endpoint that is down (and the next round starts over).
   */
  failOver(failed: string): boolean {
    if (this.addresses.length < 2 || !this.addresses.includes(failed)) return false;
    (this.failedAddresses ??= new Set()).add(failed);
    const next = this.addresses.find((a) => !this.failedAddresses!.has(a));
    if (next === undefined) {
      this.failedAddresses = undefined;
      return false;
    }
    this.host = next;
    return true;
  }

  /** Plain snapshot for /peers and logs. */
  toJSON(): Record<string, unknown> {
    const now = Date.now();
    return {
      key: this.key,
      id: this.id,
      source: this.source,
      label: this.label,
      host: this.host,
      addresses: this.addresses,
      port: this.port,
      priority: this.priority,
      weight: this.weight,
      txt: this.txt,
      state: this.stateAt(now),
      downReason: this.downReasonAt(now),
      healthOrigin: this.healthOrigin,
      ejectedUntil: this.ejectedUntil > now ? this.ejectedUntil : undefined,
      active: this.active,
      connections: this.connections,
      failures: this.failures,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      lastSeen: this.lastSeen,
    };
  }
}

function addressesOf(spec: EndpointSpec): string[] {
  const list = spec.addresses?.length ? [...spec.addresses] : [spec.host];
  return list.includes(spec.host) ? list : [spec.host, ...list];
}

function sameTxt(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (b[k] !== a[k]) return false;
  return true;
}
