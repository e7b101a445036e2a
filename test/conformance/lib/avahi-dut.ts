// avahi-daemon as the device under test, for judging the instrument itself: the scenarios the
// ambassador fails should be ones a mature stack can pass (CONFORMANCE_DUT=avahi). The
// ambassador's --advertise flags become static service files: same host label (dut), instance
// names (instance=, default NAME@dut), types, ports and TXT.
import { startAvahi } from '../../lib/avahi.js';
import type { Host } from '../../lib/netns.js';
import type { Dut } from './trial.js';

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export async function startAvahiDut(host: Host, args: string[]): Promise<Dut> {
  const services: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] !== '--advertise') throw new Error(`avahi as the device under test: ${args[i]} has no equivalent`);
    const [head, ...opts] = args[++i]!.split(',');
    const [name, port] = head!.split('=');
    const kv = Object.fromEntries(opts.map((o) => [o.slice(0, o.indexOf('=')), o.slice(o.indexOf('=') + 1)]));
    const instance = kv.instance ?? `${name}@dut`;
    const txt = Object.entries(kv).filter(([k]) => k.startsWith('txt.')).map(([k, v]) => `    <txt-record>${xml(k.slice(4))}=${xml(v)}</txt-record>\n`).join('');
    services[`${name}.service`] = `<?xml version="1.0" standalone='no'?>\n<!DOCTYPE service-group SYSTEM "avahi-service.dtd">\n<service-group>\n` +
      `  <name>${xml(instance)}</name>\n  <service>\n    <type>_${name}._tcp</type>\n    <port>${port}</port>\n${txt}  </service>\n</service-group>\n`;
  }
  const avahi = await startAvahi(host, { hostName: 'dut', services });
  return {
    signal: (sig) => { avahi.daemon.kill(sig); },
    exited: avahi.daemon.exited,
    stop: () => avahi.stop(5000),
  };
}
