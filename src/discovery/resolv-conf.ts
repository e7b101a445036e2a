import { isIP } from 'node:net';

/**
 * The stub-resolver configuration of the platform, read the way glibc reads it (resolv.conf(5)),
 * so a relative `--srv` name resolves here exactly as `getent`, `dig +search` or the application
 * itself would resolve it (Kubernetes writes `search ns.svc.cluster.local … options ndots:5`).
 */
export interface ResolvConf {
  /** `nameserver` lines (at most 3, as glibc and musl), IP literals; IPv6 may carry a %zone. */
  nameservers: string[];
  /** Search list: `search` or `domain` (the last one wins), LOCALDOMAIN overrides; no trailing dots. */
  search: string[];
  /** Names with fewer dots than this are tried with the search list first (`options ndots:n`, default 1). */
  ndots: number;
  /** Per-attempt timeout (`options timeout:n`, seconds → ms), when the file sets one. */
  timeoutMs?: number;
  /** Rounds over the server list (`options attempts:n`), when the file sets one. */
  attempts?: number;
  /** `options use-vc`: every query over TCP. */
  useVc: boolean;
}

/** glibc's bounds (resolv.h: MAXNS, RES_MAXNDOTS, RES_MAXRETRANS, RES_MAXRETRY). */
const MAX_NAMESERVERS = 3;
const MAX_NDOTS = 15;
const MAX_TIMEOUT_S = 30;
const MAX_ATTEMPTS = 5;

export interface ResolvEnv {
  /** Space-separated search list that replaces the file's (glibc, musl). */
  LOCALDOMAIN?: string;
  /** Options applied after the file's, e.g. `ndots:2 timeout:1`. */
  RES_OPTIONS?: string;
}

function applyOptions(conf: ResolvConf, words: readonly string[]): void {
  for (const w of words) {
    const [key, value] = w.split(':', 2) as [string, string | undefined];
    const n = value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
    if (key === 'ndots' && n !== undefined) conf.ndots = Math.min(n, MAX_NDOTS);
    else if (key === 'timeout' && n !== undefined) conf.timeoutMs = Math.max(1, Math.min(n, MAX_TIMEOUT_S)) * 1000;
    else if (key === 'attempts' && n !== undefined) conf.attempts = Math.max(1, Math.min(n, MAX_ATTEMPTS));
    else if (key === 'use-vc' || key === 'usevc') conf.useVc = true;
    // rotate, edns0, single-request…: meaningless or already the behaviour here
  }
}

function domains(words: readonly string[]): string[] {
  return words.map((d) => d.replace(/\.+$/, '')).filter((d) => d.length > 0);
}

/**
 * Parses resolv.conf text. Unknown keywords and malformed values are ignored, as glibc does;
 * a comment starts with '#' or ';' (also after a value). `hostname` supplies the default search
 * domain when the file names none (glibc: the part of the host name after its first dot).
 */
export function parseResolvConf(text: string, env: ResolvEnv = {}, hostname = ''): ResolvConf {
  const conf: ResolvConf = { nameservers: [], search: [], ndots: 1, useVc: false };
  let searchSet = false;
  for (const raw of text.split('\n')) {
    const words = raw.replace(/[#;].*$/, '').trim().split(/\s+/).filter(Boolean);
    const [keyword, ...rest] = words;
    if (keyword === 'nameserver' && rest[0] && conf.nameservers.length < MAX_NAMESERVERS) {
      if (isIP(rest[0]) !== 0) conf.nameservers.push(rest[0]);
    } else if (keyword === 'search' || keyword === 'domain') {
      conf.search = domains(keyword === 'domain' ? rest.slice(0, 1) : rest);
      searchSet = true;
    } else if (keyword === 'options') {
      applyOptions(conf, rest);
    }
  }
  if (!searchSet) {
    const dot = hostname.indexOf('.');
    if (dot > 0) conf.search = domains([hostname.slice(dot + 1)]);
  }
  if (env.LOCALDOMAIN !== undefined) conf.search = domains(env.LOCALDOMAIN.trim().split(/\s+/));
  if (env.RES_OPTIONS) applyOptions(conf, env.RES_OPTIONS.trim().split(/\s+/));
  return conf;
}

/**
 * The names to ask, in order, for `name` (glibc's res_search): an absolute name (trailing dot)
 * only as given; a name with at least `ndots` dots as given first, then with each search domain;
 * a name with fewer dots with each search domain first, then as given.
 */
export function searchCandidates(name: string, conf: Pick<ResolvConf, 'search' | 'ndots'>): string[] {
  if (name.endsWith('.')) return [name.replace(/\.+$/, '').toLowerCase()];
  const dots = name.split('.').length - 1;
  const searched = conf.search.map((d) => `${name}.${d}`);
  const all = dots >= conf.ndots ? [name, ...searched] : [...searched, name];
  return [...new Set(all.map((n) => n.toLowerCase()))];
}
