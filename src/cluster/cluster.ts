import { EventEmitter } from 'node:events';
import { formatAddressPort } from '../base/address.js';
import type { EndpointSpec, SourceKind } from '../discovery/source.js';
import { Endpoint, endpointKey, type DownReason, type HealthJudge } from './endpoint.js';
import { isHardFailure } from './evidence.js';

export type EndpointDownReason = 'removed' | DownReason;

export type ClusterEvents = {
  /** A new endpoint entered the cluster (it starts 'up'; an 'endpoint-up' follows). */
  'endpoint-added': [endpoint: Endpoint];
  /** An endpoint left its source's set (an 'endpoint-down' with 'removed' precedes it if it was up). */
  'endpoint-removed': [endpoint: Endpoint];
  /** An endpoint became usable; `was` is why it was down (undefined when it is new). */
  'endpoint-up': [endpoint: Endpoint, was?: EndpointDownReason];
  /** An endpoint stopped being usable. */
  'endpoint-down': [endpoint: Endpoint, reason: EndpointDownReason];
  /**
   * An active judge (own check, host probe, source check) changed its verdict on an endpoint
   * (emitted even when the endpoint was already down for another reason, unlike endpoint-down).
   */
  'endpoint-health': [endpoint: Endpoint, healthy: boolean, judge: HealthJudge];
  /**
   * Panic mode starts (true) or ends (false): no endpoint is usable, but some are down only on
   * health evidence (checks, probes, failed connects) and are tried anyway.
   */
  panic: [inPanic: boolean];
  /** host/port/priority/weight/txt/label changed; `addressChanged` when host or port did. */
  'endpoint-updated': [endpoint: Endpoint, addressChanged: boolean];
  /** A source reported an instance that the `where` filter keeps out (once, until it leaves or changes). */
  'endpoint-filtered': [spec: EndpointSpec, why: string];
  /** A source reported an instance that must never be an endpoint (the `screen` option: a loop), once until it leaves or changes. */
  'endpoint-refused': [spec: EndpointSpec, why: string];
  /** A source reported a second instance of a backend that is an endpoint already (the `backend` option), once until it leaves or changes. */
  'endpoint-duplicate': [spec: EndpointSpec, why: string];
  /** Something above happened (coalesced once per setEndpoints call). */
  changed: [];
};

export interface OutlierOptions {
  /**
   * Consecutive failed connects before ejection. Default 2: a timed-out or reset connect can be a
   * transient blip (a loss burst, backlog full) and costs the client only a retry on the next
   * endpoint; two in a row is a strong signal, and ejecting then keeps later clients from paying
   * that retry latency on a dead peer long before an mDNS TTL (75 s–120 min) would drop it. A hard
   * failure (refused, unreachable: the network's own answer, not a silence) ejects at once.
   */
  consecutiveFailures?: number;
  /** First ejection lasts this long; each further ejection doubles it. Default 1000 ms. */
  baseEjectionMs?: number;
  /** Cap on the ejection time. Default 30000 ms. */
  maxEjectionMs?: number;
}

export interface ClusterOptions {
  /** Keep only endpoints whose TXT record has every KEY=VALUE given (exact, case-sensitive). */
  where?: Record<string, string>;
  /** Passive outlier detection; `false` disables ejection (failures are still counted). */
  outlier?: OutlierOptions | false;
  /**
   * Screens every instance a source reports (again on recheck()): the instance as it may be used
   * (addresses that must never be dialled left out), or why it must never be an endpoint — it
   * would make a loop, see endpoint-policy.ts.
   */
  screen?: (spec: EndpointSpec) => EndpointSpec | string;
  /**
   * The backend an instance stands for: two instances with one backend are one endpoint (else it
   * gets twice its share). Default: the address and port dialled.
   */
  backend?: (spec: EndpointSpec) => string;
}

/**
 * A named set of endpoints fed by one or more discovery sources. Each source owns its subset:
 * `setEndpoints(source, specs)` replaces that subset (diffed, so counters and health survive).
 */
export class Cluster extends EventEmitter<ClusterEvents> {
  readonly name: string;
  readonly where: Readonly<Record<string, string>>;
  readonly outlier: Required<OutlierOptions> | undefined;
  private readonly byKey = new Map<string, Endpoint>();
  /** Instances the `where` filter keeps out, with why (shown in /peers and logs: a filter that matches nothing is a common mistake). */
  private readonly filtered = new Map<string, { spec: EndpointSpec; why: string; refused?: true; duplicate?: true }>();
  private readonly screen: ((spec: EndpointSpec) => EndpointSpec | string) | undefined;
  private readonly backendOf: (spec: EndpointSpec) => string;
  /** The last set of every source, for recheck(). */
  private readonly lastSets = new Map<SourceKind, readonly EndpointSpec[]>();
  private readonly ejectionTimers = new Map<Endpoint, NodeJS.Timeout>();
  private closed = false;
  private panicking = false;
  /** Times panic mode started. */
  panics = 0;

  constructor(name: string, options: ClusterOptions = {}) {
    super();
    this.name = name;
    this.where = { ...(options.where ?? {}) };
    this.screen = options.screen;
    this.backendOf = options.backend ?? ((spec) => formatAddressPort(spec.host, spec.port));
    if (options.outlier === false) {
      this.outlier = undefined;
    } else {
      const o = options.outlier ?? {};
      this.outlier = {
        consecutiveFailures: Math.max(1, o.consecutiveFailures ?? 2),
        baseEjectionMs: Math.max(1, o.baseEjectionMs ?? 1000),
        maxEjectionMs: Math.max(1, o.maxEjectionMs ?? 30_000),
      };
    }
    // Many listeners may wait for endpoints at once (one per pending client).
    this.setMaxListeners(0);
  }

  /** Whether a spec passes the `where` TXT filter. */
  matches(spec: Pick<EndpointSpec, 'txt'>): boolean {
    for (const k in this.where) if (spec.txt[k] !== this.where[k]) return false;
    return true;
  }

  /** Why `spec` does not pass the `where` filter, in words; undefined when it passes. */
  mismatch(spec: Pick<EndpointSpec, 'txt'>): string | undefined {
    const why: string[] = [];
    for (const k in this.where) {
      const v = spec.txt[k];
      if (v !== this.where[k]) why.push(`where.${k}=${this.where[k]}, its TXT has ${v === undefined ? `no ${k}` : `${k}=${v}`}`);
    }
    return why.length ? why.join('; ') : undefined;
  }

  /** Instances announced but kept out by the `where` filter, and why. */
  filteredOut(): Array<{ spec: EndpointSpec; why: string }> {
    return [...this.filtered.values()].filter((f) => !f.refused && !f.duplicate);
  }

  /** Instances left out because another instance of the same backend is the endpoint, and why. */
  duplicates(): Array<{ spec: EndpointSpec; why: string }> {
    return [...this.filtered.values()].filter((f) => f.duplicate);
  }

  /** Instances kept out because they must never be endpoints (the `screen` option), and why. */
  refused(): Array<{ spec: EndpointSpec; why: string }> {
    return [...this.filtered.values()].filter((f) => f.refused);
  }

  /**
   * Screens again every instance the sources reported last (what it knows changed:
   * a local address, a listener, another ambassador's): newly refused endpoints leave, endpoints
   * no longer refused join.
   */
  recheck(): void {
    for (const [source, specs] of this.lastSets) this.setEndpoints(source, specs);
  }

  /** Replace the set of endpoints learned from `source`. */
  setEndpoints(source: SourceKind, specs: readonly EndpointSpec[]): void {
    if (this.closed) return;
    if (this.screen) this.lastSets.set(source, specs);
    const now = Date.now();
    const seen = new Set<string>();
    const seenFiltered = new Set<string>();
    let changed = false;
    const screenedSpecs = specs.map((s) => {
      const reported: EndpointSpec = s.source === source ? s : { ...s, source };
      const key = endpointKey(source, reported.id);
      const screened = this.screen ? this.screen(reported) : reported;
      const refusal = typeof screened === 'string' ? screened : undefined;
      const spec = typeof screened === 'string' ? reported : screened;
      return { key, spec, refusal, why: refusal ?? this.mismatch(spec) };
    });
    // One endpoint per backend: one not leaving (its ambassador said goodbye, another of the
    // backend's did not), then the one that is an endpoint already, then the first reported.
    const kept = new Map<string, { key: string; label: string; score: number }>();
    for (const s of screenedSpecs) {
      if (s.why !== undefined) continue;
      const backend = this.backendOf(s.spec);
      const score = (s.spec.draining ? 0 : 2) + (this.byKey.has(s.key) ? 1 : 0);
      const cur = kept.get(backend);
      if (cur === undefined || score > cur.score) kept.set(backend, { key: s.key, label: s.spec.label, score });
    }
    for (const { key, spec, refusal, why: filteredWhy } of screenedSpecs) {
      const backend = filteredWhy === undefined ? this.backendOf(spec) : '';
      const other = filteredWhy === undefined ? kept.get(backend) : undefined;
      const duplicate = other !== undefined && other.key !== key
        ? `the same backend (${backend}) as ${other.label}, which is the endpoint: one backend, one share`
        : undefined;
      const why = filteredWhy ?? duplicate;
      if (why !== undefined) {
        seenFiltered.add(key);
        if (this.filtered.get(key)?.why !== why) {
          this.filtered.set(key, refusal !== undefined ? { spec, why, refused: true } : duplicate !== undefined ? { spec, why, duplicate: true } : { spec, why });
          this.emit(refusal !== undefined ? 'endpoint-refused' : duplicate !== undefined ? 'endpoint-duplicate' : 'endpoint-filtered', spec, why);
        }
        continue; // an endpoint whose TXT no longer matches leaves below, like a removed one
      }
      this.filtered.delete(key);
      if (seen.has(key)) continue; // a duplicate id in one set: first wins
      seen.add(key);
      const existing = this.byKey.get(key);
      if (!existing) {
        const ep = new Endpoint(spec, now);
        this.byKey.set(key, ep);
        changed = true;
        this.emit('endpoint-added', ep);
        if (ep.isUsable(now)) this.emit('endpoint-up', ep);
        continue;
      }
      const wasUsable = existing.isUsable(now);
      const was = existing.downReasonAt(now);
      const change = existing.update(spec, now);
      if (change === undefined) continue;
      changed = true;
      if (change === 'address') this.clearEjectionTimer(existing);
      this.emit('endpoint-updated', existing, change === 'address');
      // (A move resets its verdicts: coming back then is no flap.)
      if (!wasUsable && existing.isUsable(now)) {
        existing.stateSince = now;
        this.emit('endpoint-up', existing, change === 'address' ? undefined : was);
      } else if (wasUsable && !existing.isUsable(now)) {
        existing.stateSince = now;
        this.emit('endpoint-down', existing, existing.downReasonAt(now)!);
      }
    }
    for (const [key, ep] of this.byKey) {
      if (ep.source !== source || seen.has(key)) continue;
      this.remove(ep, now);
      changed = true;
    }
    for (const [key, f] of this.filtered) if (f.spec.source === source && !seenFiltered.has(key)) this.filtered.delete(key);
    if (changed) this.changed(now);
  }

  /** Every endpoint, usable or not, in insertion order. */
  endpoints(): Endpoint[] {
    return [...this.byKey.values()];
  }

  get size(): number {
    return this.byKey.size;
  }

  get(key: string): Endpoint | undefined {
    return this.byKey.get(key);
  }

  /** Endpoints usable for new connections: up (health checks pass) and not ejected. */
  healthy(now: number = Date.now()): Endpoint[] {
    const out: Endpoint[] = [];
    for (const ep of this.byKey.values()) if (ep.isUsable(now)) out.push(ep);
    return out;
  }

  /**
   * Endpoints to try when none is usable (panic mode, as Envoy's panic threshold or HAProxy's
   * backup servers): down only on health evidence — our checks, host probes, failed connects —
   * which a lossy link can fake, and still announced. Not those leaving (goodbye) or whose own
   * ambassador says the service fails (source check): those are known answers, not silences.
   */
  panicCandidates(now: number = Date.now()): Endpoint[] {
    const out: Endpoint[] = [];
    for (const ep of this.byKey.values()) {
      const why = ep.downReasonAt(now);
      if (why === 'host-probe' || why === 'health-check' || why === 'outlier') out.push(ep);
    }
    return out;
  }

  /** True while no endpoint is usable but some are panic candidates. */
  get inPanic(): boolean {
    return this.panicking;
  }

  /**
   * Resolve true as soon as a usable endpoint exists (at once if one does), false when
   * `timeoutMs` passes, the signal aborts, or the cluster closes.
   */
  waitForEndpoint(timeoutMs: number, signal?: AbortSignal, accept: (ep: Endpoint) => boolean = () => true): Promise<boolean> {
    const found = (): boolean => this.healthy().some(accept);
    if (found()) return Promise.resolve(true);
    if (this.closed || signal?.aborted || timeoutMs <= 0) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (result: boolean): void => {
        clearTimeout(timer);
        this.off('changed', onChange);
        signal?.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const onChange = (): void => {
        if (this.closed) done(false);
        else if (found()) done(true);
      };
      const onAbort = (): void => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.on('changed', onChange);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Active judges report here: our own checks ('own-check', reason 'health-check'), the host
   * liveness check ('host-probe') and the advertiser's check of its service ('source-check'). Emits
   * endpoint-health, and endpoint-up/down on transitions.
   */
  setHealth(ep: Endpoint, healthy: boolean, judge: HealthJudge = 'own-check'): void {
    if (ep.removed || this.byKey.get(ep.key) !== ep) return;
    const field = judge === 'own-check' ? 'checkHealthy' : judge === 'host-probe' ? 'hostAlive' : 'sourceServing';
    if (ep[field] === healthy) return;
    // Our check of the address dialled now failed and the peer has another address not tried
    // yet: the next checks go there before it is marked down.
    if (!healthy && judge === 'own-check' && ep.failOver(ep.host)) return;
    const now = Date.now();
    const before = ep.downReasonAt(now);
    ep[field] = healthy;
    this.emit('endpoint-health', ep, healthy, judge);
    this.emitTransition(ep, before, now);
  }

  /**
   * A connect to `ep` failed with errno-style `code`. May eject it as an outlier: at once on a
   * hard failure (refused, unreachable), after `consecutiveFailures` in a row otherwise — but
   * never the last usable endpoint: passive evidence alone cannot tell a dead peer from a lossy
   * path, and with nothing left every client would wait for an endpoint that is not coming.
   * A soft failure (timeout, reset) of an attempt that started (`startedAt`) before a later one
   * connected is counted but no evidence: the endpoint answered meanwhile, only that SYN was lost.
   */
  reportConnectFailure(ep: Endpoint, code?: string, startedAt?: number): void {
    ep.failures++;
    if (startedAt !== undefined && startedAt < ep.lastConnectedAt && !isHardFailure(code)) return;
    ep.consecutiveFailures++;
    const o = this.outlier;
    if (!o || ep.removed || this.closed) return;
    const now = Date.now();
    if (ep.ejectedUntil > now) return; // already out; in-flight attempts failing add nothing
    if (ep.consecutiveFailures < o.consecutiveFailures && !isHardFailure(code)) return;
    const before = ep.downReasonAt(now);
    if (before !== undefined) return; // down anyway: ejecting adds nothing
    if (!this.hasOtherUsable(ep, now)) {
      this.sparedLast++;
      return;
    }
    const ms = Math.min(o.maxEjectionMs, o.baseEjectionMs * 2 ** Math.min(ep.ejections, 30));
    ep.ejections++;
    ep.ejectedUntil = now + ms;
    this.clearEjectionTimer(ep);
    const timer = setTimeout(() => this.endEjection(ep), ms);
    timer.unref();
    this.ejectionTimers.set(ep, timer);
    this.emitTransition(ep, before, now);
  }

  /** Ejections skipped because the endpoint was the last usable one. */
  sparedLast = 0;

  private hasOtherUsable(ep: Endpoint, now: number): boolean {
    for (const other of this.byKey.values()) if (other !== ep && other.isUsable(now)) return true;
    return false;
  }

  /** A connect to `ep` succeeded: clears the failure streak and the ejection back-off. */
  reportConnectSuccess(ep: Endpoint): void {
    ep.lastConnectedAt = Date.now();
    ep.consecutiveFailures = 0;
    ep.ejections = 0;
  }

  /** Stop timers and drop all endpoints (emitting their removal). The cluster is inert afterwards. */
  close(): void {
    if (this.closed) return;
    const now = Date.now();
    for (const ep of [...this.byKey.values()]) this.remove(ep, now);
    this.lastSets.clear();
    this.closed = true;
    this.panicking = false;
    this.emit('changed'); // also wakes every waitForEndpoint() with false
  }

  private endEjection(ep: Endpoint): void {
    this.ejectionTimers.delete(ep);
    if (ep.removed) return;
    const now = Date.now();
    // As it was just before the ejection ends (the timer may fire a millisecond early or late).
    const before: DownReason | undefined = ep.downReasonAt(ep.ejectedUntil - 1);
    ep.ejectedUntil = 0;
    // Probation: the next failed connect ejects again at once, with the doubled back-off.
    if (this.outlier) ep.consecutiveFailures = this.outlier.consecutiveFailures - 1;
    this.emitTransition(ep, before, now);
  }

  private remove(ep: Endpoint, now: number): void {
    const wasUsable = ep.isUsable(now);
    this.byKey.delete(ep.key);
    this.clearEjectionTimer(ep);
    ep.removed = true;
    if (wasUsable) {
      ep.stateSince = now;
      this.emit('endpoint-down', ep, 'removed');
    }
    this.emit('endpoint-removed', ep);
  }

  private clearEjectionTimer(ep: Endpoint): void {
    const t = this.ejectionTimers.get(ep);
    if (t) {
      clearTimeout(t);
      this.ejectionTimers.delete(ep);
    }
  }

  private emitTransition(ep: Endpoint, before: DownReason | undefined, now: number): void {
    const after = ep.downReasonAt(now);
    if (before === after) return;
    // Only up<->down transitions are events; a down endpoint changing reason is just 'changed'.
    if (after === undefined || before === undefined) ep.stateSince = now;
    if (after === undefined) {
      // Judged down on evidence and back while still announced: a flap (or a recovery).
      if (before === 'host-probe' || before === 'health-check' || before === 'outlier') ep.flaps++;
      this.emit('endpoint-up', ep, before);
    } else if (before === undefined) this.emit('endpoint-down', ep, after);
    this.changed(now);
  }

  /** Emits 'changed', after updating panic mode. */
  private changed(now: number): void {
    let usable = false;
    let candidates = false;
    for (const ep of this.byKey.values()) {
      const why = ep.downReasonAt(now);
      if (why === undefined && !ep.removed) {
        usable = true;
        break;
      }
      if (why === 'host-probe' || why === 'health-check' || why === 'outlier') candidates = true;
    }
    const panic = !usable && candidates && !this.closed;
    if (panic !== this.panicking) {
      this.panicking = panic;
      if (panic) this.panics++;
      this.emit('panic', panic);
    }
    this.emit('changed');
  }
}
