// The compose examples, run without Docker: the same commands as compose/<example>/compose.yaml,
// one network namespace per container that has its own network (a Lab host on one bridge, like
// the compose network: the pods' holders and the services without a sidecar), and each container
// with `network_mode: service:X` inside X's namespace, as Docker does. (Under a real engine:
// test/containers/.) Images are replaced by the same programs installed here (redis:7-alpine →
// redis-server / redis-cli / sh, curlimages/curl → curl, traefik/whoami → a tiny HTTP server
// answering "Hostname: NAME", mdns-ambassador → node dist/cli/bin.js with the image's environment).
// Each test then does what the example's README says and checks that it happens.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canUseNetns, haveCommand, Lab, type Host, type LabProcess, waitFor } from '../lib/netns.js';
import { argvOf, composeDir, IMAGE, isPod, loadCompose, type Compose, type Service } from '../lib/compose.js';

const CLI = fileURLToPath(new URL('../../../dist/cli/bin.js', import.meta.url));
const skip = canUseNetns() ?? (['redis-server', 'redis-cli', 'curl'].every(haveCommand) ? undefined : 'needs redis-server, redis-cli and curl');

/** The environment the Dockerfile sets. */
const IMAGE_ENV = { NODE_ENV: 'production', AMBASSADOR_ADMIN: '0.0.0.0:9901', AMBASSADOR_LOG_FORMAT: 'json' };

const WHOAMI = String.raw`
const http = require('node:http');
const name = process.argv[1];
http.createServer((req, res) => res.end('Hostname: ' + name + '\nGET ' + req.url + '\n')).listen(80, '0.0.0.0');
`;

/** A compose project brought up on a Lab. */
class ComposeLab {
  readonly procs = new Map<string, LabProcess>();
  private constructor(readonly compose: Compose, readonly lab: Lab) {}

  static async up(example: string, order: string[]): Promise<ComposeLab> {
    const compose = loadCompose(join(composeDir, example));
    const hosts = Object.entries(compose.services).filter(([, s]) => !s.network_mode).map(([n]) => n);
    const lab = await Lab.create({ hosts, prefix: 'cmp' });
    const cl = new ComposeLab(compose, lab);
    for (const name of order) cl.start(name);
    return cl;
  }

  service(name: string): Service {
    const s = this.compose.services[name];
    if (!s) throw new Error(`no service ${name}`);
    return s;
  }

  /** The lab host whose network namespace the service lives in. */
  hostOf(name: string): Host {
    const m = /^service:(.+)$/.exec(this.service(name).network_mode ?? '');
    return this.lab.host(m ? m[1]! : name);
  }

  /** Starts the service's command as its image would run it (a pod's holder only holds its namespace: the Lab host). */
  start(name: string): LabProcess | undefined {
    const s = this.service(name);
    if (isPod(s)) return undefined;
    const host = this.hostOf(name);
    const argv = argvOf(s);
    let proc: LabProcess;
    // A container in another's network namespace has that one's host name, as in Docker.
    const owner = /^service:(.+)$/.exec(s.network_mode ?? '')?.[1];
    const hostname = (owner ? this.service(owner).hostname : s.hostname) ?? owner ?? name;
    const opts = { name: `[${name}]`, hostname };
    if (s.image === IMAGE) {
      proc = host.spawn(process.execPath, [CLI, ...argv], { ...opts, env: IMAGE_ENV });
    } else if (s.image?.startsWith('traefik/whoami')) {
      proc = host.spawn(process.execPath, ['-e', WHOAMI, hostname], opts);
    } else if (s.image?.startsWith('redis:') || s.image?.startsWith('curlimages/curl')) {
      const [cmd, ...args] = argv[0] === '/bin/sh' ? ['sh', ...argv.slice(1)] : argv;
      proc = host.spawn(cmd!, args, opts);
    } else {
      throw new Error(`no local stand-in for image ${s.image} (service ${name})`);
    }
    this.procs.set(name, proc);
    return proc;
  }

  proc(name: string): LabProcess {
    const p = this.procs.get(name);
    if (!p) throw new Error(`${name} not started`);
    return p;
  }

  /** GET http://127.0.0.1:9901/<path> of the ambassador inside `service`'s namespace. */
  async admin(service: string, path: string): Promise<{ status: number; body: string }> {
    const r = await this.hostOf(service).exec('curl', ['-s', '-o', '-', '-w', '\n%{http_code}', `http://127.0.0.1:9901${path}`], { timeoutMs: 5000 });
    const i = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
  }

  async down(): Promise<void> {
    await this.lab.destroy();
  }
}

/** JSON log lines of an ambassador process. */
function logs(p: LabProcess): Array<Record<string, unknown>> {
  return p.stdout.split('\n').filter((l) => l.startsWith('{')).flatMap((l) => {
    try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; }
  });
}

describe('compose/discovery without Docker', { skip }, () => {
  let c: ComposeLab;
  let t0: number;
  before(async () => {
    t0 = Date.now();
    c = await ComposeLab.up('discovery', ['redis', 'redis-ambassador', 'app-ambassador', 'app']);
  });
  after(async () => {
    await c?.down();
  });

  test('the app\'s INCR on localhost:6379 reaches Redis on the other container\'s port 6380', async () => {
    await c.proc('app').waitForLine(/^\d+$/, { timeoutMs: 15_000 });
    console.log(`# first successful INCR through the ambassadors ${Date.now() - t0} ms after starting the containers`);
    const direct = await c.hostOf('redis').run('redis-cli', ['-p', '6380', 'get', 'visits']);
    assert.ok(Number(direct.trim()) >= 1, `visits on the real Redis: ${direct}`);
    const announced = logs(c.proc('redis-ambassador')).find((l) => l.msg === 'advertisement' && l.state === 'announced');
    assert.ok(announced, 'redis-ambassador announced');
    assert.equal(announced.port, 6380, 'announced the real port (no relay needed: Redis listens on all addresses)');
  });

  test('the app ambassador\'s admin endpoint shows the discovered Redis', async () => {
    const h = await c.admin('app-ambassador', '/healthz');
    assert.equal(h.status, 200, h.body);
    const peers = JSON.parse((await c.admin('app-ambassador', '/peers')).body);
    const ep = peers.clusters[0].endpoints[0];
    assert.equal(peers.clusters[0].name, 'redis');
    assert.equal(ep.address, c.hostOf('redis').ip);
    assert.equal(ep.port, 6380);
    assert.equal(ep.state, 'up');
    assert.ok(ep.connections >= 1);
    const adv = JSON.parse((await c.admin('redis-ambassador', '/peers')).body).advertisements[0];
    assert.equal(adv.state, 'announced');
  });

  test('stopping redis-ambassador (goodbye) and starting it again: the app resumes on its own', async () => {
    const app = c.proc('app');
    const amb = c.proc('app-ambassador');
    const since = Date.now();
    assert.equal((await c.proc('redis-ambassador').stop(10_000)).code, 0, 'clean exit on SIGTERM');
    await waitFor(() => logs(amb).find((l) => l.msg === 'endpoint down' && l.reason === 'goodbye' && Number(l.time) >= since),
      { timeoutMs: 3000, message: 'app-ambassador drops the endpoint on the goodbye' });
    console.log(`# endpoint out of rotation ${Date.now() - since} ms after SIGTERM to redis-ambassador`);
    // It takes no new connections at once and leaves the list when its record expires, a second later.
    await waitFor(async () => JSON.parse((await c.admin('app-ambassador', '/peers')).body).clusters[0].endpoints.length === 0,
      { timeoutMs: 3000, message: 'endpoint removed a second after the goodbye' });
    const before = Number(await c.hostOf('redis').run('redis-cli', ['-p', '6380', 'get', 'visits']));
    const mark = app.mark('stdout');
    c.start('redis-ambassador');
    const m = await app.waitForLine(/^(\d+)$/, { since: mark, stream: 'stdout', timeoutMs: 15_000 });
    assert.ok(Number(m[1]) > before, `counting on: ${m[1]} > ${before}`);
  });
});

describe('compose/failover-and-load-balancing without Docker', { skip }, () => {
  let c: ComposeLab;
  before(async () => {
    c = await ComposeLab.up('failover-and-load-balancing',
      ['api-1', 'api-2', 'api-3', 'api-1-ambassador', 'api-2-ambassador', 'api-3-ambassador', 'client-ambassador', 'client']);
  });
  after(async () => {
    await c?.down();
  });

  const answers = (since: number) => c.proc('client').stdout.slice(since).split('\n').filter(Boolean);

  test('the client\'s requests to localhost:8080 rotate over the three replicas', async () => {
    await waitFor(() => ['api-1', 'api-2', 'api-3'].every((n) => c.proc('client').stdout.includes(`Hostname: ${n}`)),
      { timeoutMs: 20_000, message: 'all three replicas answer' });
    const mark = c.proc('client').mark('stdout');
    await waitFor(() => answers(mark).length >= 6, { timeoutMs: 15_000 });
    const six = answers(mark).slice(0, 6);
    console.log(`# answers: ${six.map((l) => l.replace('Hostname: ', '')).join(' ')}`);
    assert.ok(six.every((l) => l.startsWith('Hostname: ')), six.join('\n'));
    assert.deepEqual(new Set(six), new Set(['Hostname: api-1', 'Hostname: api-2', 'Hostname: api-3']), 'round-robin covers all');
  });

  test('docker compose stop api-2-ambassador: goodbye, no failed request, api-2 leaves the rotation', async () => {
    const mark = c.proc('client').mark('stdout');
    const t = Date.now();
    await c.proc('api-2-ambassador').stop(10_000);
    await waitFor(() => answers(mark).length >= 6, { timeoutMs: 15_000 });
    const after = answers(mark);
    assert.ok(!after.some((l) => l.includes('request failed')), after.join('\n'));
    assert.ok(!after.slice(1).some((l) => l.includes('api-2')), `api-2 gone after the goodbye: ${after.join(' | ')}`);
    const down = logs(c.proc('client-ambassador')).find((l) => l.msg === 'endpoint down' && l.endpoint === 'api-2' && Number(l.time) >= t);
    assert.equal(down?.reason, 'goodbye');
  });

  test('docker compose kill api-3 api-3-ambassador (hard failure): no failed request, only api-1 left', async () => {
    const mark = c.proc('client').mark('stdout');
    const t = Date.now();
    c.proc('api-3-ambassador').kill('SIGKILL');
    c.proc('api-3').kill('SIGKILL');
    // (the pod's network stays: its holder runs on, as in Docker)
    await waitFor(() => logs(c.proc('client-ambassador')).find((l) => l.msg === 'endpoint down' && l.endpoint === 'api-3' && Number(l.time) >= t),
      { timeoutMs: 10_000, message: 'api-3 marked down' });
    console.log(`# hard failure of api-3 detected in ${Date.now() - t} ms`);
    const mark2 = c.proc('client').mark('stdout');
    await waitFor(() => answers(mark2).length >= 3, { timeoutMs: 15_000 });
    const all = answers(mark);
    assert.ok(!all.some((l) => l.includes('request failed')), `no failed request: ${all.join(' | ')}`);
    assert.ok(answers(mark2).every((l) => l === 'Hostname: api-1'), answers(mark2).join(' | '));
  });

  test('docker compose start …: api-2 and api-3 are back in the rotation', async () => {
    c.start('api-3');
    c.start('api-3-ambassador');
    c.start('api-2-ambassador');
    const mark = c.proc('client').mark('stdout');
    const t = Date.now();
    await waitFor(() => ['api-2', 'api-3'].every((n) => answers(mark).some((l) => l.includes(n))), { timeoutMs: 20_000, message: 'api-2 and api-3 answer again' });
    console.log(`# both replicas back in ${Date.now() - t} ms`);
    const metrics = (await c.admin('client-ambassador', '/metrics')).body;
    for (const n of ['api-1', 'api-2', 'api-3']) {
      const m = new RegExp(`^ambassador_connections_established_total\\{cluster="api",listener="[^"]+",endpoint="${n}"\\} (\\d+)`, 'm').exec(metrics);
      assert.ok(m && Number(m[1]) > 0, `${n} served connections: ${m?.[0]}`);
    }
    // (requests before the client's ambassador had found anyone, at start-up, do not count)
    const all = answers(0);
    const fromFirstAnswer = all.slice(all.findIndex((l) => l.startsWith('Hostname: ')));
    assert.ok(!fromFirstAnswer.some((l) => l.includes('request failed')), `not one failed request since the first answer: ${fromFirstAnswer.join(' | ')}`);
  });
});

