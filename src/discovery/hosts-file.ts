import { isIP } from 'node:net';

/**
 * /etc/hosts (hosts(5)): name (lowercase, no trailing dot) → addresses in file order. The
 * platform consults it before DNS ("hosts: files dns"), so an SRV target overridden there is
 * dialled at the address the file gives, as every other program on the host would.
 */
export function parseHosts(text: string): Map<string, string[]> {
  const byName = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const [address, ...names] = raw.replace(/#.*$/, '').trim().split(/\s+/).filter(Boolean);
    if (!address || names.length === 0 || isIP(address) === 0) continue;
    for (const n of names) {
      const key = n.toLowerCase().replace(/\.+$/, '');
      const list = byName.get(key) ?? [];
      if (!list.includes(address)) list.push(address);
      byName.set(key, list);
    }
  }
  return byName;
}
