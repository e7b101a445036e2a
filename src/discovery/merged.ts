import { EventEmitter } from 'node:events';
import type { DiscoverySource, EndpointSpec, SourceKind } from './source.js';

/**
 * mDNS and a registry feeding one --connect: an ambassador seen both ways (same port, an address
 * in common) is one endpoint, whichever source saw it first, and it stays one endpoint — with
 * its connections and health — while either still reports it. Published under the first
 * source's kind; each endpoint says in `via` who reports it.
 *
 * Addresses: a registry that authenticated us is the operator's word, so only its addresses are
 * dialled (an mDNS announcement cannot add one to an endpoint that may receive credentials);
 * otherwise the mDNS addresses first (multicast reached us: the same link), then the registry's.
 */
export class MergedSource extends EventEmitter implements DiscoverySource {
  readonly kind: SourceKind;
  private readonly sets = new Map<DiscoverySource, EndpointSpec[]>();
  /** `source-kind/id` of a member → the id of the endpoint it belongs to. */
  private ids = new Map<string, string>();

  constructor(readonly sources: readonly DiscoverySource[]) {
    super();
    this.kind = sources[0]!.kind;
    for (const s of sources) {
      s.on('endpoints', (specs: EndpointSpec[]) => {
        this.sets.set(s, specs);
        this.publish();
      });
      // Everything else a source says (failed lookups, ignored values) is passed on as it is.
      for (const ev of ['resolve-error', 'ignored', 'warning', 'info']) s.on(ev, (...args: unknown[]) => this.emit(ev, ...args));
    }
  }

  async start(): Promise<void> {
    for (const s of this.sources) await s.start();
  }

  async stop(): Promise<void> {
    for (const s of this.sources) await s.stop();
  }

  private publish(): void {
    const members: Array<{ spec: EndpointSpec; kind: SourceKind }> = [];
    for (const [s, specs] of this.sets) for (const spec of specs) members.push({ spec, kind: s.kind });
    // Group by port + any shared address.
    const groups: Array<Array<{ spec: EndpointSpec; kind: SourceKind }>> = [];
    const byAddress = new Map<string, number>();
    for (const m of members) {
      const keys = addressesOf(m.spec).map((a) => `${sameAddress(a)}|${m.spec.port}`);
      const g = keys.map((k) => byAddress.get(k)).find((x) => x !== undefined && !groups[x]!.some((o) => o.kind === m.kind));
      const index = g ?? groups.push([]) - 1;
      groups[index]!.push(m);
      for (const k of keys) if (!byAddress.has(k)) byAddress.set(k, index);
    }
    const ids = new Map<string, string>();
    const out: EndpointSpec[] = [];
    for (const g of groups) {
      const memberKeys = g.map((m) => `${m.kind}/${m.spec.id}`);
      const id = memberKeys.map((k) => this.ids.get(k)).find((x) => x !== undefined) ?? g[0]!.spec.id;
      for (const k of memberKeys) ids.set(k, id);
      out.push(merge(id, g, this.kind));
    }
    this.ids = ids;
    this.emit('endpoints', out);
  }
}

/** One spelling per address (case, IPv4-mapped IPv6) for comparing; the zone stays: fe80::1%eth0 is not fe80::1%eth1. */
function sameAddress(a: string): string {
  const l = a.toLowerCase();
  return l.startsWith('::ffff:') && l.includes('.') ? l.slice(7) : l;
}

function addressesOf(s: EndpointSpec): string[] {
  return s.addresses?.length ? s.addresses : [s.host];
}

function merge(id: string, g: Array<{ spec: EndpointSpec; kind: SourceKind }>, kind: SourceKind): EndpointSpec {
  const mdns = g.find((m) => m.kind === 'mdns')?.spec;
  const reg = g.find((m) => m.kind === 'registry')?.spec;
  const base = reg ?? g[0]!.spec;
  let addresses: string[];
  if (reg && mdns && !reg.named) addresses = [...new Set([...addressesOf(mdns), ...addressesOf(reg)])];
  else addresses = addressesOf(base);
  const { draining: _ignored, ...rest } = base;
  return {
    ...rest,
    id,
    source: kind,
    host: addresses[0]!,
    addresses,
    label: mdns?.label ?? base.label,
    expiresAt: reg ? undefined : base.expiresAt,
    ...(mdns?.draining ? { draining: true } : {}),
    via: g.map((m) => m.kind),
  };
}
