import type { DownReason, Endpoint } from '../cluster/endpoint.js';
import type { SourceKind } from '../discovery/source.js';

/** What the history reads of a --connect listener: its endpoints and its accepted-clients counter. */
export interface HistorySubject {
  readonly cluster: { endpoints(): Endpoint[] };
  readonly listener: { readonly accepted: number };
}

/** An endpoint that left its cluster within the last minutes, and why. */
export interface DepartedEndpoint {
  label: string;
  source: SourceKind;
  address: string;
  /** Its down reason when it left; 'removed' when it left while up (its record expired, the source dropped it). */
  reason: DownReason | 'removed';
  /** Epoch ms since when it was no longer used (its last up/down transition). */
  since: number;
  /** Epoch ms of the sample that found it gone. */
  goneAt: number;
}

export interface EndpointHistoryOptions {
  /** Samples kept per series (one a second). Default 180: the last three minutes. */
  samples?: number;
  /** How long a departed endpoint is remembered. Default 10 minutes. */
  departedKeepMs?: number;
  /** At most this many departed endpoints per listener (the newest). Default 8. */
  departedMax?: number;
}

/** Per-second deltas of a counter in a fixed ring: memory stays the same however long it runs. */
class Ring {
  private readonly values: Uint32Array;
  private head = 0;
  private filled = 0;
  private last: number;

  constructor(size: number, start: number) {
    this.values = new Uint32Array(size);
    this.last = start;
  }

  push(counter: number): void {
    // A counter never goes down; if it did (a reset), count from the new value.
    const delta = counter >= this.last ? counter - this.last : 0;
    this.last = counter;
    this.values[this.head] = Math.min(delta, 0xffffffff);
    this.head = (this.head + 1) % this.values.length;
    this.filled = Math.min(this.filled + 1, this.values.length);
  }

  /** Oldest to newest. */
  toArray(): number[] {
    const out = new Array<number>(this.filled);
    const size = this.values.length;
    for (let i = 0; i < this.filled; i++) out[i] = this.values[(this.head - this.filled + i + size) % size]!;
    return out;
  }

  latest(): number {
    return this.filled === 0 ? 0 : this.values[(this.head - 1 + this.values.length) % this.values.length]!;
  }
}

interface EndpointRings {
  connections: Ring;
  failures: Ring;
}

/** The rates of one endpoint, oldest sample first (one a second). */
export interface EndpointRates {
  connections: number[];
  failures: number[];
}

/**
 * What the status page shows of the last minutes that no live object keeps: connections/s and
 * connect failures/s per endpoint and accepted clients/s per listener, from the counters the data
 * path already keeps, read once a second (nothing runs per connection); and the endpoints that left
 * a cluster, with why. Fixed rings: about 1.5 KB per endpoint, whatever the uptime. The admin
 * server calls sample() once a second.
 */
export class EndpointHistory {
  readonly samples: number;
  /** Samples taken so far. */
  seq = 0;
  private readonly endpoints = new Map<Endpoint, EndpointRings>();
  private readonly listeners = new Map<HistorySubject, Ring>();
  private readonly departed = new Map<HistorySubject, DepartedEndpoint[]>();
  private readonly owner = new Map<Endpoint, HistorySubject>();
  private readonly departedKeepMs: number;
  private readonly departedMax: number;

  constructor(private readonly subjects: () => readonly HistorySubject[], options: EndpointHistoryOptions = {}) {
    this.samples = Math.max(2, options.samples ?? 180);
    this.departedKeepMs = options.departedKeepMs ?? 10 * 60_000;
    this.departedMax = options.departedMax ?? 8;
  }

  /** Reads every counter once: one more sample in every series. */
  sample(now = Date.now()): void {
    this.seq++;
    for (const s of this.subjects()) {
      let accepted = this.listeners.get(s);
      if (!accepted) this.listeners.set(s, (accepted = new Ring(this.samples, s.listener.accepted)));
      accepted.push(s.listener.accepted);
      for (const ep of s.cluster.endpoints()) {
        let r = this.endpoints.get(ep);
        if (!r) {
          r = { connections: new Ring(this.samples, ep.connections), failures: new Ring(this.samples, ep.failures) };
          this.endpoints.set(ep, r);
          this.owner.set(ep, s);
        }
        r.connections.push(ep.connections);
        r.failures.push(ep.failures);
      }
    }
    for (const ep of this.endpoints.keys()) {
      if (!ep.removed) continue;
      const s = this.owner.get(ep)!;
      this.endpoints.delete(ep);
      this.owner.delete(ep);
      const list = this.departed.get(s) ?? [];
      list.push({ label: ep.label, source: ep.source, address: ep.address, reason: ep.downReasonAt(now) ?? 'removed', since: ep.stateSince, goneAt: now });
      this.departed.set(s, list);
    }
    for (const [s, list] of this.departed) {
      const keep = list.filter((d) => now - d.goneAt < this.departedKeepMs).slice(-this.departedMax);
      if (keep.length) this.departed.set(s, keep);
      else this.departed.delete(s);
    }
  }

  /** An endpoint's rates over the kept samples (empty until it was sampled once). */
  rates(ep: Endpoint): EndpointRates {
    const r = this.endpoints.get(ep);
    return r ? { connections: r.connections.toArray(), failures: r.failures.toArray() } : { connections: [], failures: [] };
  }

  /** The newest sample of an endpoint: [connections, failures] in the last second. */
  latest(ep: Endpoint): [number, number] {
    const r = this.endpoints.get(ep);
    return r ? [r.connections.latest(), r.failures.latest()] : [0, 0];
  }

  /** Accepted clients per second of a listener, oldest first. */
  accepted(s: HistorySubject): number[] {
    return this.listeners.get(s)?.toArray() ?? [];
  }

  latestAccepted(s: HistorySubject): number {
    return this.listeners.get(s)?.latest() ?? 0;
  }

  /** Endpoints that left this listener's cluster within the kept time, oldest first. */
  departures(s: HistorySubject): readonly DepartedEndpoint[] {
    return this.departed.get(s) ?? [];
  }
}
