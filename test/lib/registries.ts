// Real registries for end-to-end tests: Debian's etcd 3.4 and ZooKeeper 3.8, started inside lab
// hosts (network namespaces) on the hosts' own addresses, single-node or as a cluster, stopped
// by PID (each is a LabProcess of its host; lab.destroy() stops whatever is left).
//
//   const etcd = await startEtcd([lab.host('e1'), lab.host('e2'), lab.host('e3')]);
//   etcd.url                      // 'etcd://198.18.1.1:2379,198.18.1.2:2379,198.18.1.3:2379/mesh'
//   await etcd.leader()           // the member that leads now
//   await etcd.stop(member) / etcd.start(member)   // one member (kill -9 with signal 'SIGKILL')
//
// A server that cannot start throws with its output: the test fails with the reason.

import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Host, type LabProcess, haveCommand, waitFor } from './netns.js';
import type { CertFiles, TestCa } from '../../src/testing/test-ca.js';

/** Why registry tests cannot run here (undefined when they can). In CI the packages are installed: never a skip there. */
export function registryMissing(kind: 'etcd' | 'zookeeper'): string | undefined {
  if (kind === 'etcd') return haveCommand('etcd') && haveCommand('etcdctl') ? undefined : 'etcd / etcdctl not installed (Debian: etcd-server etcd-client)';
  return haveCommand('java') && zookeeperJarPresent() ? undefined : 'ZooKeeper not installed (Debian: zookeeper default-jre-headless)';
}

const ZK_JAR = '/usr/share/java/zookeeper.jar';
function zookeeperJarPresent(): boolean {
  return existsSync(ZK_JAR);
}

export interface RegistryMember {
  host: Host;
  id: number;
  proc?: LabProcess;
  dir: string;
}

export interface RegistryCluster {
  kind: 'etcd' | 'zookeeper';
  members: RegistryMember[];
  /** `etcd://…` / `zk://…` naming every member, with `prefix`. */
  url(prefix?: string, query?: string): string;
  /** The member that leads now. */
  leader(): Promise<RegistryMember>;
  /** Stops one member by PID (SIGKILL: a crash; SIGTERM: a stop). */
  stopMember(m: RegistryMember, signal?: NodeJS.Signals): Promise<void>;
  /** Starts one member again (same data directory). */
  startMember(m: RegistryMember): Promise<void>;
  /** Stops every member. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts every member again and waits for a leader. */
  start(): Promise<void>;
}

/** Stopping and starting members by PID, the same for every kind of registry. */
function memberControls(members: RegistryMember[], launch: (m: RegistryMember) => void, waitMember: (m: RegistryMember) => Promise<void>):
  Pick<RegistryCluster, 'stopMember' | 'startMember' | 'stop' | 'start'> {
  const stopMember = async (m: RegistryMember, signal: NodeJS.Signals = 'SIGTERM') => {
    if (!m.proc) return;
    if (signal === 'SIGKILL') {
      m.proc.kill('SIGKILL');
      await m.proc.exited;
    } else await m.proc.stop(5000);
  };
  return {
    stopMember,
    async startMember(m) {
      launch(m);
      await waitMember(m);
    },
    async stop(signal = 'SIGTERM') {
      await Promise.all(members.map((m) => stopMember(m, signal)));
    },
    async start() {
      for (const m of members) launch(m);
      await Promise.all(members.map(waitMember));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// etcd

export interface EtcdOptions {
  /** Extra flags for every member (e.g. auth is enabled with etcdctl afterwards). */
  args?: string[];
  /**
   * Clients speak TLS to the members (https, `etcds://`): each member a certificate for its
   * address signed by this CA, and with `clientCertAuth` only clients with a certificate of the
   * same CA are served (etcd --client-cert-auth). Peers keep plain http between themselves.
   */
  tls?: { ca: TestCa; clientCertAuth?: boolean };
}

export async function startEtcd(hosts: Host[], opts: EtcdOptions = {}): Promise<RegistryCluster> {
  const why = registryMissing('etcd');
  if (why) throw new Error(why);
  const members: RegistryMember[] = hosts.map((host, i) => ({ host, id: i + 1, dir: join(host.dir, `etcd-${i + 1}`) }));
  const initial = members.map((m) => `m${m.id}=http://${m.host.ip}:2380`).join(',');
  const scheme = opts.tls ? 'https' : 'http';
  const serverCerts = new Map<RegistryMember, CertFiles>(members.map((m) => [m, opts.tls ? opts.tls.ca.issue(`etcd-m${m.id}`, { sans: [m.host.ip] }) : { cert: '', key: '' }]));
  // etcdctl's own client certificate (served even with --client-cert-auth).
  const ctl = opts.tls ? opts.tls.ca.issue('etcdctl') : undefined;
  const ctlTls = opts.tls && ctl ? ['--cacert', opts.tls.ca.cert, '--cert', ctl.cert, '--key', ctl.key] : [];
  const tlsArgs = (m: RegistryMember) => (opts.tls ? [
    '--cert-file', serverCerts.get(m)!.cert, '--key-file', serverCerts.get(m)!.key, '--trusted-ca-file', opts.tls.ca.cert,
    ...(opts.tls.clientCertAuth ? ['--client-cert-auth'] : []),
  ] : []);
  const token = `lab-${process.pid}-${Date.now()}`;
  let first = true;
  const launch = (m: RegistryMember) => {
    const args = [
      '--name', `m${m.id}`, '--data-dir', m.dir,
      '--listen-client-urls', `${scheme}://${m.host.ip}:2379`, '--advertise-client-urls', `${scheme}://${m.host.ip}:2379`, ...tlsArgs(m),
      '--listen-peer-urls', `http://${m.host.ip}:2380`, '--initial-advertise-peer-urls', `http://${m.host.ip}:2380`,
      '--initial-cluster', initial, '--initial-cluster-token', token, '--initial-cluster-state', first ? 'new' : 'existing',
      '--log-level', 'warn', ...(opts.args ?? []),
    ];
    m.proc = m.host.spawn('etcd', args, { name: `[${m.host.name}] etcd m${m.id}` });
  };
  const healthy = async (m: RegistryMember) => {
    const r = await m.host.exec('etcdctl', ['--endpoints', `${scheme}://${m.host.ip}:2379`, ...ctlTls, '--command-timeout=1s', 'endpoint', 'health'], { timeoutMs: 5000 });
    return r.code === 0;
  };
  const waitMember = async (m: RegistryMember) => {
    try {
      await waitFor(async () => {
        if (!m.proc?.running) throw new Error(`etcd exited: ${m.proc?.output.slice(-800)}`);
        return healthy(m);
      }, { timeoutMs: 30_000, intervalMs: 200, message: `etcd m${m.id} on ${m.host.name} to be healthy` });
    } catch (err) {
      throw new Error(`${(err as Error).message}\netcd output:\n${m.proc?.output.slice(-1500)}`);
    }
  };
  for (const m of members) {
    rmSync(m.dir, { recursive: true, force: true });
    launch(m);
  }
  await Promise.all(members.map(waitMember));
  first = false;
  const cluster: RegistryCluster = {
    kind: 'etcd',
    members,
    url: (prefix = '/mesh', query = '') => `${opts.tls ? 'etcds' : 'etcd'}://${members.map((m) => `${m.host.ip}:2379`).join(',')}${prefix}${query ? `?${query}` : ''}`,
    async leader() {
      const live = members.filter((m) => m.proc?.running);
      const r = await live[0]!.host.run('etcdctl', ['--endpoints', live.map((m) => `http://${m.host.ip}:2379`).join(','), '--command-timeout=2s', 'endpoint', 'status', '-w', 'json'], { timeoutMs: 10_000 });
      const list = JSON.parse(r.slice(r.indexOf('['), r.lastIndexOf(']') + 1) || '[]') as Array<{ Endpoint: string; Status: { leader: string | number; header: { member_id: string | number } } }>;
      const lead = list.find((s) => String(s.Status.leader) === String(s.Status.header.member_id));
      const m = members.find((x) => lead && lead.Endpoint.includes(`//${x.host.ip}:`));
      if (!m) throw new Error(`no etcd leader found in ${r.slice(0, 500)}`);
      return m;
    },
    ...memberControls(members, launch, waitMember),
  };
  return cluster;
}

/** etcdctl against the cluster, from `host`. */
export async function etcdctl(cluster: RegistryCluster, host: Host, args: string[], user?: string): Promise<string> {
  const endpoints = cluster.members.map((m) => `http://${m.host.ip}:2379`).join(',');
  return host.run('etcdctl', ['--endpoints', endpoints, '--command-timeout=3s', ...(user ? ['--user', user] : []), ...args], { timeoutMs: 15_000 });
}

// ---------------------------------------------------------------------------------------------
// ZooKeeper

/**
 * A ZooKeeper ensemble (or one standalone server) of Debian's 3.8, one JVM per member, with a
 * tick of 500 ms (sessions of 1–30 s allowed) so tests can use short session timeouts. The JVM
 * takes seconds to start: start it once per test file.
 */
export async function startZooKeeper(hosts: Host[]): Promise<RegistryCluster> {
  const why = registryMissing('zookeeper');
  if (why) throw new Error(why);
  const members: RegistryMember[] = hosts.map((host, i) => ({ host, id: i + 1, dir: join(host.dir, `zk-${i + 1}`) }));
  for (const m of members) {
    rmSync(m.dir, { recursive: true, force: true });
    mkdirSync(m.dir, { recursive: true });
    writeFileSync(join(m.dir, 'myid'), `${m.id}\n`);
    const lines = [
      'tickTime=500', 'initLimit=20', 'syncLimit=10', 'minSessionTimeout=1000', 'maxSessionTimeout=30000',
      `dataDir=${m.dir}`, `clientPortAddress=${m.host.ip}`, 'clientPort=2181',
      '4lw.commands.whitelist=srvr,ruok,stat', 'admin.enableServer=false', 'standaloneEnabled=true',
      ...(members.length > 1 ? members.map((o) => `server.${o.id}=${o.host.ip}:2888:3888`) : []),
    ];
    writeFileSync(join(m.dir, 'zoo.cfg'), lines.join('\n') + '\n');
  }
  const launch = (m: RegistryMember) => {
    m.proc = m.host.spawn('java', [
      '-Xmx192m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Dzookeeper.jmx.log4j.disable=true',
      '-cp', ZK_JAR, 'org.apache.zookeeper.server.quorum.QuorumPeerMain', join(m.dir, 'zoo.cfg'),
    ], { name: `[${m.host.name}] zookeeper ${m.id}` });
  };
  const mode = async (m: RegistryMember): Promise<string | undefined> => {
    const script = `const s = require('node:net').connect(2181, process.argv[1], () => s.write('srvr'));
      let b = ''; s.on('data', (d) => (b += d)); s.on('close', () => { const m = /Mode: (\\w+)/.exec(b); console.log(m ? m[1] : 'none'); });
      s.on('error', () => console.log('none')); s.setTimeout(1500, () => s.destroy());`;
    const r = await m.host.exec(process.execPath, ['-e', script, m.host.ip], { timeoutMs: 5000 });
    const out = r.stdout.trim();
    return out === 'none' || out === '' ? undefined : out;
  };
  const waitMember = async (m: RegistryMember) => {
    try {
      await waitFor(async () => {
        if (!m.proc?.running) throw new Error(`zookeeper exited: ${m.proc?.output.slice(-800)}`);
        return (await mode(m)) !== undefined;
      }, { timeoutMs: 60_000, intervalMs: 250, message: `zookeeper ${m.id} on ${m.host.name} to serve` });
    } catch (err) {
      throw new Error(`${(err as Error).message}\nzookeeper output:\n${m.proc?.output.slice(-1500)}`);
    }
  };
  for (const m of members) launch(m);
  await Promise.all(members.map(waitMember));
  const cluster: RegistryCluster = {
    kind: 'zookeeper',
    members,
    url: (prefix = '/mesh', query = '') => `zk://${members.map((m) => `${m.host.ip}:2181`).join(',')}${prefix}${query ? `?${query}` : ''}`,
    async leader() {
      for (const m of members.filter((x) => x.proc?.running)) {
        const md = await mode(m);
        if (md === 'leader' || md === 'standalone') return m;
      }
      throw new Error('no zookeeper leader');
    },
    ...memberControls(members, launch, waitMember),
  };
  return cluster;
}
