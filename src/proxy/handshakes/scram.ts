import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding, as PostgreSQL
 * runs it: the user name in the messages is empty (the server takes the startup message's), the
 * password is SASLprep'd by the caller, and the server's signature is checked, so a server that
 * does not know the password's keys cannot pass for one that does.
 */

/** Keys derived from a password for one salt and iteration count (RFC 5802 §3). */
export interface ScramKeys {
  clientKey: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** More iterations than this from a server is refused: PBKDF2 would hold a thread for seconds. */
export const MAX_ITERATIONS = 10_000_000;

export class ScramError extends Error {
  override name = 'ScramError';
}

/**
 * Derived keys by salt and iteration count, for one password. PBKDF2 with PostgreSQL's 4096
 * iterations costs a few milliseconds of CPU per login; the salt of a role changes only when its
 * password is set, so every login after the first costs three HMACs instead. (The server itself
 * stores StoredKey and ServerKey and never runs PBKDF2 at login.) Bounded: a server cannot grow
 * it without limit by sending new salts.
 */
export class ScramKeyCache {
  // Private fields: not enumerable, not shown by util.inspect (a stray log prints nothing secret).
  readonly #keys = new Map<string, Promise<ScramKeys>>();
  readonly #password: string;

  constructor(password: string, private readonly max = 16) {
    this.#password = password;
  }

  get(salt: Buffer, iterations: number): Promise<ScramKeys> {
    const id = `${iterations}:${salt.toString('base64')}`;
    let k = this.#keys.get(id);
    if (k === undefined) {
      if (this.#keys.size >= this.max) this.#keys.delete(this.#keys.keys().next().value!);
      k = deriveKeys(this.#password, salt, iterations);
      this.#keys.set(id, k);
      // A failed derivation is not remembered.
      k.catch(() => this.#keys.delete(id));
    }
    return k;
  }
}

export function deriveKeys(password: string, salt: Buffer, iterations: number): Promise<ScramKeys> {
  return new Promise((resolve, reject) => {
    // Asynchronous: runs on libuv's thread pool, not on the event loop.
    pbkdf2(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256', (err, salted) => {
      if (err) return reject(err);
      const clientKey = hmac(salted, 'Client Key');
      resolve({ clientKey, storedKey: createHash('sha256').update(clientKey).digest(), serverKey: hmac(salted, 'Server Key') });
    });
  });
}

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** One SCRAM exchange. */
export class ScramClient {
  private readonly clientNonce: string;
  private readonly firstBare: string;
  private authMessage: string | undefined;
  #serverKey: Buffer | undefined;

  /** `nonce` only for tests (RFC 7677's example); `user` is empty for PostgreSQL. */
  constructor(private readonly keys: ScramKeyCache, opts: { nonce?: string; user?: string } = {}) {
    // 18 random bytes, as libpq: printable base64, never a ','.
    this.clientNonce = opts.nonce ?? randomBytes(18).toString('base64');
    this.firstBare = `n=${opts.user ?? ''},r=${this.clientNonce}`;
  }

  /** client-first-message: no channel binding ("n,,"). */
  firstMessage(): Buffer {
    return Buffer.from(`n,,${this.firstBare}`, 'utf8');
  }

  /** client-final-message for the server-first-message. */
  async finalMessage(serverFirst: Buffer): Promise<Buffer> {
    const text = serverFirst.toString('utf8');
    const attrs = parseAttributes(text);
    if (attrs.has('m')) throw new ScramError('server requires an unsupported SCRAM extension');
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterText = attrs.get('i');
    if (!nonce || salt === undefined || !iterText) throw new ScramError('malformed SCRAM server-first-message');
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) {
      throw new ScramError('SCRAM server nonce does not extend the client nonce');
    }
    if (!/^[1-9]\d{0,8}$/.test(iterText) || Number(iterText) > MAX_ITERATIONS) {
      throw new ScramError(`SCRAM iteration count not acceptable (${iterText.slice(0, 12)})`);
    }
    const saltBytes = Buffer.from(salt, 'base64');
    if (saltBytes.length === 0) throw new ScramError('SCRAM salt is empty');
    const keys = await this.keys.get(saltBytes, Number(iterText));
    const withoutProof = `c=biws,r=${nonce}`;
    this.authMessage = `${this.firstBare},${text},${withoutProof}`;
    this.#serverKey = keys.serverKey;
    const signature = hmac(keys.storedKey, this.authMessage);
    const proof = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) proof[i] = keys.clientKey[i]! ^ signature[i]!;
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8');
  }

  /** Checks the server-final-message's signature; throws ScramError if it is wrong or an error. */
  verifyServerFinal(serverFinal: Buffer): void {
    if (this.authMessage === undefined || this.#serverKey === undefined) throw new ScramError('SCRAM exchange out of order');
    const attrs = parseAttributes(serverFinal.toString('utf8'));
    const e = attrs.get('e');
    if (e !== undefined) throw new ScramError(`SCRAM server error: ${e.slice(0, 100)}`);
    const v = attrs.get('v');
    if (v === undefined) throw new ScramError('malformed SCRAM server-final-message');
    const expected = hmac(this.#serverKey, this.authMessage);
    const got = Buffer.from(v, 'base64');
    if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
      throw new ScramError('SCRAM server signature is wrong: the server does not know this password');
    }
  }
}

/** "a=value,b=value" → map (values may contain '='). */
function parseAttributes(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(',')) {
    if (part.length >= 2 && part[1] === '=') out.set(part[0]!, part.slice(2));
  }
  return out;
}
