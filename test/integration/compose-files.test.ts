// The compose examples and the Dockerfile, checked without a container engine (under a real one:
// test/containers/): every compose/*/compose.yaml parses, is structurally sound (images or
// builds, networks, sidecars in a pod holder's network namespace, declared secrets and volumes,
// read-only root filesystems, an init for shell loops), and
// every ambassador command in it is accepted by the ambassador's own validation
// (`ambassador run --check`, with the image's environment). File paths that exist only inside
// the container (secrets, mounted volumes) are mapped back to the files the compose file mounts;
// named volumes (filled at run time, e.g. by the `certs` service) get a placeholder file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { argvOf, composeDir, examples, IMAGE, isPod, keysOf, loadCompose, netsOf, root, type Compose, type Service } from '../lib/compose.js';

const cli = join(root, 'dist/cli/bin.js');

/** Container path → host path, from the service's secrets and volumes (placeholders for named volumes). */
function pathMapper(dir: string, c: Compose, s: Service, scratch: string): (p: string) => string {
  const mounts: Array<[string, string]> = [];
  for (const sec of s.secrets ?? []) {
    const source = typeof sec === 'string' ? sec : sec.source;
    const target = typeof sec === 'string' ? sec : (sec.target ?? sec.source);
    const file = c.secrets?.[source]?.file;
    assert.ok(file, `secret ${source} is declared with a file`);
    mounts.push([target.startsWith('/') ? target : `/run/secrets/${target}`, resolve(dir, file)]);
  }
  for (const v of s.volumes ?? []) {
    const [src, dst] = v.split(':');
    assert.ok(src && dst, `volume '${v}' is SRC:DST`);
    if (src.startsWith('.') || src.startsWith('/')) mounts.push([dst, resolve(dir, src)]);
    else {
      assert.ok(c.volumes && src in c.volumes, `named volume ${src} is declared`);
      mounts.push([dst, join(scratch, src)]);
    }
  }
  return (p) => {
    for (const [dst, host] of mounts) {
      if (p === dst || p.startsWith(dst + '/')) {
        const mapped = host + p.slice(dst.length);
        if (mapped.startsWith(scratch) && !existsSync(mapped)) {
          mkdirSync(dirname(mapped), { recursive: true });
          writeFileSync(mapped, 'placeholder for a file made at run time\n');
        }
        return mapped;
      }
    }
    return p;
  };
}

/** The ambassador's arguments with container-only file paths mapped to host files. */
function hostArgs(args: string[], map: (p: string) => string): string[] {
  return args.map((a, i) => {
    if (['--tls-cert', '--tls-key', '--tls-ca'].includes(args[i - 1] ?? '')) return map(a);
    return a.replace(/(auth-file=)([^,]+)/, (_m, k: string, p: string) => k + map(p));
  });
}

test('there is one compose example per use case, each with compose.yaml and README.md', () => {
  assert.deepEqual(examples, ['credentials', 'discovery', 'dns-srv', 'failover-and-load-balancing', 'registry-etcd', 'registry-zookeeper', 'static', 'tls']);
  for (const d of examples) {
    assert.ok(existsSync(join(composeDir, d, 'compose.yaml')), `${d}/compose.yaml`);
    assert.ok(existsSync(join(composeDir, d, 'README.md')), `${d}/README.md`);
  }
});

for (const ex of examples) {
  test(`compose/${ex}: structure, and every ambassador command passes run --check`, () => {
    const dir = join(composeDir, ex);
    const c = loadCompose(dir);
    const readme = readFileSync(join(dir, 'README.md'), 'utf8');
    assert.ok(c.name, 'project name');
    const names = Object.keys(c.services ?? {});
    assert.ok(names.length >= 2, 'services');
    const networks = Object.keys(c.networks ?? {});
    assert.ok(networks.length >= 1, 'a user-defined network');
    // A bridge; the registry examples use an ipvlan in L3 mode (routed subnets, no multicast at all).
    for (const n of networks) {
      const driver = c.networks![n]?.driver ?? 'bridge';
      assert.ok(driver === 'bridge' || (ex.startsWith('registry-') && driver === 'ipvlan'), `network ${n} is a bridge (${driver})`);
    }

    let ambassadors = 0;
    const scratch = mkdtempSync(join(tmpdir(), `compose-${ex}-`));
    try {
      for (const [name, s] of Object.entries(c.services)) {
        assert.ok(s.image || s.build, `${name}: image or build`);
        if (s.network_mode === 'none') {
          // a one-shot job without network (e.g. making certificates)
        } else if (s.network_mode) {
          const m = /^service:(.+)$/.exec(s.network_mode);
          assert.ok(m, `${name}: network_mode is service:NAME`);
          assert.ok(c.services[m[1]!], `${name}: network_mode service ${m[1]} exists`);
          assert.ok(!s.networks, `${name}: network_mode and networks exclude each other`);
          assert.ok(netsOf(c.services[m[1]!]!).length > 0, `${name}: ${m[1]} is on a network`);
        } else {
          for (const n of netsOf(s)) assert.ok(networks.includes(n), `${name}: network ${n} declared`);
          assert.ok(netsOf(s).length > 0, `${name}: on a user-defined network`);
        }
        for (const d of keysOf(s.depends_on)) assert.ok(c.services[d], `${name}: depends_on ${d} exists`);
        for (const v of s.volumes ?? []) {
          const src = v.split(':')[0]!;
          if (src.startsWith('.')) assert.ok(existsSync(resolve(dir, src)), `${name}: bind mount ${src} exists`);
        }
        // Read-only root filesystems everywhere; a shell (or sleep) as PID 1 ignores SIGTERM, so
        // those run under an init (`docker compose down` is then quick).
        assert.equal(s.read_only, true, `${name}: read_only`);
        const argv = argvOf(s);
        if (argv[0] === 'sleep' || (['sh', '/bin/sh'].includes(argv[0] ?? '') && argv[1] === '-c')) {
          const execs = argv[0]!.endsWith('sh') && /^exec /.test(argv[argv.length - 1] ?? '');
          assert.ok(s.init === true || execs, `${name}: init: true (or sh -c 'exec …')`);
        }
        if (isPod(s)) {
          assert.ok(netsOf(s).length > 0 && s.restart === 'unless-stopped', `${name}: a pod holder on the network, restarted`);
          continue;
        }
        if (s.network_mode?.startsWith('service:')) {
          const owner = c.services[s.network_mode.slice('service:'.length)]!;
          assert.ok(isPod(owner), `${name}: joins a pod's holder, not another service (which would strand it when that one restarts)`);
        }
        if (s.image !== IMAGE) continue;
        assert.equal(s.restart, 'unless-stopped', `${name}: restart policy (a stranded ambassador exits to be re-attached)`);
        ambassadors++;
        const ctx = typeof s.build === 'string' ? s.build : s.build?.context;
        assert.ok(ctx && existsSync(join(resolve(dir, ctx), 'Dockerfile')), `${name}: builds the image from the repository`);
        assert.ok(Array.isArray(s.command) && s.command.every((x) => typeof x === 'string'), `${name}: command is a list of strings`);
        assert.ok(s.network_mode?.startsWith('service:'), `${name}: a sidecar (network_mode: service:…)`);
        const args = s.command as string[];
        // The README shows each ambassador's first service flag.
        assert.ok(readme.includes(args[1]!.split(',')[0]!), `${ex}/README.md mentions ${args[1]}`);
        // A one-shot service that makes certificates into a volume (compose/tls): run its script
        // into the scratch copy of that volume, so --check gets real PEM files as the container would.
        const certScript = join(dir, 'make-certs.sh');
        if (existsSync(certScript) && !existsSync(join(scratch, 'certs', 'ca.pem'))) {
          const made = spawnSync('sh', [certScript, join(scratch, 'certs')], { encoding: 'utf8' });
          assert.equal(made.status, 0, `make-certs.sh: ${made.stderr}`);
        }
        const mapped = hostArgs(args, pathMapper(dir, c, s, scratch));
        const r = spawnSync(process.execPath, [cli, 'run', '--check', ...mapped], {
          encoding: 'utf8', timeout: 20_000,
          // the image's environment (see Dockerfile)
          env: { ...process.env, NODE_ENV: 'production', AMBASSADOR_ADMIN: '0.0.0.0:9901', AMBASSADOR_LOG_FORMAT: 'json' },
        });
        assert.equal(r.status, 0, `${name}: ambassador run --check ${mapped.join(' ')}\n${r.stderr}`);
        assert.match(r.stdout, /^configuration OK/);
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
    assert.ok(ambassadors >= 1, `${ex}: at least one ambassador (${IMAGE})`);
  });
}

test('an ambassador command that --check rejects is caught (the check is not vacuous)', () => {
  const r = spawnSync(process.execPath, [cli, 'run', '--check', '--connect', 'redis=6379,where.env', '--advertise', 'x=1'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
});

test('Dockerfile: multi-stage, production dependencies only, non-root, HEALTHCHECK on /healthz, ENTRYPOINT ambassador', () => {
  const df = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const froms = df.match(/^FROM /gm) ?? [];
  assert.ok(froms.length >= 2, 'multi-stage');
  assert.match(df, /^ARG NODE_IMAGE=node:24-slim$/m, 'the current Node LTS');
  assert.doesNotMatch(df, /^# *syntax=/m, 'no syntax line: BuildKit would fetch a frontend image from a registry first');
  assert.match(df, /npm ci --omit=dev/);
  assert.match(df, /^USER node$/m);
  assert.match(df, /^HEALTHCHECK .*\n?.*\/healthz/m);
  assert.match(df, /^ENTRYPOINT \["ambassador"\]$/m);
  // Every COPY source from the build context exists and is let through by .dockerignore.
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8');
  assert.match(ignore, /^\*\*$/m, '.dockerignore excludes everything by default');
  for (const m of df.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const src of m[1]!.split(/\s+/)) {
      assert.ok(existsSync(join(root, src)), `COPY ${src} exists`);
      assert.ok(ignore.includes(`!${src}`), `.dockerignore lets ${src} through`);
    }
  }
  assert.ok(!/^!node_modules/m.test(ignore) && !/^!dist/m.test(ignore), 'node_modules and dist stay out of the context');
});

test('Dockerfile HEALTHCHECK command: 0 while the admin endpoint says healthy, 1 when nothing answers', async () => {
  const df = readFileSync(join(root, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const cmd = JSON.parse(/^HEALTHCHECK .*?CMD (\[.*\])$/m.exec(df)![1]!) as string[];
  assert.equal(cmd[0], 'node');
  const free = () => new Promise<number>((res) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
  const [adminPort, listenPort] = [await free(), await free()];
  const env = { ...process.env, AMBASSADOR_ADMIN: `0.0.0.0:${adminPort}` };
  const check = () => spawnSync(cmd[0]!, cmd.slice(1), { env, timeout: 10_000 }).status;
  assert.equal(check(), 1, 'nothing listening → unhealthy');
  const amb = spawn(process.execPath, [cli, '--connect', `x=${listenPort}`, '--static', 'x=127.0.0.1:9', '--log-level', 'silent'], { env, stdio: 'ignore' });
  try {
    let status: number | null = 1;
    for (let i = 0; i < 100 && status !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = check();
    }
    assert.equal(status, 0, 'running ambassador → healthy');
  } finally {
    amb.kill('SIGTERM');
  }
});
