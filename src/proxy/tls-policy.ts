import type { Endpoint } from '../cluster/endpoint.js';
import type { CreateConnection } from './listener.js';
import { connectWithReader } from './reader.js';

/**
 * Which endpoints want mutual TLS, and what a connector without TLS material does with them.
 * Kept apart from tls.ts so that an ambassador without --tls-* never loads node:tls (about 2 MB
 * of RSS): ambassador.ts imports tls.ts only when TLS is configured.
 */

/** TXT key an ambassador with mutual TLS announces (`tls=1`). */
export const TLS_TXT_KEY = 'tls';

/**
 * Connecting side without TLS: refuses endpoints whose announcement says they want TLS instead
 * of sending them plaintext (a clear connect failure, code ETLSREQUIRED; other endpoints are
 * tried). `onRefuse` is called for each refusal (to log it).
 */
export function plaintextConnection(onRefuse?: (ep: Endpoint) => void): CreateConnection {
  return (ep: Endpoint) => {
    if (wantsTls(ep)) {
      onRefuse?.(ep);
      const err = new Error(
        `endpoint ${ep.label} (${ep.address}) requires mutual TLS (TXT ${TLS_TXT_KEY}=1) and this ambassador has no --tls-cert/--tls-key/--tls-ca: not sending plaintext`,
      ) as NodeJS.ErrnoException;
      err.code = 'ETLSREQUIRED';
      throw err;
    }
    // The listener's own default (reusable read buffers), so refusing costs the data path nothing.
    return connectWithReader(ep.host, ep.port);
  };
}

export function wantsTls(ep: Pick<Endpoint, 'txt'>): boolean {
  const v = ep.txt[TLS_TXT_KEY];
  return v !== undefined && v !== '0' && v.toLowerCase() !== 'false' && v.toLowerCase() !== 'no';
}
