import type { ArgumentsCamelCase, Argv } from 'yargs';
import { formatAddressPort } from '../base/address.js';
import { redactTxt } from '../base/redaction.js';
import { MdnsEngine } from '../mdns/engine.js';
import { InterfaceError, InterfaceSelection } from '../mdns/link/interfaces.js';
import type { ServiceBrowser, ServiceInstance } from '../mdns/browse/browser.js';
import { parseDuration } from '../config/config.js';
import { parseRegistryUrl } from '../config/registry-url.js';
import { ConfigError, parseServiceName } from '../config/specs.js';
import { fail } from './fail.js';

export const BROWSE_OPTION_NAMES = ['interface', 'exclude-interface', 'json', 'once', 'wait', 'registry', 'mdns'];
/** Those of BROWSE_OPTION_NAMES that are booleans. */
export const BROWSE_BOOLEAN_OPTIONS = ['json', 'once', 'mdns'];

export function browseOptions<T>(y: Argv<T>) {
  return y
    .positional('name', { type: 'string', describe: 'service name (e.g. redis) or type (_redis._tcp); default: every service' })
    .option('interface', { alias: 'i', type: 'string', array: true, describe: 'mDNS interface by name, address or glob (repeatable); default: every up multicast interface' })
    .option('exclude-interface', { type: 'string', array: true, describe: 'interfaces not to use: names, addresses or globs (repeatable)' })
    .option('json', { type: 'boolean', default: false, describe: 'one JSON object per event, for scripts' })
    .option('once', { type: 'boolean', default: false, describe: 'print what is found within --wait ms, then exit' })
    .option('wait', { type: 'string', default: '3000', describe: 'how long to wait with --once: ms, or with a unit (2s)' })
    .option('registry', { type: 'string', describe: 'also list what is registered in etcd or ZooKeeper (etcd://HOST:PORT[,…]/PREFIX, etcds://…, zk://…)' })
    .option('mdns', { type: 'boolean', default: true, describe: 'browse mDNS too (--no-mdns: only the registry)' });
}

function line(mark: string, i: ServiceInstance): string {
  const txt = Object.entries(redactTxt(i.txt)).map(([k, v]) => `${k}=${v}`).join(' ');
  const type = i.type.replace(/\.local$/, '');
  return `${mark} ${i.instance.padEnd(24)} ${type.padEnd(16)} ${i.host.padEnd(20)} ${i.addresses.map((a) => formatAddressPort(a, i.port)).join(',')}` +
    `${i.priority || i.weight ? ` prio=${i.priority} weight=${i.weight}` : ''}${txt ? `  ${txt}` : ''}`;
}

export async function browseCommand(argv: ArgumentsCamelCase<{ name?: string; interface?: string[]; excludeInterface?: string[]; json: boolean; once: boolean; wait: string; registry?: string; mdns: boolean }>): Promise<void> {
  let select;
  let wait: number;
  let name: string | undefined;
  try {
    select = InterfaceSelection.parse(argv.interface ?? [], argv.excludeInterface ?? []);
    // Durations and service names as `run` takes them.
    wait = parseDuration(argv.wait, 3000, '--wait');
    if (argv.name !== undefined) name = parseServiceName(String(argv.name), 'browse');
  } catch (err) {
    if (err instanceof InterfaceError || err instanceof ConfigError) fail(err.message);
    throw err;
  }
  let registry;
  try {
    registry = argv.registry ? parseRegistryUrl(argv.registry, (v, what) => parseDuration(v, 0, what)) : undefined;
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  if (!argv.mdns && !registry) fail('--no-mdns: nothing left to browse: give --registry URL');
  if (registry) {
    const { browseRegistry, registryLine } = await import('./browse-registry.js');
    const printRecord = (event: 'up' | 'update' | 'down', rec: import('../discovery/registry/record.js').RegistryRecord) => {
      if (argv.json) process.stdout.write(JSON.stringify({ event, source: 'registry', ...rec, txt: redactTxt(rec.txt) }) + '\n');
      else process.stdout.write(registryLine(event === 'up' ? '+' : event === 'down' ? '-' : '=', rec) + '\n');
    };
    const found = await browseRegistry(registry, name, argv.once ? () => {} : printRecord);
    if (!argv.mdns) {
      if (!argv.once) setInterval(() => {}, 1 << 30);
      const stop = async () => {
        await found.client.close(500);
        process.exit(0);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      if (argv.once) {
        setTimeout(() => {
          const all = found.all().sort((a, b) => `${a.rec.service}/${a.key}`.localeCompare(`${b.rec.service}/${b.key}`));
          for (const { rec } of all) printRecord('up', rec);
          if (all.length === 0) process.stderr.write(`no ${name ? `'${name}' ` : ''}service registered within ${wait} ms in ${registry!.display}\n`);
          void stop();
        }, wait);
      }
      return;
    }
    if (argv.once) {
      setTimeout(() => {
        for (const { rec } of found.all()) printRecord('up', rec);
      }, wait - 1).unref();
    }
  }
  const engine = new MdnsEngine({ select });
  try {
    await engine.start();
  } catch (err) {
    fail((err as Error).message);
  }
  // Interfaces come and go while we browse; with none yet, say so once (on stderr) and wait.
  if (!argv.once) setInterval(() => {}, 1 << 30);
  if (engine.network().interfaces.length === 0) process.stderr.write(`ambassador: warning: no usable network interface (${select}): waiting for one\n`);
  const print = (event: 'up' | 'update' | 'down', i: ServiceInstance) => {
    if (argv.json) process.stdout.write(JSON.stringify({ event, ...i, txt: redactTxt(i.txt) }) + '\n');
    else process.stdout.write(line(event === 'up' ? '+' : event === 'down' ? '-' : '=', i) + '\n');
  };
  const browsers = new Map<string, ServiceBrowser>();
  const follow = (type: string) => {
    if (browsers.has(type)) return;
    const b = engine.browse(type);
    browsers.set(type, b);
    if (!argv.once) {
      b.on('up', (i) => print('up', i));
      // A goodbye shows as '-' at once; the removal a second later is then not repeated.
      const gone = new Set<string>();
      b.on('update', (i) => {
        if (i.leaving) {
          gone.add(i.fullName);
          print('down', i);
        } else if (gone.delete(i.fullName)) print('up', i);
        else print('update', i);
      });
      b.on('down', (i) => {
        if (!gone.delete(i.fullName)) print('down', i);
      });
    }
  };
  if (name) follow(name);
  else engine.browseTypes().on('type', (t: string) => follow(t));

  const stop = async () => {
    await engine.stop();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (argv.once) {
    setTimeout(() => {
      const all = [...browsers.values()].flatMap((b) => b.instances());
      all.sort((a, b) => a.fullName.localeCompare(b.fullName));
      for (const i of all) print('up', i);
      if (all.length === 0) {
        const on = engine.network().interfaces.map((i) => `${i.name} (${i.addresses.join(' ')})`).join(', ') || 'no interface (none usable yet)';
        process.stderr.write(`no ${name ? `'${name}' ` : ''}service found within ${wait} ms on ${on}\n`);
      }
      void stop();
    }, wait);
  }
}
