import type { ProtocolHandshake, ProtocolOptions } from './protocol.js';
import { RedisProtocol } from './redis.js';

export type { ProtocolHandshake, ProtocolOptions, HandshakeStats } from './protocol.js';

/** Supported protocols, by the name used in `--connect …,protocol=NAME`. */
export const PROTOCOLS: Readonly<Record<string, (opts: ProtocolOptions) => ProtocolHandshake>> = {
  redis: (opts) => new RedisProtocol(opts),
};

export const PROTOCOL_NAMES = Object.keys(PROTOCOLS);

export function createProtocol(name: string, opts: ProtocolOptions): ProtocolHandshake {
  const make = PROTOCOLS[name];
  if (!make) throw new Error(`unknown protocol '${name}' (known: ${PROTOCOL_NAMES.join(', ')})`);
  return make(opts);
}
