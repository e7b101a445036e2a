import type net from 'node:net';
import type { Endpoint } from '../cluster/endpoint.js';
import { codeOf } from './pipe.js';

/**
 * Runs on a freshly connected upstream before piping starts (e.g. Redis AUTH / SELECT). Client
 * bytes stay held meanwhile and are sent, in order, afterwards. The hook may read from and write
 * to `upstream`; when it resolves it must have removed its own listeners and pushed back
 * (`upstream.unshift`) any bytes it read but did not consume. Reject to fail this endpoint (the
 * next one is tried). `signal` aborts on timeout, upstream close or client close.
 */
export type Handshake = (upstream: net.Socket, endpoint: Endpoint, signal: AbortSignal) => Promise<void>;

/**
 * A handshake failure with a verdict. `retry: false` (e.g. the upstream rejected our
 * credentials): the client is not tried on other endpoints, it gets `message` (through
 * `errorReply`) and is closed. `blameEndpoint: false`: the failure says nothing about the
 * endpoint's health, so it does not count towards outlier ejection. The message is shown to the
 * client and logged: it must never contain a secret.
 */
export class HandshakeError extends Error {
  readonly code: string;
  readonly retry: boolean;
  readonly blameEndpoint: boolean;
  constructor(message: string, code = 'EHANDSHAKE', opts: { retry?: boolean; blameEndpoint?: boolean } = {}) {
    super(message);
    this.name = 'HandshakeError';
    this.code = code;
    this.retry = opts.retry ?? true;
    this.blameEndpoint = opts.blameEndpoint ?? true;
  }
}

/** The errno-style code of a handshake's rejection (EHANDSHAKE when it has none). */
export function handshakeCode(err: unknown): string {
  const c = codeOf(err);
  return c === 'Error' || c === 'EUNKNOWN' ? 'EHANDSHAKE' : c;
}
