import type { ProtocolHandshake, ProtocolOptions } from './protocol.js';
import { PostgresProtocol } from './postgres.js';
import { RedisProtocol } from './redis.js';

export type { ProtocolHandshake, ProtocolOptions, HandshakeStats, ServerTlsMode, ServerVerifyMode } from './protocol.js';
export { SERVER_TLS_MODES, SERVER_VERIFY_MODES } from './protocol.js';

/** Supported protocols, by the name used in `--connect …,protocol=NAME`. */
export const PROTOCOLS: Readonly<Record<string, (opts: ProtocolOptions) => ProtocolHandshake>> = {
  redis: (opts) => new RedisProtocol(opts),
  postgres: (opts) => new PostgresProtocol(opts),
};

export const PROTOCOL_NAMES = Object.keys(PROTOCOLS);

export function createProtocol(name: string, opts: ProtocolOptions): ProtocolHandshake {
  const make = PROTOCOLS[name];
  if (!make) throw new Error(`unknown protocol '${name}' (known: ${PROTOCOL_NAMES.join(', ')})`);
  return make(opts);
}
