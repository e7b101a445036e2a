import { type ConnectSpec, ConfigError } from './specs.js';

/**
 * To whom a listener's injected credentials may go:
 * - 'mutual-tls': ambassadors whose certificate our CA signed (and `tls-name`, when given);
 * - 'named-endpoints': the endpoints the operator named (--static, or --srv in the DNS zone
 *   the operator chose), no multicast involved;
 * - 'trusted-lan': whoever announces the name over mDNS — allowed only with --trusted-lan.
 */
export type CredentialTrust = 'mutual-tls' | 'named-endpoints' | 'trusted-lan';

export interface CredentialExposure {
  trust: CredentialTrust;
  /** What the operator should know (logged at start, listed in /peers). */
  warnings: string[];
}

export interface ExposureContext {
  /** --tls-cert/--tls-key/--tls-ca given. */
  tls: boolean;
  /** The listener's endpoints come from --static or --srv (then it does not browse mDNS). */
  named: boolean;
  trustedLan: boolean;
}

/**
 * Undefined when the listener injects no secret. Throws a ConfigError (one line: why, and
 * what to do) when credentials would go to anyone who announces the service name over mDNS
 * and the operator did not accept that with --trusted-lan: on a LAN anyone can announce any
 * name, and `where.` filters match TXT values that the announcer writes itself.
 */
export function credentialExposure(c: ConnectSpec, ctx: ExposureContext): CredentialExposure | undefined {
  if (c.authFile === undefined) return undefined;
  if (ctx.tls) return { trust: 'mutual-tls', warnings: [] };
  if (ctx.named) return { trust: 'named-endpoints', warnings: [] };
  if (!ctx.trustedLan) {
    throw new ConfigError(
      `--connect ${c.raw}: refusing to send credentials to whoever announces '${c.name}' over mDNS (anyone on the LAN can): `
      + 'use mutual TLS (--tls-cert/--tls-key/--tls-ca), name the endpoints (--static/--srv), '
      + 'or accept the risk on a LAN you trust with --trusted-lan',
    );
  }
  const warnings = [
    `credentials for '${c.name}' go to any host on the LAN that announces _${c.name}._tcp (--trusted-lan; an mDNS announcement is not an identity)`,
  ];
  for (const [k, v] of Object.entries(c.where)) {
    warnings.push(`where.${k}=${v} selects instances by TXT, which the announcer writes itself: it is not access control`);
  }
  return { trust: 'trusted-lan', warnings };
}
