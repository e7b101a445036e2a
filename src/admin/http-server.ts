import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatAddressPort } from '../base/address.js';
import { EndpointHistory } from './endpoint-history.js';
import { AmbassadorMetrics } from './metrics.js';
import { peersSnapshot, type PeersSubject } from './peers.js';
import { sampleEvent, statusModel, type StatusSources } from './status-model.js';
import { STATUS_PAGE, STATUS_PAGE_CSP } from './status-page.js';
import { StatusStream } from './status-stream.js';

/** The status page's headers: its own script and style only, no framing, no sniffing, no referrer. */
const PAGE_HEADERS: http.OutgoingHttpHeaders = {
  'Content-Security-Policy': STATUS_PAGE_CSP,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/** What the admin endpoint reports on: an Ambassador. */
export interface AdminSubject extends PeersSubject {
  /** True once start() finished (every listener bound, every advertisement started). */
  readonly started: boolean;
  /** Epoch ms when the ambassador started (default: when its admin server was made). */
  readonly startedAt?: number;
}

const RESOURCES = ['/', '/healthz', '/peers', '/metrics', '/status', '/events'];

export interface AdminServerOptions {
  host: string;
  port: number;
  /** Include prom-client's default process metrics. Default true. */
  defaultMetrics?: boolean;
  /** How often the rates are sampled and open status pages updated. Default 1000 ms (tests: longer, and tick by hand). */
  statusTickMs?: number;
}

/**
 * `--admin [HOST:]PORT`: a plain node:http server with read-only resources.
 *   GET /         the status page (HTML, self-contained), live from /events
 *   GET /status   JSON: the page's model (/peers, plus who this is, health and the last minutes' rates)
 *   GET /events   Server-Sent Events: the model when it changes and every second, with the newest rates
 *   GET /healthz  200 while running with every listener bound; 503 while starting, draining, or
 *                 with no network left (the namespace lost every interface it had: no-network)
 *   GET /peers    JSON: clusters with their endpoints, advertisements with their state
 *   GET /metrics  Prometheus text (a registry per ambassador)
 * Anything else is 404; a known path with another method is 405.
 */
export class AdminServer {
  readonly metrics: AmbassadorMetrics;
  readonly server: http.Server;
  /** Per-second rates and departed endpoints for the status page. */
  readonly history: EndpointHistory;
  readonly stream: StatusStream;
  private readonly status: StatusSources;
  private readonly sockets = new Set<import('node:net').Socket>();
  private ticker: NodeJS.Timeout | undefined;
  private readonly watched = new WeakSet<object>();

  constructor(private readonly subject: AdminSubject, readonly options: AdminServerOptions) {
    this.metrics = new AmbassadorMetrics(subject, { defaultMetrics: options.defaultMetrics });
    this.history = new EndpointHistory(() => subject.connectors);
    const createdAt = Date.now();
    this.status = { subject, history: this.history, health: () => this.health(), get startedAt() { return subject.startedAt ?? createdAt; } };
    this.stream = new StatusStream({
      model: (withRates) => JSON.stringify(statusModel(this.status, { rates: withRates })),
      sample: () => JSON.stringify(sampleEvent(subject.connectors, this.history)),
    });
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
        const where = formatAddressPort(host, port);
        const why = err.code === 'EADDRINUSE' ? 'address already in use'
          : err.code === 'EADDRNOTAVAIL' ? 'address not available on this host'
            : err.code === 'EACCES' ? 'permission denied' : err.message;
        reject(new Error(`cannot listen on ${where}: ${why}`));
      };
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        this.startTicking();
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo | undefined {
    const a = this.server.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  /**
   * Once a second: one sample of every rate, then the pages get it (when some are open). Changes
   * the ambassador reports (endpoint states, advertisements, interfaces) reach the pages at once.
   */
  private startTicking(): void {
    this.history.sample();
    this.ticker = setInterval(() => {
      this.watchChanges();
      this.history.sample();
      this.stream.tick();
    }, this.options.statusTickMs ?? 1000);
    this.ticker.unref();
  }

  /** Subscribes the pages to what can change (connectors and advertisements exist only after start). */
  private watchChanges(): void {
    const changed = () => this.stream.changed();
    for (const c of this.subject.connectors) {
      if (this.watched.has(c)) continue;
      this.watched.add(c);
      c.cluster.on('changed', changed);
    }
    for (const a of this.subject.advertisements) {
      if (this.watched.has(a)) continue;
      this.watched.add(a);
      a.on('state', changed);
    }
    const engine = this.subject.engine;
    if (engine && !this.watched.has(engine)) {
      this.watched.add(engine);
      engine.on('network', changed);
    }
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
    if (s.hostNetwork?.verdict === 'stranded') return { ok: false, status: 'no-network', listeners, refusing };
    for (const c of s.connectors) if (!c.listener.server.listening) return { ok: false, status: 'listener-down', listeners, refusing };
    return { ok: true, status: 'ok', listeners, refusing };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (!RESOURCES.includes(path)) return this.send(res, 404, 'application/json', JSON.stringify({ error: `no such resource: ${path}`, resources: RESOURCES }));
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return this.send(res, 405, 'application/json', JSON.stringify({ error: `method ${req.method} not allowed` }));
    }
    try {
      const head = req.method === 'HEAD';
      if (path === '/') return this.send(res, 200, 'text/html; charset=utf-8', STATUS_PAGE, head, PAGE_HEADERS);
      if (path === '/status') return this.send(res, 200, 'application/json', JSON.stringify(statusModel(this.status, { rates: true })), head);
      if (path === '/events') {
        this.watchChanges();
        return this.stream.attach(req, res);
      }
      if (path === '/healthz') {
        const h = this.health();
        // The registry's state is said, never judged: without it the mesh serves what it knew.
        const r = this.subject.registryStatus;
        const body = r ? { ...h, registry: { state: r.state, since: new Date(r.since).toISOString(), ...(r.state === 'connected' ? {} : { lastError: r.lastError }) } } : h;
        return this.send(res, h.ok ? 200 : 503, 'application/json', JSON.stringify(body), req.method === 'HEAD');
      }
      if (path === '/peers') {
        return this.send(res, 200, 'application/json', JSON.stringify(peersSnapshot(this.subject), null, 2) + '\n', req.method === 'HEAD');
      }
      const text = await this.metrics.text();
      return this.send(res, 200, this.metrics.contentType, text, req.method === 'HEAD');
    } catch (err) {
      return this.send(res, 500, 'application/json', JSON.stringify({ error: (err as Error).message }));
    }
  }

  private send(res: http.ServerResponse, status: number, type: string, body: string, headOnly = false, headers: http.OutgoingHttpHeaders = {}): void {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...headers });
    res.end(headOnly ? undefined : body);
  }

  /** Stops listening and closes open (keep-alive) connections. */
  close(): Promise<void> {
    clearInterval(this.ticker);
    this.ticker = undefined;
    this.stream.close();
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }
}
