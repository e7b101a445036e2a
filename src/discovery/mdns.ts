import { EventEmitter } from 'node:events';
import type { MdnsEngine } from '../mdns/engine.js';
import type { ServiceBrowser, ServiceInstance } from '../mdns/browse/browser.js';
import { redactTxt } from '../base/redaction.js';
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
    const seen = (event: string) => (i: ServiceInstance) => {
      if (this.listenerCount('debug') > 0) {
        this.emit('debug', `mDNS instance ${event}`, {
          instance: i.instance, host: i.host, addresses: i.addresses, port: i.port, txt: redactTxt(i.txt), ...(i.leaving ? { leaving: true } : {}),
        });
      }
      emit();
    };
    b.on('up', seen('up'));
    b.on('update', seen('changed'));
    b.on('down', seen('gone'));
    emit();
  }

  async stop(): Promise<void> {
    this.browser?.stop();
    this.browser = undefined;
  }
}

export function toEndpoint(i: ServiceInstance): EndpointSpec {
  // The browser orders addresses likeliest first (IPv4, then IPv6; link-local IPv6 with its
  // zone): the first is dialled, the others are tried before the endpoint is blamed.
  return {
    id: `mdns:${i.fullName.toLowerCase()}`,
    source: 'mdns',
    host: i.addresses[0]!,
    addresses: i.addresses,
    port: i.port,
    priority: i.priority,
    weight: i.weight,
    txt: i.txt,
    label: i.instance,
    expiresAt: i.expiresAt,
    ...(i.leaving ? { draining: true } : {}),
  };
}
