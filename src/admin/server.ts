import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConnectListener } from '../proxy/listener.js';
import { AmbassadorMetrics } from './metrics.js';
import { peersSnapshot, type PeersSubject } from './peers.js';

/** What the admin endpoint reports on: an Ambassador. */
export interface AdminSubject extends PeersSubject {
  /** True once start() finished (every listener bound, every advertisement started). */
  readonly started: boolean;
  /** 'stranded' once the network namespace lost every interface it had (see ambassador/stranded.ts). */
  readonly stranded?: { readonly state: string };
}

export interface AdminServerOptions {
  host: string;
  port: number;
  /** Include prom-client's default process metrics. Default true. */
  defaultMetrics?: boolean;
}

/**
 * `--admin [HOST:]PORT`: a plain node:http server with three read-only resources.
 *   GET /healthz  200 while running with every listener bound; 503 while starting, draining, or
 *                 with no network left (the namespace lost every interface it had: no-network)
 *   GET /peers    JSON: clusters with their endpoints, advertisements with their state
 *   GET /metrics  Prometheus text (a registry per ambassador)
 * Anything else is 404; a known path with another method is 405.
 */
export class AdminServer {
  readonly metrics: AmbassadorMetrics;
  readonly server: http.Server;
  private readonly sockets = new Set<import('node:net').Socket>();

  constructor(private readonly subject: AdminSubject, readonly options: AdminServerOptions) {
    this.metrics = new AmbassadorMetrics(subject, { defaultMetrics: options.defaultMetrics });
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    // Slow or idle scrapers must not pin the process open.
    this.server.requestTimeout = 10_000;
    this.server.headersTimeout = 5_000;
    this.server.keepAliveTimeout = 5_000;
  }

  /** Binds; rejects with a one-line error naming the address, like the listeners. */
  listen(): Promise<AddressInfo> {
    const { host, port } = this.options;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
        const why = err.code === 'EADDRINUSE' ? 'address already in use'
          : err.code === 'EADDRNOTAVAIL' ? 'address not available on this host'
            : err.code === 'EACCES' ? 'permission denied' : err.message;
        reject(new Error(`cannot listen on ${where}: ${why}`));
      };
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo | undefined {
    const a = this.server.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  /** Health as /healthz reports it. */
  health(): { ok: boolean; status: 'ok' | 'starting' | 'draining' | 'listener-down' | 'no-network'; listeners: number; refusing: string[] } {
    const s = this.subject;
    const listeners = s.connectors.length;
    // Listeners refusing clients at their circuit breakers right now. Still 'ok': the process
    // serves what its limits allow, and a restart would only drop the connections it carries.
    const refusing = [
      ...s.connectors.filter((c) => c.refusals.inBurst).map((c) => `${c.spec.name} ${c.spec.bind}:${c.spec.port}`),
      ...s.advertisements.filter((a) => a.relayRefusing).map((a) => `${a.spec.name} relay :${a.relay?.address()?.port}`),
    ];
    if (s.draining) return { ok: false, status: 'draining', listeners, refusing };
    if (!s.started) return { ok: false, status: 'starting', listeners, refusing };
    if (s.stranded?.state === 'stranded') return { ok: false, status: 'no-network', listeners, refusing };
    for (const c of s.connectors) {
      const l = c.listener;
      if (!(l instanceof ConnectListener ? l.server.listening : l.listening)) return { ok: false, status: 'listener-down', listeners, refusing };
    }
    return { ok: true, status: 'ok', listeners, refusing };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const known = path === '/healthz' || path === '/peers' || path === '/metrics';
    if (!known) return this.send(res, 404, 'application/json', JSON.stringify({ error: `no such resource: ${path}`, resources: ['/healthz', '/peers', '/metrics'] }));
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return this.send(res, 405, 'application/json', JSON.stringify({ error: `method ${req.method} not allowed` }));
    }
    try {
      if (path === '/healthz') {
        const h = this.health();
        return this.send(res, h.ok ? 200 : 503, 'application/json', JSON.stringify(h), req.method === 'HEAD');
      }
      if (path === '/peers') {
        await this.subject.haproxy?.refresh();
        return this.send(res, 200, 'application/json', JSON.stringify(peersSnapshot(this.subject), null, 2) + '\n', req.method === 'HEAD');
      }
      const text = await this.metrics.text();
      return this.send(res, 200, this.metrics.contentType, text, req.method === 'HEAD');
    } catch (err) {
      return this.send(res, 500, 'application/json', JSON.stringify({ error: (err as Error).message }));
    }
  }

  private send(res: http.ServerResponse, status: number, type: string, body: string, headOnly = false): void {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(headOnly ? undefined : body);
  }

  /** Stops listening and closes open (keep-alive) connections. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }
}
