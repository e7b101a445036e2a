import type net from 'node:net';
import { noop } from './connect.js';
import { MAX_LINGERING_REFUSALS } from './limits.js';

/**
 * Clients refused by a circuit breaker: with an error reply and a graceful close while few are
 * closing that way, else at once, so a flood cannot hold file descriptors in replies.
 */
export class Refusals {
  /** Refused clients still getting their error reply. */
  private lingering = 0;

  constructor(private readonly maxLingering = MAX_LINGERING_REFUSALS) {}

  /** Closes `client`: with `reply()` (made only when it will be sent), or at once when there is none or too many linger. */
  close(client: net.Socket, reply: (() => Buffer | string) | undefined): void {
    client.on('error', noop);
    if (reply === undefined || this.lingering >= this.maxLingering) {
      client.destroy();
      return;
    }
    this.lingering++;
    client.once('close', () => this.lingering--);
    sendAndClose(client, reply());
  }
}

/**
 * Send `reply` and close gracefully: the client's unread input is discarded (so the close does
 * not turn into a reset that could destroy the reply in flight), and the socket is destroyed
 * once the client closes its side, or after a bound.
 */
export function sendAndClose(client: net.Socket, reply: Buffer | string): void {
  const timer = setTimeout(() => client.destroy(), 2000);
  timer.unref();
  client.once('close', () => clearTimeout(timer));
  client.on('error', noop);
  client.on('data', noop);
  client.resume();
  client.end(reply);
}
