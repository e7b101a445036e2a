import { EventEmitter } from 'node:events';
import { isIPv4 } from 'node:net';
import type { MdnsEngine } from '../mdns/engine.js';
import type { ServiceBrowser, ServiceInstance } from '../mdns/browser.js';
import type { DiscoverySource, EndpointSpec } from './source.js';

/** Endpoints of one service from mDNS/DNS-SD browsing. */
export class MdnsSource extends EventEmitter implements DiscoverySource {
  readonly kind = 'mdns' as const;
  private browser?: ServiceBrowser;

  constructor(private readonly engine: MdnsEngine, readonly service: string) {
    super();
  }

  async start(): Promise<void> {
    const b = this.engine.browse(this.service);
    this.browser = b;
    const emit = () => this.emit('endpoints', b.instances().map(toEndpoint));
    b.on('up', emit);
    b.on('update', emit);
    b.on('down', emit);
    emit();
  }

  async stop(): Promise<void> {
    this.browser?.stop();
    this.browser = undefined;
  }
}

export function toEndpoint(i: ServiceInstance): EndpointSpec {
  // Prefer IPv4: the data path and the health checks are IPv4-first like the engine.
  const host = i.addresses.find((a) => isIPv4(a)) ?? i.addresses[0]!;
  return {
    id: `mdns:${i.fullName.toLowerCase()}`,
    source: 'mdns',
    host,
    port: i.port,
    priority: i.priority,
    weight: i.weight,
    txt: i.txt,
    label: i.instance,
    expiresAt: i.expiresAt,
    ...(i.leaving ? { draining: true } : {}),
  };
}
