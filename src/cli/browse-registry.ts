import { redactTxt } from '../base/redaction.js';
import type { RegistryConfig } from '../config/registry-url.js';
import type { DirectoryWatch, RegistryClient } from '../discovery/registry/client.js';
import { connectRegistry } from '../discovery/registry/connect.js';
import { type RegistryRecord, decodeRecord } from '../discovery/registry/record.js';

export type RegistryEvent = 'up' | 'update' | 'down';

/**
 * `browse --registry URL`: what is registered, live, like the mDNS browse (`+`, `-`, `=`): one
 * service's directory, or every service under the prefix (looked for again every 5 s).
 * Values that are not registrations are said once each on stderr.
 */
export async function browseRegistry(r: RegistryConfig, name: string | undefined,
  print: (event: RegistryEvent, rec: RegistryRecord, key: string) => void): Promise<{ client: RegistryClient; all: () => Array<{ key: string; rec: RegistryRecord }> }> {
  const client = await connectRegistry(r.kind, {
    members: r.members, prefix: r.prefix, ttlMs: r.ttlMs, tls: r.tls, authFile: r.authFile,
    caFile: r.caFile, certFile: r.certFile, keyFile: r.keyFile, display: r.display,
  });
  let warned = false;
  client.on('state', (state: string, error?: string) => {
    if (state === 'reconnecting' || (state === 'connecting' && error)) {
      if (!warned) process.stderr.write(`ambassador: warning: registry ${r.display} unreachable (${error ?? 'connecting'}): retrying\n`);
      warned = true;
    } else if (state === 'connected') warned = false;
  });
  client.on('problem', (m: string) => process.stderr.write(`ambassador: warning: registry: ${m}\n`));
  client.start();
  const watches = new Map<string, { watch: DirectoryWatch; known: Map<string, { text: string; rec: RegistryRecord }> }>();
  const bad = new Set<string>();
  const follow = (service: string) => {
    if (watches.has(service)) return;
    const watch = client.watch(service);
    const known = new Map<string, { text: string; rec: RegistryRecord }>();
    watches.set(service, { watch, known });
    watch.on('change', () => {
      for (const [key, text] of watch.entries) {
        const rec = decodeRecord(text);
        if (typeof rec === 'string') {
          if (!bad.has(`${service}/${key}`)) process.stderr.write(`ambassador: warning: registry ${r.prefix}/${service}/${key}: ignored (${rec})\n`);
          bad.add(`${service}/${key}`);
          continue;
        }
        const before = known.get(key);
        if (before?.text === text) continue;
        known.set(key, { text, rec });
        print(before ? 'update' : 'up', rec, key);
      }
      for (const [key, k] of known) {
        if (!watch.entries.has(key)) {
          known.delete(key);
          print('down', k.rec, key);
        }
      }
    });
  };
  if (name) follow(name.replace(/^_/, '').replace(/\._tcp(\.local)?$/, '').toLowerCase());
  else {
    const look = () => client.services().then((list) => list.forEach(follow), () => {});
    void look();
    setInterval(look, 5000).unref();
  }
  return {
    client,
    all: () => [...watches.values()].flatMap((w) => [...w.known].map(([key, k]) => ({ key, rec: k.rec }))),
  };
}

export function registryLine(mark: string, rec: RegistryRecord): string {
  const txt = Object.entries(redactTxt(rec.txt)).map(([k, v]) => `${k}=${v}`).join(' ');
  const addr = rec.addresses.map((a) => (a.includes(':') ? `[${a}]:${rec.port}` : `${a}:${rec.port}`)).join(',');
  return `${mark} ${rec.instance.padEnd(24)} ${`_${rec.service}._tcp`.padEnd(16)} ${`${rec.host} (registry)`.padEnd(20)} ${addr}`
    + `${rec.priority || rec.weight ? ` prio=${rec.priority} weight=${rec.weight}` : ''}${txt ? `  ${txt}` : ''}`;
}
