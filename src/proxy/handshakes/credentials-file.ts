import type { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { inspect } from 'node:util';
import { FileWatch } from '../watch.js';
import type { HandshakeStats } from './protocol.js';

/**
 * Credentials from an `auth-file`: a password, and a user name when the file gives one. The
 * values live in private fields: they are not enumerable, not serialized (toJSON) and not shown
 * by util.inspect, so a stray log of this object prints nothing secret.
 */
export class Credentials {
  readonly #user: string | undefined;
  readonly #password: string;

  constructor(password: string, user?: string) {
    this.#user = user;
    this.#password = password;
  }

  get hasUser(): boolean {
    return this.#user !== undefined;
  }

  /** The user name of the file, if it has one. */
  get user(): string | undefined {
    return this.#user;
  }

  /** The password: only ever to build what goes to a server the credential gate allowed. */
  get password(): string {
    return this.#password;
  }

  /**
   * `text` with the password (and, unless `user` is false, the user name) blanked: for messages
   * from the server.
   */
  redact(text: string, user = true): string {
    let out = text;
    for (const s of [this.#password, user ? this.#user : undefined]) {
      if (s && s.length > 0) out = out.split(s).join('***');
    }
    return out;
  }

  equals(other: Credentials | undefined): boolean {
    return other !== undefined && other.#password === this.#password && other.#user === this.#user;
  }

  toJSON(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return `${this.constructor.name} [redacted]`;
  }
}

/**
 * The one line of an auth file: `password` or `user password` (split at the first run of blanks,
 * so a password may contain spaces when a user is given: `app my pass phrase`). Errors name the
 * file and the problem, never its content.
 */
export function readCredentialsLine(text: string, path: string): { user?: string; password: string } {
  // Blanks are spaces and tabs only: a password may hold (and end with) any other character,
  // Unicode spaces included.
  const lines = text.split(/\r?\n/).filter((l) => /[^ \t\r]/.test(l));
  if (lines.length === 0) throw new Error(`auth-file '${path}': is empty (expected 'password' or 'user password')`);
  if (lines.length > 1) {
    throw new Error(`auth-file '${path}': has ${lines.length} lines (expected one line: 'password' or 'user password')`);
  }
  const line = lines[0]!.replace(/^[ \t]+|[ \t\r]+$/g, '');
  const m = /^([^ \t]+)[ \t]+(.+)$/.exec(line);
  return m ? { user: m[1]!, password: m[2]! } : { password: line };
}

/** What a protocol module tells about its credentials file (see ProtocolHandshake's events). */
type CredentialsOwner = EventEmitter & { readonly stats: HandshakeStats };

/**
 * An auth file, read at start and again whenever it changes (polled: an atomic rename or a
 * Kubernetes secret update is seen too). A changed file that is invalid is refused and the last
 * valid credentials stay in use. Reports through its owner's events and counters:
 * 'credentials-loaded' (changed: boolean) and 'credentials-error' (message).
 */
export class CredentialsFile<C extends Credentials> {
  current: C | undefined;
  private watch: FileWatch | undefined;

  constructor(
    readonly path: string,
    private readonly parse: (text: string, path: string) => C,
    private readonly owner: CredentialsOwner,
    private readonly reloadIntervalMs = 1000,
  ) {}

  /** Load (rejects with a one-line message on a bad file) and watch for changes. */
  async start(): Promise<void> {
    this.current = await this.load();
    this.watch = new FileWatch([this.path], () => void this.reload(), this.reloadIntervalMs);
    await this.watch.start();
  }

  stop(): void {
    this.watch?.stop();
    this.watch = undefined;
  }

  /** Re-read the file now (also done automatically when it changes). */
  async reload(): Promise<boolean> {
    try {
      const creds = await this.load();
      const changed = !creds.equals(this.current);
      this.current = creds;
      this.owner.stats.reloads++;
      this.owner.emit('credentials-loaded', changed);
      return true;
    } catch (err) {
      this.owner.stats.reloadErrors++;
      this.owner.emit('credentials-error', `${(err as Error).message}; keeping the previous credentials`);
      return false;
    }
  }

  private async load(): Promise<C> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`auth-file '${this.path}': cannot read (${code === 'ENOENT' ? 'no such file' : code})`);
    }
    return this.parse(text, this.path);
  }
}
