import type * as Pino from 'pino';
import type { Logger } from 'pino';
import { requireCommonJs } from '../base/commonjs.js';

const { pino } = requireCommonJs('pino') as typeof Pino;

export type { Logger };

export type LogFormat = 'json' | 'pretty';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Paths pino blanks out wherever they appear: credentials never reach a log line. */
export const REDACT_PATHS = ['password', 'pass', 'secret', 'auth', '*.password', '*.pass', '*.secret', '*.auth', 'authFile.*'];

/**
 * JSON lines by default (for collectors); human-readable when asked or when stdout is a
 * terminal. Pretty printing runs in-process (no worker thread) so lines survive a crash exit.
 */
export function createLogger(level: LogLevel = 'info', format?: LogFormat, destination: NodeJS.WritableStream = process.stdout): Logger {
  const usePretty = format === 'pretty' || (format === undefined && (destination as { isTTY?: boolean }).isTTY === true);
  const opts = {
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (usePretty) {
    // Required only when used: a JSON-logging process does not carry the prettifier.
    const pretty = requireCommonJs('pino-pretty') as typeof import('pino-pretty');
    const stream = pretty({ destination, sync: true, colorize: (destination as { isTTY?: boolean }).isTTY === true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' });
    return pino(opts, stream);
  }
  return pino(opts, destination as Pino.DestinationStream);
}
