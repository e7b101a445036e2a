import type { EventEmitter } from 'node:events';

/** Where an endpoint was learned from. */
export type SourceKind = 'mdns' | 'static' | 'srv' | 'registry';

/**
 * One reachable instance of a service as a discovery source reports it. Sources always emit
 * the complete current set for their cluster; the cluster diffs sets and keeps health state.
 */
export interface EndpointSpec {
  /** Stable identity within the cluster, e.g. the mDNS instance name or "static:host:port". */
  id: string;
  source: SourceKind;
  /** Address to connect to (an IP literal when the source resolved one; IPv6 link-local with its zone). */
  host: string;
  /**
   * Every address of the peer, the likeliest to work first, `host` among them (an mDNS host with
   * IPv4 and IPv6 addresses). A connect that fails on one moves on to the next before the
   * endpoint is blamed. Absent: `host` is the only one.
   */
  addresses?: string[];
  port: number;
  /** RFC 2782 priority (lower is preferred) and weight. */
  priority: number;
  weight: number;
  /** DNS-SD TXT key/values (empty for static endpoints). */
  txt: Record<string, string>;
  /** Human label: mDNS instance name, SRV target, or host:port. */
  label: string;
  /** Epoch ms when the source's record expires, if it has a TTL. */
  expiresAt?: number;
  /**
   * The source heard it is going away (an mDNS goodbye: the record lives one more second, in
   * case the owner answers a spoofed goodbye). No new connections; open ones are kept until the
   * endpoint is actually removed.
   */
  draining?: boolean;
  /**
   * Every source that reports this instance, when more than one could (an ambassador seen over
   * mDNS and in a registry is one endpoint). Absent: `source` alone.
   */
  via?: SourceKind[];
  /**
   * The operator named it, as with --static/--srv: it comes from a registry this ambassador
   * authenticated to (credentials may go to it, see credential-gate.ts).
   */
  named?: boolean;
}

/**
 * A discovery source feeds one cluster. It emits 'endpoints' (EndpointSpec[]) on every change,
 * and 'debug' (message, fields) with what it saw and asked — only while someone listens (a
 * logger at --log-level debug): nothing is built for it otherwise.
 */
export interface DiscoverySource extends EventEmitter {
  readonly kind: SourceKind;
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Look again now (SIGHUP: the operator changed a file or a record): what the source reads is
   * read again and resolved, outside its schedule. Sources that are only told (mDNS) have none.
   */
  refresh?(): Promise<void>;
}
