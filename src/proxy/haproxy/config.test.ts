import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkConfig, findHaproxy, parseVersion } from './binary.js';
import { type HaproxyConfigSpec, WAIT_LUA, proxyNames, renderConfig, renderedSlot } from './config.js';
import { emptySlots, planSlots } from './slots.js';

function spec(over: Partial<HaproxyConfigSpec> = {}): HaproxyConfigSpec {
  const names = proxyNames('redis', '127.0.0.1', 6379);
  const slots = planSlots({
    balance: 'round-robin', panic: false, slots: emptySlots({ active: 6, backup: 0 }),
    endpoints: [
      { key: 'a', host: '198.18.0.1', port: 7001, priority: 0, weight: 0 },
      { key: 'b', host: 'fd00::2', port: 7002, priority: 0, weight: 0, down: 'goodbye' },
      { key: 'c', host: '198.18.0.3', port: 7003, priority: 0, weight: 0, down: 'health-check' },
    ],
  }).slots;
  return {
    adminSocket: '/run/x/admin.sock', connectTimeoutMs: 3000, idleTimeoutMs: 0, queueTimeoutMs: 5000, noEndpointWaitMs: 5000, luaFile: '/run/x/wait.lua', connectAttempts: 5,
    listeners: [{ ...names, bind: '127.0.0.1', port: 6379, balance: 'round-robin', limits: { maxConnections: 100, maxPending: 10, maxPerEndpoint: 50 }, slots }],
    ...over,
  };
}

test('names: frontend and backend differ, only characters HAProxy takes', () => {
  assert.deepEqual(proxyNames('redis', '127.0.0.1', 6379), { frontend: 'fe_redis_127.0.0.1_6379', backend: 'be_redis_127.0.0.1_6379' });
  assert.deepEqual(proxyNames('api', 'fe80::1%eth0', 80), { frontend: 'fe_api_fe80::1_eth0_80', backend: 'be_api_fe80::1_eth0_80' });
});

test('the configuration: master-worker, runtime API, limits, retries, no health check, slots', () => {
  const text = renderConfig(spec());
  for (const line of [
    '  master-worker',
    '  stats socket /run/x/admin.sock mode 600 level admin expose-fd listeners',
    '  timeout connect 3000ms',
    '  timeout tunnel 24d',
    '  retries 4',
    '  option redispatch 1',
    'frontend fe_redis_127.0.0.1_6379',
    '  bind 127.0.0.1:6379',
    '  tcp-request connection reject if { fe_conn gt 100 }',
    '  tcp-request content reject if { queue(be_redis_127.0.0.1_6379) ge 10 }',
    'backend be_redis_127.0.0.1_6379',
    '  balance roundrobin',
    '  server s1 198.18.0.1:7001 weight 1 maxconn 50',
    // a draining slot starts with weight 0 (no drain keyword), an IPv6 one with its family prefix
    '  server s2 ipv6@fd00::2:7002 weight 0 maxconn 50',
    '  server s3 198.18.0.3:7003 weight 1 disabled maxconn 50',
    '  server-template s 4-6 0.0.0.0:1 disabled maxconn 50',
    // --wait-for-endpoint: only for a client that finds no usable endpoint
    '  lua-load /run/x/wait.lua',
    '  tcp-request inspect-delay 6000ms',
    '  tcp-request content lua.ambassador_wait_for_endpoint be_redis_127.0.0.1_6379 5000 if { nbsrv(be_redis_127.0.0.1_6379) eq 0 }',
  ]) assert.ok(text.split('\n').includes(line), `missing: ${line}\n${text}`);
  assert.doesNotMatch(text, /\bcheck\b/, 'HAProxy checks no endpoint: the ambassador decides');
});

test('max-per-endpoint that max-connections already covers: no server maxconn, no queue rule', () => {
  const base = spec();
  const l = { ...base.listeners[0]!, limits: { maxConnections: 100, maxPending: 10, maxPerEndpoint: 100 } };
  const text = renderConfig({ ...base, listeners: [l] });
  assert.doesNotMatch(text, /maxconn 100\b|queue\(/);
  assert.match(text, /tcp-request connection reject if \{ fe_conn gt 100 \}/);
});

test('TCP keep-alive: towards endpoints always; towards clients only for a listener reachable from other hosts', () => {
  const base = spec();
  const sections = (text: string) => text.split(/\n(?=\S)/);
  const loopback = sections(renderConfig(base));
  assert.ok(loopback.find((x) => x.startsWith('defaults'))!.includes('  option srvtcpka\n  srvtcpka-idle 30s'));
  assert.ok(!loopback.join('\n').includes('clitcpka'), 'a client on loopback: the kernel knows both ends');
  const l = base.listeners[0]!;
  const text = renderConfig({ ...base, listeners: [l, { ...l, ...proxyNames('redis', '0.0.0.0', 6380), bind: '0.0.0.0', port: 6380 },
    { ...l, ...proxyNames('redis', '127.0.0.1', 6381), port: 6381, alsoBinds: ['::1'] }] });
  const fe = sections(text).filter((x) => x.startsWith('frontend'));
  assert.deepEqual(fe.map((x) => x.includes('  option clitcpka\n  clitcpka-idle 30s')), [false, true, false]);
});

test('renderedSlot: what the runtime API must then correct (a drain slot starts ready with weight 0)', () => {
  const s = spec().listeners[0]!.slots;
  assert.deepEqual(renderedSlot(s[1]!), { ...s[1]!, state: 'ready', weight: 0 });
  assert.deepEqual(renderedSlot(s[0]!), s[0]);
  assert.equal(renderedSlot(s[4]!).host, '0.0.0.0');
});

test('balance=srv: random(1), all backups used, a backup tier; an idle timeout is the tunnel timeout', () => {
  const names = proxyNames('db', '0.0.0.0', 5432);
  const text = renderConfig(spec({
    idleTimeoutMs: 60_000,
    noEndpointWaitMs: 0,
    listeners: [{ ...names, bind: '0.0.0.0', port: 5432, balance: 'srv', limits: { maxConnections: Infinity, maxPending: Infinity, maxPerEndpoint: Infinity }, slots: emptySlots({ active: 2, backup: 2 }) }],
  }));
  for (const line of ['  balance random(1)', '  option allbackups', '  server-template s 1-2 0.0.0.0:1 disabled', '  server-template b 1-2 0.0.0.0:1 disabled backup', '  timeout tunnel 60000ms']) {
    assert.ok(text.split('\n').includes(line), `missing: ${line}\n${text}`);
  }
  assert.doesNotMatch(text, /tcp-request/, 'no limit, no rule');
});

test('parseVersion', () => {
  assert.deepEqual(parseVersion('HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/'), { version: '2.6.12-1+deb12u4', major: 2, minor: 6 });
  assert.deepEqual(parseVersion('HA-Proxy version 1.8.19 2019/02/11'), undefined);
  assert.deepEqual(parseVersion('HAProxy version 3.0.5-1 2024'), { version: '3.0.5-1', major: 3, minor: 0 });
});

test('HAProxy itself accepts the rendered configuration (haproxy -c)', async (t) => {
  let binary;
  try {
    binary = await findHaproxy();
  } catch (err) {
    return t.skip(`HAProxy is not usable here: ${(err as Error).message}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'haproxy-config-test-'));
  try {
    writeFileSync(join(dir, 'wait.lua'), WAIT_LUA);
    for (const s of [spec({ adminSocket: join(dir, 'a.sock'), luaFile: join(dir, 'wait.lua') }), spec({ adminSocket: join(dir, 'a.sock'), idleTimeoutMs: 1500, luaFile: undefined })]) {
      const file = join(dir, 'haproxy.cfg');
      writeFileSync(file, renderConfig(s));
      assert.equal(await checkConfig(binary.path, file), undefined);
    }
    writeFileSync(join(dir, 'bad.cfg'), 'global\n  nonsense-keyword 1\n');
    assert.match((await checkConfig(binary.path, join(dir, 'bad.cfg'))) ?? '', /nonsense-keyword|unknown keyword/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
