import type net from 'node:net';
import type { Endpoint } from '../cluster/endpoint.js';
import { codeOf } from './pipe.js';

/**
 * Runs on a freshly connected upstream before piping starts (e.g. Redis AUTH / SELECT). Client
 * bytes stay held meanwhile and are sent, in order, afterwards. The hook may read from and write
 * to `upstream`; when it resolves it must have removed its own listeners and pushed back
 * (`upstream.unshift`) any bytes it read but did not consume: bytes for the client pushed back
 * this way reach it first. It may resolve with a socket that replaces `upstream` from then on
 * (a TLS session it started over it). Reject to fail this endpoint (the next one is tried).
 * `signal` aborts on timeout, upstream close or client close; a handshake given up on also sees
 * its upstream destroyed. `hello`: what the greeting learned from this client (ClientHello
 * 'session'), when there is a greeting.
 */
export type Handshake = (upstream: net.Socket, endpoint: Endpoint, signal: AbortSignal, hello?: unknown) => Promise<void | net.Socket>;

/**
 * What a greeting made of a client, before any endpoint was picked:
 * - 'session': connect as usual (pick, retry, handshake); `hello` goes to the handshake;
 * - 'route': connect to this endpoint only, whatever its state, once, with no handshake, and pipe
 *   (a PostgreSQL CancelRequest must reach the server that issued its key);
 * - 'refuse': send `reply` (empty: nothing) and close.
 */
export type ClientHello =
  | { kind: 'session'; hello: unknown }
  | { kind: 'route'; endpoint: Endpoint }
  | { kind: 'refuse'; reply: Buffer };

/**
 * For protocols whose client speaks first (PostgreSQL's startup message): runs on every accepted
 * client before an endpoint is picked, bounded by the handshake timeout. It may read from and
 * write to `client`; when it resolves it must have paused it, removed its own listeners and
 * pushed back (`client.unshift`) what it read but did not consume. It should reject when the
 * client goes away (or sends garbage): the client is then closed with no reply. `signal` aborts
 * once the client is closed (also after a timeout).
 */
export type Greeting = (client: net.Socket, signal: AbortSignal) => Promise<ClientHello>;

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
