// mDNS over IPv6 (ff02::fb) next to IPv4, on lab hosts whose links have IPv6 addresses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { canUseNetns, Lab, waitFor } from '../lib/netns.js';

const cli = fileURLToPath(new URL('../../../dist/cli/bin.js', import.meta.url));

test('an instance advertised on a dual-stack link resolves to its IPv4 and IPv6 addresses', { skip: canUseNetns() }, async () => {
  const lab = await Lab.create({ hosts: ['a', 'b'], ipv6: true });
  try {
    const a = lab.host('a');
    const b = lab.host('b');
    // Wait for the link-local address to finish duplicate address detection.
    const v6 = await waitFor(async () => {
      const r = await a.exec('ip', ['-6', '-o', 'addr', 'show', 'dev', a.ifname, 'scope', 'link']);
      return r.stdout.includes('tentative') ? undefined : /inet6 (fe80::[0-9a-f:]+)/.exec(r.stdout)?.[1];
    }, { timeoutMs: 10_000, message: 'IPv6 link-local address on a' });
    const svc = a.spawn(process.execPath, ['-e', `require('net').createServer((s)=>{s.on('error',()=>{});s.end()}).listen(4567, () => console.log('listening'))`]);
    await svc.waitForLine(/listening/);
    const amb = a.spawn(process.execPath, [cli, '--advertise', 'six=4567', '--interface', a.ifname, '--hostname', 'six-a', '--log-format', 'json']);
    await amb.waitForLine(/"state":"announced"/, { timeoutMs: 10_000 });
    const r = await b.exec(process.execPath, [cli, 'browse', 'six', '--once', '--json', '--wait', '4000', '--interface', b.ifname], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.trim(), `browse found it: ${r.stderr} ${amb.output}`);
    const e = JSON.parse(r.stdout.trim().split('\n')[0]!);
    console.log(`# resolved over mDNS: ${e.addresses.join(', ')}`);
    assert.ok(e.addresses.includes(a.ip), 'IPv4 address');
    assert.ok(e.addresses.includes(`${v6}%${b.ifname}`), `IPv6 link-local ${v6} (AAAA) with its zone, the interface it was learned on`);
    assert.equal(e.addresses[0], a.ip, 'IPv4 first: likeliest to work');
    // Queried over IPv6 only: the v6 socket answers too (ask with a legacy unicast query over v6).
    const dig = await b.exec('dig', ['+time=2', '+tries=2', '-p', '5353', `@${v6}%${b.ifname}`, 'six-a.local', 'AAAA'], { timeoutMs: 10_000 });
    assert.match(dig.stdout, new RegExp(`six-a\\.local\\.\\s+10\\s+IN\\s+AAAA\\s+${v6}`), dig.stdout);
  } finally {
    await lab.destroy();
  }
});
