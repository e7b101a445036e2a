import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseHosts } from './hosts-file.js';
import { type ResolvConf, type ResolvEnv, parseResolvConf } from './resolv-conf.js';

export interface PlatformFilesOptions {
  resolvConfPath?: string;
  hostsPath?: string;
  env?: ResolvEnv;
  hostname?: string;
}

/** A file parsed again only when it changed (mtime, size or inode), as glibc ≥ 2.26 does. */
class ParsedFile<T> {
  private stamp = '';
  private value: T;

  constructor(private readonly path: string, private readonly parse: (text: string) => T) {
    this.value = parse('');
  }

  get(): T {
    let stamp: string;
    try {
      const st = statSync(this.path);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      stamp = 'missing';
    }
    if (stamp !== this.stamp) {
      let text = '';
      try {
        text = readFileSync(this.path, 'utf8');
      } catch {
        // a missing or unreadable file means the defaults, as for the platform's resolver
      }
      this.value = this.parse(text);
      this.stamp = stamp;
    }
    return this.value;
  }
}

/** The platform's resolver configuration (/etc/resolv.conf, /etc/hosts), kept current. */
export class PlatformFiles {
  private readonly resolv: ParsedFile<ResolvConf>;
  private readonly hostsFile: ParsedFile<Map<string, string[]>>;

  constructor(opts: PlatformFilesOptions = {}) {
    const env = opts.env ?? { LOCALDOMAIN: process.env.LOCALDOMAIN, RES_OPTIONS: process.env.RES_OPTIONS };
    const host = opts.hostname ?? hostname();
    this.resolv = new ParsedFile(opts.resolvConfPath ?? '/etc/resolv.conf', (t) => parseResolvConf(t, env, host));
    this.hostsFile = new ParsedFile(opts.hostsPath ?? '/etc/hosts', parseHosts);
  }

  resolvConf(): ResolvConf {
    const conf = this.resolv.get();
    // glibc and musl: no nameserver line means the resolver on this host
    return conf.nameservers.length > 0 ? conf : { ...conf, nameservers: ['127.0.0.1'] };
  }

  /** Addresses /etc/hosts gives for `name` (empty when it names none). */
  hosts(name: string): readonly string[] {
    return this.hostsFile.get().get(name.toLowerCase().replace(/\.+$/, '')) ?? [];
  }
}
