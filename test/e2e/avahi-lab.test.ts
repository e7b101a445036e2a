// Proves the avahi harness (test/lib/avahi.ts): a real avahi-daemon per lab host, publishing
// with avahi-publish-service on one host and browsing with avahi-browse on another.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from '../lib/netns.js';
import { avahiBrowse, avahiPublish, canUseAvahi, parseAvahiBrowse, startAvahi } from '../lib/avahi.js';

test('parseAvahiBrowse decodes escapes and TXT', () => {
  const rows = parseAvahiBrowse([
    '+;lab0;IPv4;My\\032Service\\046x;_demo._tcp;local',
    '=;lab0;IPv4;My\\032Service\\046x;_demo._tcp;local;h.local;198.18.1.1;1234;"k=v" "q=\\"x\\"" "e="',
    'junk',
  ].join('\n'));
  assert.equal(rows.length, 2);
  assert.deepEqual(rows[1], {
    event: '=', iface: 'lab0', protocol: 'IPv4', name: 'My Service.x', type: '_demo._tcp', domain: 'local',
    hostname: 'h.local', address: '198.18.1.1', port: 1234, txt: ['k=v', 'q="x"', 'e='],
  });
});

describe('avahi harness', { skip: canUseAvahi() }, () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create({ hosts: ['a', 'b'] });
    await Promise.all([startAvahi(lab.host('a')), startAvahi(lab.host('b'))]);
  });
  after(async () => {
    await lab?.destroy();
  });

  test('a service published by avahi on a is browsed and resolved by avahi on b', async () => {
    const a = lab.host('a');
    const pub = await avahiPublish(a, 'Demo Service', '_demo._tcp', 1234, ['k=v']);
    const rows = await avahiBrowse(lab.host('b'), '_demo._tcp', {
      until: (rs) => rs.some((r) => r.name === 'Demo Service'),
    });
    const row = rows.find((r) => r.name === 'Demo Service')!;
    assert.equal(row.type, '_demo._tcp');
    assert.equal(row.iface, 'lab0');
    assert.equal(row.port, 1234);
    assert.deepEqual(row.txt, ['k=v']);
    assert.equal(row.address, a.ip);
    assert.equal(row.hostname, 'avahi-a.local');

    // withdrawing sends goodbyes: b forgets it without waiting for the TTL
    await pub.stop();
    await avahiBrowse(lab.host('b'), '_demo._tcp', { until: (rs) => !rs.some((r) => r.name === 'Demo Service'), timeoutMs: 10_000 });
  });
});
