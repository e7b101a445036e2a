import type { EventEmitter } from 'node:events';
import type { Endpoint } from '../../cluster/endpoint.js';
import type { Greeting, Handshake } from '../handshake.js';
import type { CredentialGate } from './credential-gate.js';

/**
 * A protocol module: what a connector needs to speak the first words of an application protocol
 * on behalf of its clients (credentials injection), and to tell a client in its own protocol why
 * it is being closed. A protocol (Redis, PostgreSQL, …) is a class of this shape registered in
 * `PROTOCOLS` (./index.ts).
 *
 * Events (for logs and metrics; never carry a secret):
 *   'handshake-ok'      (endpoint: Endpoint, ms: number)
 *   'handshake-failed'  (endpoint: Endpoint, code: string, message: string)
 *   'greeting-refused'  (code: string, message: string)  the greeting refused a client
 *   'credentials-loaded'  (changed: boolean)  the credentials file was (re)read and is valid
 *   'credentials-error'   (message: string)  a changed file is invalid: the last good one stays
 */
export interface ProtocolHandshake extends EventEmitter {
  /** Protocol name as given in `--connect …,protocol=NAME`. */
  readonly name: string;
  /** Runs on every new upstream connection before the client's bytes flow; undefined = none. */
  readonly handshake: Handshake | undefined;
  /** Runs on every client before an endpoint is picked, for protocols whose client speaks first. */
  readonly greet?: Greeting;
  /**
   * A one-line message encoded as the protocol's error (for a client closed without upstream);
   * `code` says why (see ConnectListenerOptions.errorReply).
   */
  errorReply(message: string, code?: string): Buffer;
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
  /** Handshakes that failed, total and by code (WRONGPASS, NOPERM, LOADING, 28P01, 57P03, EPROTO, ETIMEDOUT, …). */
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
  /** PostgreSQL: TLS to the server (default 'prefer': when the server offers it). */
  serverTls?: ServerTlsMode;
  /** PostgreSQL: how the server's certificate is checked (default 'full': chain and name). */
  serverVerify?: ServerVerifyMode;
  /** PostgreSQL: CA certificates (PEM file) for the server's certificate; default Node's roots. */
  serverCa?: string;
  /** PostgreSQL: the name the server's certificate must carry (default: the endpoint's name or address). */
  serverName?: string;
  /** How often the credentials file is checked for changes. Default 1000 ms. */
  reloadIntervalMs?: number;
  /**
   * Which upstreams may receive the credentials (default `provenIdentity`: mutual TLS or an
   * endpoint the operator named). Refused ones get no byte of the secret; the next endpoint is tried.
   */
  credentialGate?: CredentialGate;
}

export const SERVER_TLS_MODES = ['off', 'prefer', 'require'] as const;
export type ServerTlsMode = (typeof SERVER_TLS_MODES)[number];
export const SERVER_VERIFY_MODES = ['full', 'ca', 'none'] as const;
export type ServerVerifyMode = (typeof SERVER_VERIFY_MODES)[number];

export type HandshakeEndpoint = Pick<Endpoint, 'label' | 'host' | 'port'>;
