import { EventEmitter } from 'node:events';
import type { DiscoverySource, EndpointSpec } from '../source.js';
import { type DirectoryWatch, type RegistryClient, jitterMs } from './client.js';
import { type RegistryRecord, decodeRecord, instanceFromKey } from './record.js';

export interface RegistrySourceOptions {
  /** The registry authenticated us: its endpoints count as named by the operator (credentials may go to them). */
  named: boolean;
  /** After a reconnect, an empty listing replaces a non-empty set only this long later (ms): the lease TTL. */
  emptyGraceMs: number;
  /** Bounds of the pause that gathers a burst of changes into one update (ms). */
  coalesceMs?: [number, number];
}

/**
 * Endpoints of one service from the registry (`<prefix>/<service>/*`). Changes are gathered for
 * a short jittered pause and published as one set, so a deploy of many instances is a few
 * cluster updates, not one per instance. The registry being unreachable changes nothing here:
 * the last set stays (static stability), and health is judged by host probes and connects.
 * Values that are not registrations of ours (not JSON, another schema) are ignored and counted.
 * Events: 'endpoints', 'ignored' (key, why) once per key and reason.
 */
export class RegistrySource extends EventEmitter implements DiscoverySource {
  readonly kind = 'registry' as const;
  private watch?: DirectoryWatch;
  private timer: NodeJS.Timeout | undefined;
  private readonly reported = new Map<string, string>();
  private published: EndpointSpec[] = [];
  /** When the registry came back after an outage (not the first connect). */
  private reconnectedAt = -Infinity;
  private wasConnected = false;
  private cutOff = false;
  private readonly onState = (state: string): void => {
    if (state === 'connected') {
      if (this.cutOff) this.reconnectedAt = Date.now();
      this.wasConnected = true;
      this.cutOff = false;
    } else if (this.wasConnected) this.cutOff = true;
  };
  /** Values ignored (not ours, not valid), counted. */
  ignored = 0;
  /** Sets published (cluster updates). */
  updates = 0;

  constructor(private readonly client: RegistryClient, readonly service: string, private readonly opts: RegistrySourceOptions) {
    super();
  }

  async start(): Promise<void> {
    this.wasConnected = this.client.status.state === 'connected';
    this.client.on('state', this.onState);
    const w = this.client.watch(this.service);
    this.watch = w;
    w.on('change', () => this.schedule());
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.client.off('state', this.onState);
    this.watch?.stop();
    this.watch = undefined;
  }

  /** The watch's entries and listings (for /peers). */
  get watched(): DirectoryWatch | undefined {
    return this.watch;
  }

  private schedule(delayMs?: number): void {
    if (this.timer) return;
    const [lo, hi] = this.opts.coalesceMs ?? [20, 120];
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.publish();
    }, delayMs ?? jitterMs(lo, hi));
  }

  private publish(): void {
    const w = this.watch;
    if (!w) return;
    const specs: EndpointSpec[] = [];
    const seen = new Set<string>();
    for (const [key, value] of w.entries) {
      seen.add(key);
      const r = decodeRecord(value);
      if (typeof r === 'string') {
        this.ignore(key, r);
        continue;
      }
      if (r.service !== this.service) {
        this.ignore(key, `registered for service '${r.service}' under '${this.service}'`);
        continue;
      }
      this.reported.delete(key);
      specs.push(toEndpoint(key, r, this.opts.named));
    }
    for (const k of this.reported.keys()) if (!seen.has(k)) this.reported.delete(k);
    // A registry that lost its data comes back empty; the advertisers write themselves again
    // within seconds. Emptying every connector meanwhile is what SmartStack's users met
    // (use_previous_backends): the last set stays for one TTL after a reconnect.
    const sinceReconnect = Date.now() - this.reconnectedAt;
    if (specs.length === 0 && this.published.length > 0 && sinceReconnect < this.opts.emptyGraceMs) {
      this.schedule(this.opts.emptyGraceMs - sinceReconnect);
      return;
    }
    this.published = specs;
    this.updates++;
    this.emit('endpoints', specs);
  }

  private ignore(key: string, why: string): void {
    if (this.reported.get(key) === why) return;
    this.reported.set(key, why);
    this.ignored++;
    this.emit('ignored', key, why);
  }
}

export function toEndpoint(key: string, r: RegistryRecord, named: boolean): EndpointSpec {
  return {
    id: `registry:${r.service}/${instanceFromKey(key)}`,
    source: 'registry',
    host: r.addresses[0]!,
    addresses: r.addresses,
    port: r.port,
    priority: r.priority,
    weight: r.weight,
    txt: r.txt,
    label: r.instance,
    ...(named ? { named: true } : {}),
  };
}
