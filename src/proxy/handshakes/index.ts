import type { ProtocolHandshake, ProtocolOptions } from './protocol.js';

export type { ProtocolHandshake, ProtocolOptions, HandshakeStats, ServerTlsMode, ServerVerifyMode } from './protocol.js';
export { SERVER_TLS_MODES, SERVER_VERIFY_MODES } from './protocol.js';

type ProtocolFactory = (opts: ProtocolOptions) => ProtocolHandshake;

/**
 * Supported protocols, by the name used in `--connect …,protocol=NAME`. Each module is loaded
 * only when a listener uses it (loadProtocols): the PostgreSQL one brings node:crypto, about
 * 1 MB of resident memory that an ambassador without it need not carry.
 */
const LOADERS: Readonly<Record<string, () => Promise<ProtocolFactory>>> = {
  redis: async () => {
    const { RedisProtocol } = await import('./redis.js');
    return (opts) => new RedisProtocol(opts);
  },
  postgres: async () => {
    const { PostgresProtocol } = await import('./postgres.js');
    return (opts) => new PostgresProtocol(opts);
  },
};

export const PROTOCOL_NAMES = Object.keys(LOADERS);

const loaded = new Map<string, ProtocolFactory>();

/** Loads the modules of these protocols (unknown names are left to createProtocol to refuse). */
export async function loadProtocols(names: Iterable<string | undefined>): Promise<void> {
  for (const name of new Set(names)) {
    const load = name === undefined ? undefined : LOADERS[name];
    if (load && !loaded.has(name!)) loaded.set(name!, await load());
  }
}

/** A protocol loaded by loadProtocols. */
export function createProtocol(name: string, opts: ProtocolOptions): ProtocolHandshake {
  if (!(name in LOADERS)) throw new Error(`unknown protocol '${name}' (known: ${PROTOCOL_NAMES.join(', ')})`);
  const make = loaded.get(name);
  if (!make) throw new Error(`protocol '${name}' used before loadProtocols()`);
  return make(opts);
}
