// Interop with a real avahi-daemon (and dig as a conventional unicast DNS client), on lab hosts.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Lab, waitFor, type Host, type LabProcess } from '../lib/netns.js';
import { avahiBrowse, avahiPublish, canUseAvahi, startAvahi } from '../lib/avahi.js';

const cli = fileURLToPath(new URL('../../../dist/cli/bin.js', import.meta.url));

/** A TCP service to advertise (health gating needs something that accepts connections). Health
 * checks connect and reset at once, so the service must survive ECONNRESET. */
function tcpService(host: Host, port: number): LabProcess {
  return host.spawn(process.execPath, ['-e', `require('net').createServer((s)=>{s.on('error',()=>{});s.end('hi\\n')}).listen(${port}, () => console.log('listening'))`]);
}

function ambassador(host: Host, args: string[]): LabProcess {
  return host.spawn(process.execPath, [cli, ...args, '--interface', host.ifname, '--hostname', `amb-${host.name}`, '--log-format', 'json']);
}

describe('interop with avahi-daemon', { skip: canUseAvahi() }, () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b'] });
  });
  after(async () => {
    await lab?.destroy();
  });

  test('avahi-browse -r on another host resolves a service our ambassador advertises (port, TXT, host, address)', async () => {
    const a = lab.host('a');
    const b = lab.host('b');
    await startAvahi(b);
    const svc = tcpService(a, 1234);
    await svc.waitForLine(/listening/);
    const amb = ambassador(a, ['--advertise', 'demo=1234,txt.k=v,txt.env=staging,instance=Our Demo']);
    try {
      await amb.waitForLine(/"state":"announced"/, { timeoutMs: 10_000 });
      const rows = await avahiBrowse(b, '_demo._tcp', { until: (rs) => rs.some((r) => r.name === 'Our Demo') });
      const row = rows.find((r) => r.name === 'Our Demo')!;
      console.log(`# avahi-browse row: ${JSON.stringify(row)}`);
      assert.equal(row.port, 1234);
      assert.equal(row.hostname, 'amb-a.local');
      assert.equal(row.address, a.ip);
      // (and the port on which its ambassador answers host probes)
      assert.deepEqual([...row.txt!].filter((t) => !t.startsWith('hostprobe=')).sort(), ['env=staging', 'k=v']);
      assert.equal(row.txt!.filter((t) => /^hostprobe=\d+$/.test(t)).length, 1);

      // Graceful stop: goodbyes make avahi forget it without waiting for the TTL.
      await amb.stop();
      await avahiBrowse(b, '_demo._tcp', { until: (rs) => !rs.some((r) => r.name === 'Our Demo'), timeoutMs: 5000 });
    } finally {
      await amb.stop();
      await svc.stop();
    }
  });

  test('our browser sees a service published with avahi-publish-service', async () => {
    const a = lab.host('a');
    const b = lab.host('b');
    const pub = await avahiPublish(b, 'Avahi Svc', '_demo2._tcp', 4321, ['x=y', 'flag']);
    try {
      const r = await a.exec(process.execPath, [cli, 'browse', 'demo2', '--once', '--json', '--wait', '2500', '--interface', a.ifname], { timeoutMs: 15_000 });
      assert.equal(r.code, 0, r.stderr);
      const events = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
      console.log(`# ambassador browse: ${r.stdout.trim()}`);
      const e = events.find((x) => x.instance === 'Avahi Svc');
      assert.ok(e, 'instance seen');
      assert.equal(e.port, 4321);
      assert.deepEqual(e.addresses, [b.ip]);
      assert.deepEqual(e.txt, { x: 'y', flag: '' });
      assert.equal(e.host, 'avahi-b.local');
    } finally {
      await pub.stop();
    }
  });

  test('a connector uses an endpoint announced by avahi', async () => {
    const a = lab.host('a');
    const b = lab.host('b');
    const svc = tcpService(b, 5555);
    await svc.waitForLine(/listening/);
    const pub = await avahiPublish(b, 'Echo', '_echo._tcp', 5555);
    const amb = ambassador(a, ['--connect', 'echo=7000']);
    try {
      await amb.waitForLine(/"endpoint up"/, { timeoutMs: 10_000 });
      const r = await a.exec(process.execPath, ['-e', `const s=require('net').connect(7000,'127.0.0.1');s.on('data',(d)=>{process.stdout.write(d);s.end()})`], { timeoutMs: 5000 });
      const ss = r.stdout === 'hi\n' ? '' : (await b.exec('ss', ['-ltnp'])).stdout + (await a.exec('ip', ['-br', 'addr'])).stdout + (await b.exec('ip', ['-br', 'addr'])).stdout + svc.output;
      assert.equal(r.stdout, 'hi\n', `client: ${r.stdout} ${r.stderr}\nambassador: ${amb.output}\n${ss}`);
    } finally {
      await amb.stop();
      await pub.stop();
      await svc.stop();
    }
  });

  test('our ambassador and avahi-daemon share UDP 5353 on one host; both are seen from another host', async () => {
    const a = lab.host('a');
    const b = lab.host('b');
    await startAvahi(a);
    const svc = tcpService(a, 2345);
    await svc.waitForLine(/listening/);
    const amb = ambassador(a, ['--advertise', 'shared=2345,instance=From Ambassador']);
    const pub = await avahiPublish(a, 'From Avahi', '_shared._tcp', 2346);
    try {
      await amb.waitForLine(/"state":"announced"/, { timeoutMs: 10_000 });
      const rows = await avahiBrowse(b, '_shared._tcp', {
        until: (rs) => rs.some((r) => r.name === 'From Ambassador') && rs.some((r) => r.name === 'From Avahi'),
      });
      assert.equal(rows.find((r) => r.name === 'From Ambassador')?.port, 2345);
      assert.equal(rows.find((r) => r.name === 'From Avahi')?.port, 2346);
      // And avahi on the same host sees ours (multicast loopback on the shared port).
      const local = await avahiBrowse(a, '_shared._tcp', { until: (rs) => rs.some((r) => r.name === 'From Ambassador') });
      assert.equal(local.find((r) => r.name === 'From Ambassador')?.port, 2345);
    } finally {
      await pub.stop();
      await amb.stop();
      await svc.stop();
    }
  });

  test('dig (legacy unicast, source port ≠ 5353) gets an answer from our responder', async () => {
    const a = lab.host('a');
    const b = lab.host('b');
    const svc = tcpService(a, 3456);
    await svc.waitForLine(/listening/);
    const amb = ambassador(a, ['--advertise', 'diggable=3456']);
    try {
      await amb.waitForLine(/"state":"announced"/, { timeoutMs: 10_000 });
      // dig to the multicast group rejects replies that come from a unicast address
      // (";; reply from unexpected source"), as RFC 6762 §6.7 replies must: ask the host directly.
      const r = await waitFor(async () => {
        const x = await b.exec('dig', ['+time=2', '+tries=1', '-p', '5353', `@${a.ip}`, '_diggable._tcp.local', 'PTR'], { timeoutMs: 8000 });
        return x.stdout.includes('ANSWER SECTION') ? x : undefined;
      }, { timeoutMs: 10_000, message: 'dig answer' });
      console.log(`# dig:\n${r.stdout.split('\n').filter((l) => /IN\s+(PTR|SRV|A)\s/.test(l)).map((l) => '#   ' + l).join('\n')}`);
      assert.match(r.stdout, /_diggable\._tcp\.local\.\s+10\s+IN\s+PTR\s+diggable\\?@amb-a\._diggable\._tcp\.local\./);
      assert.match(r.stdout, /SRV\s+0 0 3456 amb-a\.local\./);
      assert.match(r.stdout, new RegExp(`amb-a\\.local\\.\\s+10\\s+IN\\s+A\\s+${a.ip.replace(/\./g, '\\.')}`));
    } finally {
      await amb.stop();
      await svc.stop();
    }
  });
});
