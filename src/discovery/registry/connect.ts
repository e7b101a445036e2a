import type { RegistryClient, RegistryClientOptions } from './client.js';

/**
 * The client for a registry kind, its module loaded only now: an ambassador without --registry
 * loads neither (nor node-zookeeper-client).
 */
export async function connectRegistry(kind: 'etcd' | 'zookeeper', opts: RegistryClientOptions): Promise<RegistryClient> {
  if (kind === 'etcd') {
    const { EtcdClient } = await import('./etcd.js');
    return new EtcdClient(opts);
  }
  const { ZooKeeperClient } = await import('./zookeeper.js');
  return new ZooKeeperClient(opts);
}
