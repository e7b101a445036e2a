// The etcd mesh of the registry tests: two sites joined by a router that forwards no multicast
// (east: etcd members e1 e2, advertisers a1 a2 with Redis on loopback; west: etcd member e3 and
// the connector host c), a three-member etcd cluster, --no-mdns everywhere.
import { type Amb, adminGet, startAmbassador } from './ambassador-kit.js';
import { type Host, Lab, startRedis } from '../lib/netns.js';
import { type RegistryCluster, etcdctl, startEtcd } from '../lib/registries.js';

export const ADMIN = 9901;

export class EtcdMesh {
  readonly adv = new Map<string, Amb>();
  url = '';

  private constructor(readonly lab: Lab, readonly etcd: RegistryCluster, readonly ttlMs: number) {}

  static async create(ttlMs: number): Promise<EtcdMesh> {
    const lab = await Lab.create({ hosts: ['e1', 'e2', 'a1', 'a2', 'e3', 'c'], sites: { east: ['e1', 'e2', 'a1', 'a2'], west: ['e3', 'c'] } });
    try {
      const etcd = await startEtcd([lab.host('e1'), lab.host('e2'), lab.host('e3')]);
      const mesh = new EtcdMesh(lab, etcd, ttlMs);
      mesh.url = etcd.url('/mesh', `ttl=${ttlMs / 1000}s`);
      for (const name of ['a1', 'a2']) {
        const r = await startRedis(lab.host(name), { port: 7001, bind: '127.0.0.1' });
        await r.host.run('redis-cli', ['-p', '7001', 'set', 'whoami', name]);
      }
      return mesh;
    } catch (err) {
      await lab.destroy();
      throw err;
    }
  }

  get c(): Host {
    return this.lab.host('c');
  }

  /** `--advertise redis=127.0.0.1:7001` on a1 or a2 (relayed), once registered. */
  async advertise(name: string): Promise<Amb> {
    const a = startAmbassador(this.lab.host(name), ['--no-mdns', '--registry', this.url, '--advertise', 'redis=127.0.0.1:7001', '--admin', String(ADMIN)], { iface: false });
    await a.waitLog({ msg: 'registry registration', state: 'registered' }, { timeoutMs: 15_000 });
    this.adv.set(name, a);
    return a;
  }

  /** `--connect redis=6379` on c, once listening. */
  async connect(): Promise<Amb> {
    const conn = startAmbassador(this.c, ['--no-mdns', '--registry', this.url, '--connect', 'redis=6379', '--admin', String(ADMIN)], { iface: false });
    await conn.waitLog({ msg: 'listening' }, { timeoutMs: 30_000 });
    return conn;
  }

  async peers(host: Host = this.c): Promise<any> {
    return JSON.parse(await adminGet(host, ADMIN, '/peers'));
  }

  /** The keys under /mesh/redis/ now. */
  async registered(): Promise<string[]> {
    return (await etcdctl(this.etcd, this.c, ['get', '--prefix', '--keys-only', '/mesh/redis/'])).split('\n').filter((l) => l.trim() !== '');
  }

  /** Labels of the endpoints up at c. */
  async endpointsUp(): Promise<string[]> {
    return (await this.peers()).clusters[0].endpoints.filter((e: { state: string }) => e.state === 'up').map((e: { label: string }) => e.label).sort();
  }

  destroy(): Promise<void> {
    return this.lab.destroy();
  }
}
