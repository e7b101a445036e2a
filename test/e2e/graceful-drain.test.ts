// What a held connection sees when its advertiser stops gracefully. A pooled
// client keeps one connection through `--connect redis=6379` on another host and PINGs it every
// 400 ms; the advertiser gets SIGTERM with --drain-timeout 3s.
//   relayed (redis on loopback): the connection lives until the advertiser's drain ends, then
//     the relay closes it — no earlier EOF from goodbye, removal or failing health checks.
//   direct (redis on the LAN address): the ambassador going away does not touch the connection
//     at all; it keeps working, and only new connections would look for another endpoint.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, type Host, type LabProcess, canUseNetns, haveCommand, startRedis } from '../lib/netns.js';
import { startAdvertiser, startConnector } from './ambassador-kit.js';

const skip = canUseNetns() ?? (haveCommand('redis-server') ? undefined : 'redis-server not installed');
const DRAIN_MS = 3000;

// One connection, idle between PINGs (every 400 ms: a pool's connection has pauses); prints "PONG t" per reply and "EOF t" at the end (t: ms since start).
const POOLED = String.raw`
const net = require('node:net');
const t0 = Date.now();
const s = net.connect(6379, '127.0.0.1');
let buf = '';
s.on('connect', () => { console.log('CONNECTED'); setInterval(() => s.write('PING\r\n'), 400); });
s.on('data', (d) => { buf += d; while (buf.includes('\r\n')) { const i = buf.indexOf('\r\n'); if (buf.slice(0, i) === '+PONG') console.log('PONG ' + (Date.now() - t0)); buf = buf.slice(i + 2); } });
s.on('error', (e) => console.log('ERROR ' + e.code));
s.on('close', () => { console.log('EOF ' + (Date.now() - t0)); process.exit(0); });
`;

function times(p: LabProcess, what: 'PONG' | 'EOF'): number[] {
  return p.stdout.split('\n').filter((l) => l.startsWith(what + ' ')).map((l) => Number(l.split(' ')[1]));
}

describe('a graceful stop of the advertiser, seen by a held connection', { skip }, () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create({ hosts: ['relayed', 'direct', 'app'] });
  });
  after(async () => {
    await lab?.destroy();
  });

  for (const mode of ['relayed', 'direct'] as const) {
    test(`${mode}: no EOF before the drain ends${mode === 'direct' ? ' (nor after: the service is still there)' : ''}`, async () => {
      const srv = lab.host(mode);
      const app: Host = lab.host('app');
      await startRedis(srv, { port: 7001, bind: mode === 'relayed' ? '127.0.0.1' : '0.0.0.0' });
      const { amb } = await startAdvertiser(srv, ['--advertise', `redis=${mode === 'relayed' ? '127.0.0.1:' : ''}7001`, '--drain-timeout', `${DRAIN_MS}ms`]);
      const con = await startConnector(app, ['--connect', 'redis=6379', '--log-level', 'debug']);
      await con.waitLog({ msg: 'endpoint up', address: new RegExp(`^${srv.ip.replace(/\./g, '\\.')}:`) });
      const client = app.spawn(process.execPath, ['-e', POOLED], { name: `[app] pooled client (${mode})` });
      await client.waitForLine(/^PONG /);
      const t0 = Date.now();
      const t0Client = times(client, 'PONG').at(-1)!;
      void amb.stop();
      const waited = mode === 'relayed' ? DRAIN_MS + 3000 : DRAIN_MS + 2000;
      const eof = await client.waitForLine(/^EOF (\d+)/, { timeoutMs: waited }).then((m) => Number(m[1]), () => undefined);
      const since = (t: number) => t - t0Client;
      const pongs = times(client, 'PONG').filter((t) => t > t0Client);
      if (mode === 'relayed') {
        assert.ok(eof !== undefined, `the relay closes the connection when its drain ends (waited ${Date.now() - t0} ms)`);
        console.log(`# relayed: EOF ${since(eof!)} ms after SIGTERM (drain ${DRAIN_MS} ms); last PONG ${since(pongs.at(-1)!)} ms after`);
        assert.ok(since(eof!) >= DRAIN_MS - 300, `no EOF before the drain ends: EOF after ${since(eof!)} ms`);
        assert.ok(since(pongs.at(-1)!) >= DRAIN_MS - 900, 'PINGs answered throughout the drain');
      } else {
        console.log(`# direct: no EOF within ${waited} ms after SIGTERM; ${pongs.length} PONGs since`);
        assert.equal(eof, undefined, `the connection is left alone: ${client.stdout.slice(-200)}`);
        assert.ok(since(pongs.at(-1)!) >= DRAIN_MS, 'still answered after the drain time');
      }
      assert.equal(con.findAll({ msg: /client closed/ }).length, 0);
      await client.stop();
      await con.stop();
    });
  }
});
