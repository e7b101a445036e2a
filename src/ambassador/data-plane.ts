import type { Config } from '../config/config.js';
import type { ConnectSpec } from '../config/specs.js';

/**
 * Why a --connect listener stays on the Node data plane although --data-plane haproxy was asked
 * for; undefined when HAProxy can carry it. HAProxy relays bytes: anything that must read or
 * write the stream itself stays with the ambassador.
 */
export function nodePlaneReason(spec: ConnectSpec, config: Pick<Config, 'tls'>): string | undefined {
  if (spec.authFile !== undefined || spec.db !== undefined) {
    return 'credentials injection (auth-file=, db=: AUTH and SELECT on every upstream connection) runs in the Node data plane';
  }
  if (spec.protocol !== undefined) {
    return `protocol=${spec.protocol}: clients are refused with an error in their protocol, which HAProxy cannot write in TCP mode`;
  }
  if (config.tls) return 'mutual TLS between ambassadors (--tls-*) runs in the Node data plane';
  return undefined;
}
