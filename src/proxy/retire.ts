import type { ProxyConnection } from './connection.js';

/** Connections being retired (each at most once). */
const retiring = new WeakSet<ProxyConnection>();

/**
 * Close an open connection at its first pause of `quietMs` with no byte in either direction, at
 * the latest after `maxMs` (Infinity: only at a real pause, however long that takes). For an
 * endpoint that left discovery or moved: leaving means "no new connections here", and the old
 * location usually still serves, so a request in flight at that instant gets its reply instead
 * of a reset.
 */
export function retireAtPause(conn: ProxyConnection, code: string, quietMs: number, maxMs: number): void {
  const upstream = conn.upstream;
  if (retiring.has(conn) || !upstream || conn.state !== 'open') return;
  retiring.add(conn);
  const client = conn.client;
  const until = Date.now() + maxMs;
  let last = Date.now();
  let timer: NodeJS.Timeout | undefined;
  // Extra 'data' listeners only observe: they do not change the sockets' flowing mode, so the
  // pipe's back-pressure handling is untouched. (They run after the pipe's own listener, which
  // may have released the chunk already: only its arrival counts here, not its bytes.)
  const bump = (): void => {
    last = Date.now();
  };
  const cleanup = (): void => {
    clearTimeout(timer);
    client.off('data', bump);
    upstream.off('data', bump);
  };
  const check = (): void => {
    if (conn.state !== 'open') return cleanup();
    const now = Date.now();
    if (now - last >= quietMs || now >= until) {
      cleanup();
      conn.close(code);
      return;
    }
    timer = setTimeout(check, Math.max(1, Math.min(last + quietMs, until) - now));
  };
  client.on('data', bump);
  upstream.on('data', bump);
  void conn.done.then(cleanup);
  timer = setTimeout(check, quietMs);
}
