import { EventEmitter } from 'node:events';
import type { HostPort } from '../config/specs.js';
import type { DiscoverySource, EndpointSpec } from './source.js';

/** Fixed endpoints from `--static NAME=HOST:PORT+HOST:PORT` (no multicast needed). */
export class StaticSource extends EventEmitter implements DiscoverySource {
  readonly kind = 'static' as const;

  constructor(private readonly endpoints: readonly HostPort[]) {
    super();
  }

  async start(): Promise<void> {
    const specs: EndpointSpec[] = this.endpoints.map((e) => ({
      id: `static:${e.host}:${e.port}`,
      source: 'static',
      host: e.host,
      port: e.port,
      priority: 0,
      weight: 0,
      txt: {},
      label: `${e.host}:${e.port}`,
    }));
    this.emit('endpoints', specs);
  }

  async stop(): Promise<void> {}
}
