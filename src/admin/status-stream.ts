import type http from 'node:http';

export interface StatusStreamOptions {
  /** Pages served at once; more get 503 (each costs a socket and a write a second). Default 16. */
  maxClients?: number;
  /** A page that reads nothing for this many buffered bytes is dropped (it reconnects). Default 256 KiB. */
  maxBufferedBytes?: number;
  /** After a change, the model goes out this much later (a burst of changes is one message). Default 50 ms. */
  coalesceMs?: number;
  /** Changes never send models closer than this (a flapping mesh costs at most 1000/gap extra a second). Default 250 ms. */
  minGapMs?: number;
}

/** What the stream sends: the model as JSON (with or without the rate history), the newest sample as JSON. */
export interface StatusFeed {
  model(withRates: boolean): string;
  sample(): string;
}

/**
 * GET /events: Server-Sent Events for the status page. A page gets the whole model with the rate
 * history when it connects; then, every second, the newest sample and the model (without history);
 * and the model within `coalesceMs` of a change the ambassador reports (changed()), at most one
 * every `minGapMs`. One JSON
 * build per message is shared by every page; a page that stops reading is dropped, so an open
 * page costs the process no memory beyond its socket, however long it stays open.
 */
export class StatusStream {
  private readonly clients = new Set<http.ServerResponse>();
  private readonly maxClients: number;
  private readonly maxBufferedBytes: number;
  private readonly coalesceMs: number;
  private readonly minGapMs: number;
  private soon: NodeJS.Timeout | undefined;
  private lastModelAt = 0;
  /** Messages written (for the tests and the cost figures). */
  sent = 0;

  constructor(private readonly feed: StatusFeed, options: StatusStreamOptions = {}) {
    this.maxClients = options.maxClients ?? 16;
    this.maxBufferedBytes = options.maxBufferedBytes ?? 256 * 1024;
    this.coalesceMs = options.coalesceMs ?? 50;
    this.minGapMs = options.minGapMs ?? 250;
  }

  get size(): number {
    return this.clients.size;
  }

  /** Answers one GET /events: the stream, or 503 when `maxClients` pages are open. */
  attach(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.clients.size >= this.maxClients) {
      const body = JSON.stringify({ error: `too many status pages open (${this.maxClients})` });
      res.writeHead(503, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Retry-After': '5', 'Cache-Control': 'no-store' });
      res.end(body);
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    this.clients.add(res);
    res.on('close', () => this.clients.delete(res));
    // A lost connection is retried after a second by the browser.
    this.write(res, `retry: 1000\n\n${frame('model', this.feed.model(true))}`);
  }

  /** Once a second: the newest sample and the model, to every page. */
  tick(): void {
    if (this.clients.size === 0) return;
    clearTimeout(this.soon);
    this.soon = undefined;
    this.lastModelAt = Date.now();
    this.broadcast(frame('sample', this.feed.sample()) + frame('model', this.feed.model(false)));
  }

  /** Something changed: the model goes out within coalesceMs instead of at the next tick. */
  changed(): void {
    if (this.clients.size === 0 || this.soon) return;
    const wait = Math.max(this.coalesceMs, this.lastModelAt + this.minGapMs - Date.now());
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.lastModelAt = Date.now();
      this.broadcast(frame('model', this.feed.model(false)));
    }, wait);
    this.soon.unref();
  }

  /** Ends every stream (the server is closing). */
  close(): void {
    clearTimeout(this.soon);
    this.soon = undefined;
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  private broadcast(text: string): void {
    for (const res of this.clients) this.write(res, text);
  }

  private write(res: http.ServerResponse, text: string): void {
    if (res.writableLength > this.maxBufferedBytes) {
      this.clients.delete(res);
      res.destroy();
      return;
    }
    res.write(text);
    this.sent++;
  }
}

/** One SSE message; the JSON has no newline in it. */
function frame(event: string, json: string): string {
  return `event: ${event}\ndata: ${json}\n\n`;
}
