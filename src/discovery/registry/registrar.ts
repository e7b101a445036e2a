import { EventEmitter } from 'node:events';
import type { RegistryClient } from './client.js';
import { decodeRecord, encodeRecord, instanceKey } from './record.js';

/** What one advertisement offers, as the registry should carry it (the mDNS announcement's content). */
export interface Offer {
  service: string;
  /** Wanted instance name (a clash in the registry makes it `name (2)`, as mDNS does). */
  instance: string;
  port: number;
  priority: number;
  weight: number;
  txt: Record<string, string>;
}

export interface RegistrarOptions {
  /** This host's name as others see it (mDNS host label, or the machine's name). */
  hostName: () => string;
  /** Addresses others should dial: --registry-address, else the announced ones, never loopback. */
  addresses: () => string[];
}

interface Entry {
  offer: Offer;
  /** The instance name in use in the registry (after clashes). */
  instance: string;
  written?: string;
  state: 'registered' | 'pending' | 'withdrawn';
}

/**
 * The registry side of advertising, beside the mDNS publisher: each offer becomes one key under
 * the registry client's lease or session (gone with this process, or one TTL after it is cut
 * off), written while the advertisement is announced and deleted when it is withdrawn or stopped.
 * Events: 'state' (service, instance, state, reason).
 */
export class Registrar extends EventEmitter {
  private readonly entries = new Map<object, Entry>();
  private stopped = false;

  constructor(private readonly client: RegistryClient, private readonly opts: RegistrarOptions) {
    super();
    // Our name was found taken while written again after a lost lease/session: take the next one.
    client.on('registered', (dir: string, name: string) => this.onWritten(dir, name));
    client.on('taken', (dir: string, name: string) => {
      for (const e of this.entries.values()) {
        if (e.offer.service === dir && instanceKey(e.instance) === name && e.state !== 'withdrawn') void this.write(e, true);
      }
    });
  }

  private onWritten(dir: string, name: string): void {
    for (const e of this.entries.values()) {
      if (e.offer.service === dir && instanceKey(e.instance) === name && e.state === 'pending') {
        e.state = 'registered';
        this.emit('state', e.offer.service, e.instance, 'registered', 'written (the registry is reachable again)');
      }
    }
  }

  /** Registers (or updates) `owner`'s offer. */
  offer(owner: object, offer: Offer): void {
    if (this.stopped) return;
    const e = this.entries.get(owner);
    if (e && e.state !== 'withdrawn' && sameOffer(e.offer, offer)) return;
    const entry: Entry = e ?? { offer, instance: offer.instance, state: 'pending' };
    if (e && e.offer.instance !== offer.instance) entry.instance = offer.instance;
    entry.offer = offer;
    entry.state = 'pending';
    this.entries.set(owner, entry);
    void this.write(entry, false);
  }

  /** Deletes `owner`'s registration (the advertisement was withdrawn or stops). */
  async withdraw(owner: object, reason: string): Promise<void> {
    const e = this.entries.get(owner);
    if (!e || e.state === 'withdrawn') return;
    e.state = 'withdrawn';
    e.written = undefined;
    this.emit('state', e.offer.service, e.instance, 'withdrawn', reason);
    await this.client.unregister(e.offer.service, instanceKey(e.instance));
  }

  /** The addresses or the host name changed: every registration is written again. */
  refresh(): void {
    for (const e of this.entries.values()) if (e.state !== 'withdrawn') void this.write(e, false);
  }

  /** The instance name each owner is registered as now (for /peers). */
  instanceOf(owner: object): { instance: string; state: Entry['state'] } | undefined {
    const e = this.entries.get(owner);
    return e && { instance: e.instance, state: e.state };
  }

  /** Deletes every registration (graceful stop: before any listener closes). */
  async withdrawAll(reason: string): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.entries.keys()].map((o) => this.withdraw(o, reason)));
  }

  private async write(e: Entry, renameFirst: boolean): Promise<void> {
    const host = this.opts.hostName();
    for (let attempt = renameFirst ? 1 : 0; attempt < 20; attempt++) {
      if (attempt > 0) e.instance = nextName(e.instance);
      const addresses = this.opts.addresses();
      if (addresses.length === 0) {
        e.state = 'pending';
        this.emit('state', e.offer.service, e.instance, 'pending', 'no address to register yet (no interface but loopback)');
        return;
      }
      // Two advertisements of this process never share a name (the registry would see one key).
      if ([...this.entries.values()].some((o) => o !== e && o.state !== 'withdrawn' && o.offer.service === e.offer.service && o.instance === e.instance)) continue;
      const value = encodeRecord({ ...e.offer, instance: e.instance, host, addresses });
      if (value === e.written && e.state === 'registered') return;
      const before = e.instance;
      const r = await this.client.register(e.offer.service, instanceKey(e.instance), value, (existing) => {
        // Our own registration from before a restart or a lost lease: this instance name from this
        // host (a restarted relay has another port; one instance name per host and service).
        const old = decodeRecord(existing);
        return typeof old !== 'string' && old.host === host && old.service === e.offer.service;
      });
      if (e.state === 'withdrawn' || this.stopped) {
        if (r === 'ok') await this.client.unregister(e.offer.service, instanceKey(e.instance));
        return;
      }
      if (r === 'taken') {
        this.emit('state', e.offer.service, before, 'renamed', 'another advertiser holds this instance name in the registry');
        continue;
      }
      e.written = value;
      const state = r === 'ok' ? 'registered' : 'pending';
      if (e.state !== state) this.emit('state', e.offer.service, e.instance, state, r === 'ok' ? 'written' : 'registry unreachable: written when it is back');
      e.state = state;
      return;
    }
  }
}

function nextName(name: string): string {
  const m = /^(.*) \((\d+)\)$/.exec(name);
  return m ? `${m[1]} (${Number(m[2]) + 1})` : `${name} (2)`;
}

function sameOffer(a: Offer, b: Offer): boolean {
  return a.service === b.service && a.instance === b.instance && a.port === b.port && a.priority === b.priority
    && a.weight === b.weight && JSON.stringify(a.txt) === JSON.stringify(b.txt);
}
