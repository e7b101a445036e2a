// The admin endpoint of real ambassadors on a netns lab: host a runs redis-server behind an
// advertising ambassador, host b a connecting one; both with --admin. After discovery and some
// traffic, /peers and /metrics must say what happened; /healthz turns 503 while b drains.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { canUseNetns, haveCommand, Lab, redisCli, startRedis, waitFor, type Host } from '../lib/netns.js';
import { startAdvertiser, startConnector, type Amb } from './ambassador-kit.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') && haveCommand('redis-cli') && haveCommand('curl') ? undefined : 'needs redis-server, redis-cli and curl');

async function get(host: Host, url: string): Promise<{ status: number; body: string }> {
  const r = await host.exec('curl', ['-s', '-o', '-', '-w', '\n%{http_code}', '--max-time', '3', url], { timeoutMs: 5000 });
  const i = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
}

/** Value of one sample of the Prometheus text, matched by name and a subset of labels. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => ls[k] === v)) return Number(m[4]);
  }
  return undefined;
}

describe('admin endpoint on real ambassadors', { skip }, () => {
  let lab: Lab;
  let a: Host;
  let b: Host;
  let adv: Amb;
  let conn: Amb;

  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b'], prefix: 'adm' });
    a = lab.host('a');
    b = lab.host('b');
    await startRedis(a, { port: 6380 });
    ({ amb: adv } = await startAdvertiser(a, ['--advertise', 'redis=6380,txt.env=test,txt.password=hunter2', '--admin', '0.0.0.0:9901']));
    conn = await startConnector(b, ['--connect', 'redis=6379', '--connect', 'dead=7000', '--static', 'dead=127.0.0.1:9',
      '--wait-for-endpoint', '300', '--admin', '9901', '--drain-timeout', '4000']);
    await conn.waitLog({ msg: 'endpoint up', service: 'redis' }, { timeoutMs: 10_000 });
  });
  after(async () => {
    await lab?.destroy();
  });

  test('/healthz is 200 on both', async () => {
    for (const [h, url] of [[a, 'http://127.0.0.1:9901/healthz'], [b, 'http://127.0.0.1:9901/healthz']] as const) {
      const r = await get(h, url);
      assert.equal(r.status, 200, `${h.name}: ${r.body}`);
      assert.equal(JSON.parse(r.body).status, 'ok');
    }
    // a binds 0.0.0.0: reachable from b; b binds 127.0.0.1 (the default): not reachable from a
    assert.equal((await get(b, `http://${a.ip}:9901/healthz`)).status, 200);
    assert.equal((await get(a, `http://${b.ip}:9901/healthz`)).status, 0);
  });

  test('/peers after discovery: endpoint with source, address, TXT minus secrets, state, TTL; advertisement state', async () => {
    await waitFor(async () => JSON.parse((await get(b, 'http://127.0.0.1:9901/peers')).body).clusters[1].endpoints[0]?.state === 'down',
      { timeoutMs: 5000, message: 'the dead endpoint is marked down by health checks' });
    const peers = JSON.parse((await get(b, 'http://127.0.0.1:9901/peers')).body);
    assert.equal(peers.draining, false);
    const [redis, dead] = peers.clusters;
    assert.equal(redis.name, 'redis');
    assert.equal(redis.listen, '127.0.0.1:6379');
    assert.deepEqual(redis.sources, ['mdns']);
    assert.equal(redis.endpoints.length, 1);
    const ep = redis.endpoints[0];
    assert.equal(ep.label, 'redis@a');
    assert.equal(ep.source, 'mdns');
    assert.equal(ep.address, a.ip);
    assert.equal(ep.port, 6380);
    assert.deepEqual(ep.txt, { env: 'test', password: '[redacted]', hostprobe: ep.txt.hostprobe });
    assert.match(ep.txt.hostprobe, /^\d+$/, 'the advertiser announces its host probe port');
    assert.equal(ep.state, 'up');
    assert.equal(ep.downReason, null);
    // Its health comes from its own ambassador: the source check and host probes, not a connection of ours.
    assert.equal(ep.health.from, 'host-probe');
    assert.equal(ep.health.sourceCheck, 'up');
    assert.equal(ep.health.hostProbe.state, 'up');
    assert.equal(ep.health.hostProbe.host, `${a.ip}:${ep.txt.hostprobe}`);
    assert.equal(ep.health.ownCheck, null);
    assert.equal(peers.hostProbes.hosts.length, 1);
    assert.ok(peers.hostProbes.sent.probesSent >= 1);
    assert.ok(ep.ttlLeft > 0 && ep.ttlLeft <= 120, `ttlLeft ${ep.ttlLeft}`);
    assert.ok(Date.now() - Date.parse(ep.lastSeen) < 60_000);
    assert.equal(dead.name, 'dead');
    assert.equal(dead.endpoints[0].state, 'down');
    assert.equal(dead.endpoints[0].downReason, 'health-check');
    assert.equal(dead.endpoints[0].health.from, 'own-check');
    assert.equal(dead.endpoints[0].health.ownCheck.state, 'down');
    assert.equal(dead.endpoints[0].ttlLeft, null);

    const ap = JSON.parse((await get(a, 'http://127.0.0.1:9901/peers')).body);
    assert.equal(ap.host, 'a.local');
    assert.equal(ap.advertisements.length, 1);
    const ad = ap.advertisements[0];
    assert.equal(ad.service, 'redis');
    assert.equal(ad.instance, 'redis@a');
    assert.equal(ad.state, 'announced');
    assert.equal(ad.announcedPort, 6380);
    assert.equal(ad.relay, null);
    assert.equal(ad.txt.password, '[redacted]');
    assert.equal(ad.check, 'tcp');
    assert.equal(ap.hostProbes.answered.port, Number(ep.txt.hostprobe));
    assert.ok(ap.hostProbes.answered.replies >= 1);
  });

  test('/metrics after traffic: connections, bytes, endpoint and mDNS counters; no secret anywhere', async () => {
    for (let i = 0; i < 10; i++) {
      const r = await redisCli(b, ['-p', '6379', 'set', `k${i}`, 'v'.repeat(100)]);
      assert.equal(r.reply, 'OK');
    }
    for (let i = 0; i < 2; i++) await redisCli(b, ['-p', '7000', 'ping'], { timeoutMs: 3000 });
    const bm = (await get(b, 'http://127.0.0.1:9901/metrics')).body;
    const am = (await get(a, 'http://127.0.0.1:9901/metrics')).body;
    const lines = (t: string, re: RegExp) => t.split('\n').filter((l) => re.test(l)).join('\n');
    console.log(`# b (connector):\n${lines(bm, /^ambassador_(connections_(accepted|established|failed)|upstream_bytes|endpoint_up|mdns_packets_(received|sent))/).replace(/^/gm, '#   ')}`);
    assert.ok(sample(bm, 'ambassador_connections_accepted_total', { cluster: 'redis' })! >= 10);
    assert.ok(sample(bm, 'ambassador_connections_established_total', { cluster: 'redis', endpoint: 'redis@a' })! >= 10);
    assert.ok(sample(bm, 'ambassador_upstream_bytes_sent_total', { cluster: 'redis', endpoint: 'redis@a' })! >= 10 * 100);
    assert.ok(sample(bm, 'ambassador_upstream_bytes_received_total', { cluster: 'redis', endpoint: 'redis@a' })! >= 10 * 5);
    assert.equal(sample(bm, 'ambassador_endpoint_up', { cluster: 'redis', endpoint: 'redis@a', source: 'mdns' }), 1);
    assert.equal(sample(bm, 'ambassador_endpoint_up', { cluster: 'dead', endpoint: '127.0.0.1:9' }), 0);
    assert.equal(sample(bm, 'ambassador_endpoint_transitions_total', { cluster: 'dead', to: 'down', reason: 'health-check' }), 1);
    // The advertised redis is never checked by the connector (its advertiser does, and answers host probes).
    assert.equal(sample(bm, 'ambassador_health_checks_total', { cluster: 'redis' }), undefined);
    assert.ok(sample(am, 'ambassador_health_checks_total', { cluster: 'advertise:redis', result: 'ok' })! >= 1);
    assert.ok(sample(bm, 'ambassador_host_probes_sent_total')! >= 1);
    assert.ok(sample(bm, 'ambassador_host_probe_replies_total')! >= 1);
    assert.equal(sample(bm, 'ambassador_peer_host_up'), 1);
    assert.ok(sample(am, 'ambassador_host_probe_requests_received_total')! >= 1);
    assert.equal(sample(bm, 'ambassador_endpoint_health_origin', { cluster: 'redis', origin: 'host-probe' }), 1);
    assert.ok(sample(bm, 'ambassador_health_checks_total', { cluster: 'dead', result: 'fail' })! >= 1);
    // Every endpoint of 'dead' is down on health evidence alone: clients try it anyway (panic mode).
    assert.equal(sample(bm, 'ambassador_panic_mode', { cluster: 'dead' }), 1);
    assert.equal(sample(bm, 'ambassador_panic_attempts_total', { cluster: 'dead' }), 2);
    assert.equal(sample(bm, 'ambassador_connections_failed_total', { cluster: 'dead', reason: 'all-failed' }), 2);
    assert.ok(sample(bm, 'ambassador_mdns_packets_received_total')! > 0);
    assert.ok(sample(bm, 'ambassador_mdns_packets_sent_total')! > 0, 'queries sent');
    assert.equal(sample(bm, 'ambassador_mdns_packets_malformed_total'), 0);
    assert.equal(sample(bm, 'ambassador_mdns_probes_sent_total'), 0, 'a connect-only ambassador never probes');
    assert.ok(sample(bm, 'process_resident_memory_bytes')! > 0);

    assert.equal(sample(am, 'ambassador_advertisement_state', { service: 'redis', state: 'announced' }), 1);
    assert.equal(sample(am, 'ambassador_advertisement_state', { service: 'redis', state: 'withdrawn' }), 0);
    assert.ok(sample(am, 'ambassador_mdns_probes_sent_total')! >= 3, 'RFC 6762: three probes');
    assert.ok(sample(am, 'ambassador_mdns_announcements_sent_total')! >= 1);
    assert.ok(sample(am, 'ambassador_mdns_queries_answered_total')! >= 1, 'b\'s query was answered');
    assert.equal(sample(am, 'ambassador_mdns_conflicts_total'), 0);
    assert.ok(sample(am, 'ambassador_health_checks_total', { cluster: 'advertise:redis', result: 'ok' })! >= 1);

    for (const [h, host] of [['a', a], ['b', b]] as const) {
      for (const path of ['/peers', '/metrics', '/healthz']) {
        assert.ok(!(await get(host, `http://127.0.0.1:9901${path}`)).body.includes('hunter2'), `${h}${path} has no secret`);
      }
    }
    assert.ok(!adv.proc.output.includes('hunter2') && !conn.proc.output.includes('hunter2'), 'nor the logs');
  });

  test('/healthz is 503 while draining, and the process still exits 0', async () => {
    // A client that holds a connection open (BLPOP blocks) keeps the drain going.
    const held = b.spawn('redis-cli', ['-p', '6379', 'blpop', 'nothing', '0'], { name: '[b] held client' });
    await waitFor(async () => {
      const p = JSON.parse((await get(b, 'http://127.0.0.1:9901/peers')).body);
      return p.clusters[0].endpoints[0].activeConnections === 1;
    }, { timeoutMs: 5000, message: 'held connection open' });
    const t = Date.now();
    conn.proc.kill('SIGTERM');
    const r = await waitFor(async () => {
      const h = await get(b, 'http://127.0.0.1:9901/healthz');
      return h.status === 503 ? h : undefined;
    }, { timeoutMs: 3000, intervalMs: 50, message: '503 while draining' });
    assert.equal(JSON.parse(r.body).status, 'draining');
    const peers = JSON.parse((await get(b, 'http://127.0.0.1:9901/peers')).body);
    assert.equal(peers.draining, true);
    const st = await conn.proc.exited;
    console.log(`# drained and exited ${Date.now() - t} ms after SIGTERM (drain timeout 4000 ms, one held connection)`);
    assert.equal(st.code, 0);
    await held.stop(1000);
  });
});
