import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConfig, splitList } from './config.js';
import { credentialExposure } from './credential-exposure.js';
import { ConfigError, parseAdvertise, parseConnect, parseDnsServer, parseSrv, parseStatic } from './specs.js';

test('--advertise: port only, host:port, options and TXT', () => {
  assert.deepEqual(parseAdvertise('redis=6379'), {
    name: 'redis', targetHost: undefined, port: 6379, priority: 0, weight: 0, txt: {}, subtypes: [], relayPort: 0, check: 'tcp', raw: 'redis=6379',
  });
  assert.equal(parseAdvertise('redis=6379,check=redis').check, 'redis');
  const a = parseAdvertise('redis=db:6380,priority=10,weight=5,instance=main db,txt.env=prod,txt.Role=primary,subtype=primary');
  assert.equal(a.targetHost, 'db');
  assert.equal(a.port, 6380);
  assert.equal(a.priority, 10);
  assert.equal(a.weight, 5);
  assert.equal(a.instance, 'main db');
  assert.deepEqual(a.txt, { env: 'prod', role: 'primary' });
  assert.deepEqual(a.subtypes, ['primary']);
  assert.equal(parseAdvertise('_redis._tcp=6379').name, 'redis');
  assert.equal(parseAdvertise('redis=[::1]:6379').targetHost, '::1');
});

test('--connect: bind defaults to 127.0.0.1; balance and where filters', () => {
  const c = parseConnect('redis=6379,balance=srv,where.env=production');
  assert.equal(c.bind, '127.0.0.1');
  assert.equal(c.port, 6379);
  assert.equal(c.balance, 'srv');
  assert.deepEqual(c.where, { env: 'production' });
  assert.equal(parseConnect('redis=0.0.0.0:7000').bind, '0.0.0.0');
  assert.equal(parseConnect('redis=localhost:7000').bind, '127.0.0.1');
  assert.equal(c.check, 'tcp');
  assert.equal(parseConnect('redis=6379,check=redis').check, 'redis');
  assert.equal(parseConnect('redis=6379,check=none').check, 'none');
});

test('--connect protocol=postgres: server TLS options; they and db= belong to their protocol', () => {
  const c = parseConnect('pg=5432,protocol=postgres,auth-file=/run/pg,server-tls=require,server-verify=ca,server-ca=/etc/pg-ca.pem,server-name=db.internal');
  assert.equal(c.protocol, 'postgres');
  assert.equal(c.authFile, '/run/pg');
  assert.deepEqual([c.serverTls, c.serverVerify, c.serverCa, c.serverName], ['require', 'ca', '/etc/pg-ca.pem', 'db.internal']);
  assert.equal(parseConnect('pg=5432,protocol=postgres').serverTls, undefined, 'the protocol\'s default (prefer)');
  assert.equal(parseConnect('pg=5432,protocol=postgres,server-name=10.0.0.5').serverName, '10.0.0.5');
  assert.throws(() => parseConnect('redis=6379,auth-file=/f,server-tls=require'), /server-tls is for protocol=postgres/);
  assert.throws(() => parseConnect('pg=5432,server-ca=/f'), /server-ca is for protocol=postgres/);
  assert.throws(() => parseConnect('pg=5432,protocol=postgres,db=1'), /db is for protocol=redis/);
  assert.throws(() => parseConnect('pg=5432,protocol=postgres,server-verify=some'), /server-verify must be full, ca, none/);
  assert.throws(() => parseConnect('pg=5432,protocol=postgres,server-name=a b'), /not a DNS name/);
  assert.throws(() => parseConnect('pg=5432,protocol=mysql'), /unknown protocol 'mysql' \(known: redis, postgres\)/);
});

test('--static and --srv', () => {
  assert.deepEqual(parseStatic('redis=10.0.0.5:6380+db2:6381').endpoints, [{ host: '10.0.0.5', port: 6380 }, { host: 'db2', port: 6381 }]);
  assert.equal(parseSrv('redis=_redis._tcp.example.internal').query, '_redis._tcp.example.internal');
  // relative (Kubernetes-style, resolved through the search list) and absolute names are kept as written
  assert.equal(parseSrv('redis=_redis._tcp.redis').query, '_redis._tcp.redis');
  assert.equal(parseSrv('redis=_redis._tcp.example.internal.').query, '_redis._tcp.example.internal.');
});

test('--dns-server: an IP address with an optional port, repeatable in failover order', () => {
  assert.deepEqual(parseDnsServer('10.0.0.2'), { host: '10.0.0.2', port: 53 });
  assert.deepEqual(parseDnsServer('127.0.0.1:8600'), { host: '127.0.0.1', port: 8600 });
  assert.deepEqual(parseDnsServer('fd00::53'), { host: 'fd00::53', port: 53 });
  assert.deepEqual(parseDnsServer('[fd00::53]:5353'), { host: 'fd00::53', port: 5353 });
  assert.deepEqual(parseDnsServer('[fd00::53]'), { host: 'fd00::53', port: 53 });
  const c = buildConfig({ connect: ['redis=6379'], srv: ['redis=_redis._tcp.svc'], dnsServer: ['10.0.0.1:5353', '10.0.0.2 [fd00::1]:53'] });
  assert.deepEqual(c.dnsServers, [{ host: '10.0.0.1', port: 5353 }, { host: '10.0.0.2', port: 53 }, { host: 'fd00::1', port: 53 }]);
  assert.deepEqual(buildConfig({ connect: ['redis=6379'] }).dnsServers, []);
});

test('bad specs: one clear message each', () => {
  const bad: Array<[() => unknown, RegExp]> = [
    [() => parseAdvertise('redis'), /expected NAME=\[HOST:\]PORT/],
    [() => parseAdvertise('redis=0'), /out of range/],
    [() => parseAdvertise('redis=99999'), /out of range/],
    [() => parseAdvertise('redis=6379,bogus=1'), /unknown option 'bogus'/],
    [() => parseAdvertise('redis=6379,instance=a.b'), /without '\.'/],
    [() => parseAdvertise('red is=6379'), /not a service name/],
    [() => parseAdvertise('redis=6379,priority=-1'), /priority/],
    [() => parseConnect('redis=6379,balance=fastest'), /unknown balance 'fastest'/],
    [() => parseConnect('redis=db:6379'), /must be an IP address/],
    [() => parseConnect('redis=6379,db=x'), /db must be a number/],
    [() => parseStatic('redis=6380'), /needs a host/],
    [() => parseSrv('redis=redis.example.com'), /_service\._tcp\.domain/],
    [() => parseSrv('redis=_redis._tcp..example'), /empty label/],
    [() => parseDnsServer('dns.example.com'), /--dns-server 'dns\.example\.com': expected an IP address/],
    [() => parseDnsServer('10.0.0.1:99999'), /out of range/],
    [() => parseDnsServer('[fd00::1]:x'), /not a port number/],
    [() => parseDnsServer(''), /expected an IP address/],
    [() => parseAdvertise('redis=6379,check=http'), /unknown check 'http' \(known: tcp, redis\)/],
    [() => parseAdvertise('redis=6379,txt.hostprobe=1'), /'hostprobe' is reserved/],
    [() => parseConnect('redis=6379,check=ping'), /unknown check 'ping' \(known: tcp, redis, none\)/],
  ];
  for (const [fn, re] of bad) {
    assert.throws(fn, (err: Error) => err instanceof ConfigError && re.test(err.message) && !err.message.includes('\n'));
  }
});

test('whole-config checks: duplicates, orphans, nothing to do, TLS triple', () => {
  assert.throws(() => buildConfig({}), /nothing to do/);
  assert.throws(() => buildConfig({ connect: ['a=7000', 'b=127.0.0.1:7000'] }), /already used/);
  assert.throws(() => buildConfig({ connect: ['a=7000'], static: ['b=h:1'] }), /no --connect b/);
  assert.throws(() => buildConfig({ advertise: ['a=7000', 'a=7000'] }), /given twice/);
  assert.throws(() => buildConfig({ advertise: ['a=7000'], tlsCert: '/etc/hostname' }), /all three/);
  assert.throws(() => buildConfig({ advertise: ['a=7000'], tlsCert: '/nope', tlsKey: '/nope', tlsCa: '/nope' }), /cannot read '\/nope'/);
  assert.throws(() => buildConfig({ advertise: ['a=7000'], ttl: 0 }), /--ttl/);
  assert.throws(() => buildConfig({ advertise: ['a=7000'], hostname: 'a.b' }), /--hostname/);
  assert.throws(() => buildConfig({ connect: ['a=7000'], admin: '127.0.0.1:7000' }), /already used/);
  assert.throws(() => buildConfig({ advertise: ['a=7000'], probePort: 70000 }), /--probe-port: port 70000 is out of range/);
  assert.throws(() => buildConfig({ advertise: ['a=7000'], raceDelay: 0 }), /--race-delay/);
});

test('repeatable options from one environment variable split on whitespace or ;', () => {
  assert.deepEqual(splitList(['redis=6379 api=8080;web=80']), ['redis=6379', 'api=8080', 'web=80']);
  assert.deepEqual(splitList(['redis=6379,instance=My Redis']), ['redis=6379,instance=My Redis']);
  const c = buildConfig({ advertise: ['redis=6379 api=8080'] });
  assert.deepEqual(c.advertise.map((a) => a.name), ['redis', 'api']);
  assert.equal(c.healthInterval, 500);
  assert.equal(c.connectTimeout, 3000);
  assert.equal(c.raceDelay, 250);
  assert.equal(c.probePort, 0);
});

test('credentials never go to an unproven announcer: refused at configuration time, with what to do', () => {
  const auth = process.execPath; // any readable file will do for the check
  const refuse = () => buildConfig({ connect: [`redis=6379,auth-file=${auth}`] });
  assert.throws(refuse, (e: unknown) => e instanceof ConfigError
    && /refusing to send credentials to whoever announces 'redis' over mDNS/.test(e.message)
    && /--tls-cert/.test(e.message) && /--static\/--srv/.test(e.message) && /--trusted-lan/.test(e.message)
    && !e.message.includes('\n'));
  // Operator-named endpoints, mutual TLS, or the explicit opt-in are all accepted.
  assert.doesNotThrow(() => buildConfig({ connect: [`redis=6379,auth-file=${auth}`], static: ['redis=10.0.0.5:6380'] }));
  assert.doesNotThrow(() => buildConfig({ connect: [`redis=6379,auth-file=${auth}`], srv: ['redis=_redis._tcp.example.internal'] }));
  assert.doesNotThrow(() => buildConfig({ connect: [`redis=6379,auth-file=${auth}`], tlsCert: auth, tlsKey: auth, tlsCa: auth }));
  assert.equal(buildConfig({ connect: [`redis=6379,auth-file=${auth}`], trustedLan: true }).trustedLan, true);
  // A static source for another name does not make this listener's endpoints named.
  assert.throws(() => buildConfig({ connect: [`redis=6379,auth-file=${auth}`, 'api=8080'], static: ['api=10.0.0.5:80'] }), ConfigError);
  // Without a secret nothing changes: db= alone, or no handshake at all.
  assert.doesNotThrow(() => buildConfig({ connect: ['redis=6379,db=2', 'api=8080,where.env=prod'] }));
});

test('credential exposure: who may receive them and the warnings that go with --trusted-lan', () => {
  const c = parseConnect('redis=6379,auth-file=/run/secrets/redis,where.env=production');
  assert.equal(credentialExposure(parseConnect('redis=6379'), { tls: false, named: false, trustedLan: false }), undefined);
  assert.deepEqual(credentialExposure(c, { tls: true, named: false, trustedLan: false }), { trust: 'mutual-tls', warnings: [] });
  assert.deepEqual(credentialExposure(c, { tls: false, named: true, trustedLan: false }), { trust: 'named-endpoints', warnings: [] });
  const lan = credentialExposure(c, { tls: false, named: false, trustedLan: true })!;
  assert.equal(lan.trust, 'trusted-lan');
  assert.equal(lan.warnings.length, 2);
  assert.match(lan.warnings[0]!, /any host on the LAN that announces _redis\._tcp/);
  assert.match(lan.warnings[1]!, /where\.env=production .* not access control/);
});
