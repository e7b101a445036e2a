import type net from 'node:net';
import type { Endpoint } from '../../cluster/endpoint.js';

/**
 * Decides, on each upstream connection, whether injected credentials may be sent to it.
 * An mDNS announcement is not an identity: anyone on the LAN can announce any name, so a
 * secret goes only where the identity was proven (mutual TLS: the server's certificate was
 * verified against our CA before this runs) or named by the operator (--static, --srv).
 */
export type CredentialGate = (upstream: net.Socket, endpoint: Pick<Endpoint, 'source'> & Partial<Pick<Endpoint, 'named'>>) => boolean;

/** Sources whose endpoints the operator named (a flag, or the DNS zone the operator chose). */
const NAMED_BY_OPERATOR: ReadonlySet<string> = new Set(['static', 'srv']);

/**
 * The default: a verified mutual-TLS peer, or an endpoint the operator named (--static, --srv,
 * or a registry that authenticated us: only its authorised writers can register there).
 */
export const provenIdentity: CredentialGate = (upstream, ep) =>
  NAMED_BY_OPERATOR.has(ep.source) || ep.named === true || (upstream as { authorized?: unknown }).authorized === true;

/** `--trusted-lan`: the operator declared every announcer on the LAN trustworthy. */
export const anyAnnouncer: CredentialGate = () => true;

export function namedByOperator(source: string): boolean {
  return NAMED_BY_OPERATOR.has(source);
}
