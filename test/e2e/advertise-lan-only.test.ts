// `--advertise redis=6379` checks 127.0.0.1:6379. A Redis bound to the LAN address only (`bind
// 192.168.1.20`, a common setup) refuses there and was never announced, with no hint that
// `redis=LANIP:6379` works: the warning now says what to write, and what it says works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, canUseNetns, waitFor } from '../lib/netns.js';
import { startAdvertiser, startAmbassador } from './ambassador-kit.js';

test('a service on the LAN address only: the warning says what to write, and that is announced directly', { skip: canUseNetns() }, async () => {
  const lab = await Lab.create({ hosts: ['a'] });
  try {
    const a = lab.host('a');
    const redis = a.spawn('redis-server', ['--port', '7000', '--bind', a.ip, '--protected-mode', 'no', '--save', '', '--appendonly', 'no',
      '--dir', a.dir, '--logfile', ''], { name: '[a] redis-server LAN only' });
    await waitFor(async () => (await a.exec('redis-cli', ['-h', a.ip, '-p', '7000', 'ping'], { timeoutMs: 3000 })).stdout.trim() === 'PONG',
      { timeoutMs: 10_000, intervalMs: 50, message: 'redis-server on the LAN address' });
    const amb = startAmbassador(a, ['--advertise', 'redis=7000']);
    const hint = await amb.waitLog((l) => l.msg === 'advertisement' && typeof l.reason === 'string' && l.reason.includes('write'), { timeoutMs: 15_000 });
    assert.equal(hint.state, 'waiting-for-target');
    assert.equal(hint.reason, `target 127.0.0.1:7000 not accepting: connection refused (ECONNREFUSED); it listens on ${a.ip}:7000: write --advertise redis=${a.ip}:7000`);
    await amb.stop();
    // What it says to write: announced at once, peers dial the LAN address directly (no relay).
    const { amb: fixed, announced } = await startAdvertiser(a, ['--advertise', `redis=${a.ip}:7000`]);
    assert.equal(announced.port, 7000);
    assert.equal(fixed.find({ msg: /relay/ }), undefined);
    await fixed.stop();
    await redis.stop(2000);
  } finally {
    await lab.destroy();
  }
});
