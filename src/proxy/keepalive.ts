/**
 * TCP keep-alive for proxied connections, switched on once a connection has lived a little.
 *
 * Keep-alive only acts on a connection idle for its initial delay (30 s by default), and a short
 * connection is closed long before that. Yet enabling it costs four setsockopt() calls per socket
 * (libuv sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT), eight per proxied
 * connection: under connection churn that was a third of the proxy's system calls. So pipes are
 * enrolled here and get keep-alive from one shared, unref'd timer once they have been open for
 * one to two ticks of DEFER_MS; those closed before never pay for it. An idle connection's first
 * probe goes out at most 2 × DEFER_MS later than with keep-alive set at once (30–32 s instead of
 * 30 s by default).
 */
export const KEEPALIVE_DEFER_MS = 1000;

export interface KeepAliveTarget {
  enableKeepAlive(): void;
}

/** Enrolled during the current tick / the tick before (these are due at the next tick). */
let young = new Set<KeepAliveTarget>();
let old = new Set<KeepAliveTarget>();
let timer: NodeJS.Timeout | undefined;

/** `target.enableKeepAlive()` is called in 1–2 × KEEPALIVE_DEFER_MS unless withdrawn before. */
export function deferKeepAlive(target: KeepAliveTarget): void {
  young.add(target);
  if (timer === undefined) {
    timer = setInterval(tick, KEEPALIVE_DEFER_MS);
    timer.unref();
  }
}

/** The connection closed: no keep-alive needed any more. */
export function withdrawKeepAlive(target: KeepAliveTarget): void {
  if (!young.delete(target)) old.delete(target);
}

function tick(): void {
  const due = old;
  old = young;
  young = due;
  for (const t of due) t.enableKeepAlive();
  due.clear();
  if (old.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}
