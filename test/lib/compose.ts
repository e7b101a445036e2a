// Reading the compose examples (compose/*/compose.yaml) for the tests that check and run them.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

/** The repository root (from .build/test/lib/). */
export const root = fileURLToPath(new URL('../../../', import.meta.url));
export const composeDir = join(root, 'compose');
/** The image every ambassador service of the examples uses. */
export const IMAGE = 'mdns-ambassador:latest';

export type Service = Record<string, unknown> & {
  image?: string;
  build?: string | { context: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  hostname?: string;
  networks?: string[] | Record<string, unknown>;
  network_mode?: string;
  secrets?: Array<string | { source: string; target?: string }>;
  volumes?: string[];
  depends_on?: string[] | Record<string, unknown>;
  read_only?: boolean;
  init?: boolean;
  restart?: string;
};

export interface Compose {
  name?: string;
  services: Record<string, Service>;
  networks?: Record<string, { driver?: string } | null>;
  volumes?: Record<string, unknown>;
  secrets?: Record<string, { file: string }>;
}

/** Parses compose/<dir>/compose.yaml (YAML merge keys on, as docker compose does). */
export function loadCompose(dir: string): Compose {
  return parse(readFileSync(join(dir, 'compose.yaml'), 'utf8'), { merge: true }) as Compose;
}

/** Directory names under compose/, sorted. */
export const examples = readdirSync(composeDir).filter((d) => statSync(join(composeDir, d)).isDirectory()).sort();

export const netsOf = (s: Service): string[] => (Array.isArray(s.networks) ? s.networks : Object.keys(s.networks ?? {}));
export const keysOf = (x: string[] | Record<string, unknown> | undefined): string[] => (Array.isArray(x) ? x : Object.keys(x ?? {}));

/** The argv a container runs: entrypoint + command (lists only; strings are split on spaces). */
export function argvOf(s: Service): string[] {
  const list = (x: string[] | string | undefined) => (x === undefined ? [] : Array.isArray(x) ? x : x.split(/\s+/));
  return [...list(s.entrypoint), ...list(s.command)];
}

/** A pod's holder: it only keeps the network namespace that its service and ambassador join (`sleep infinity`). */
export function isPod(s: Service): boolean {
  return argvOf(s).join(' ') === 'sleep infinity';
}
