import type { EventEmitter } from 'node:events';
import type { Endpoint } from '../../cluster/endpoint.js';
import type { Handshake } from '../listener.js';
import type { CredentialGate } from './credential-gate.js';

/**
 * A protocol module: what a connector needs to speak the first words of an application protocol
 * on behalf of its clients (credentials injection), and to tell a client in its own protocol why
 * it is being closed. A second protocol (PostgreSQL startup/auth, AMQP, …) is added by writing a
 * class of this shape and registering it in `PROTOCOLS` (./index.ts).
 *
 * Events (for logs and metrics; never carry a secret):
 *   'handshake-ok'      (endpoint: Endpoint, ms: number)
 *   'handshake-failed'  (endpoint: Endpoint, code: string, message: string)
 *   'credentials-loaded'  ()                 the credentials file was (re)read and is valid
 *   'credentials-error'   (message: string)  a changed file is invalid: the last good one stays
 */
export interface ProtocolHandshake extends EventEmitter {
  /** Protocol name as given in `--connect …,protocol=NAME`. */
  readonly name: string;
  /** Runs on every new upstream connection before the client's bytes flow; undefined = none. */
  readonly handshake: Handshake | undefined;
  /** A one-line message encoded as the protocol's error (for a client closed without upstream). */
  errorReply(message: string): Buffer;
  /** Counters for metrics. */
  readonly stats: HandshakeStats;
  /** Load credentials (rejects with a one-line message on a bad file) and watch for changes. */
  start(): Promise<void>;
  stop(): void;
  /**
   * Re-read the credentials file now (SIGHUP), whether or not it changed: true when it is valid
   * (and in use), false when the previous credentials were kept ('credentials-error' says why).
   */
  reload?(): Promise<boolean>;
}

export interface HandshakeStats {
  /** Handshakes that completed. */
  ok: number;
  /** Handshakes that failed, total and by code (WRONGPASS, NOPASS, NOPERM, LOADING, EPROTO, ETIMEDOUT, …). */
  failed: number;
  failedByCode: Record<string, number>;
  /** Credential file reloads that succeeded / were rejected (the previous credentials were kept). */
  reloads: number;
  reloadErrors: number;
}

export function emptyStats(): HandshakeStats {
  return { ok: 0, failed: 0, failedByCode: {}, reloads: 0, reloadErrors: 0 };
}

/** Options every protocol understands (from `--connect NAME=PORT,auth-file=…,db=…`). */
export interface ProtocolOptions {
  /** File with the credentials; read at start and whenever it changes. */
  authFile?: string;
  /** Redis: database to SELECT. */
  db?: number;
  /** How often the credentials file is checked for changes. Default 1000 ms. */
  reloadIntervalMs?: number;
  /**
   * Which upstreams may receive the credentials (default `provenIdentity`: mutual TLS or an
   * endpoint the operator named). Refused ones get no byte of the secret; the next endpoint is tried.
   */
  credentialGate?: CredentialGate;
}

export type HandshakeEndpoint = Pick<Endpoint, 'label' | 'host' | 'port'>;
