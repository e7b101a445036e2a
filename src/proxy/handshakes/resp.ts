/**
 * The little of RESP (the Redis serialization protocol, version 2) a handshake needs: encode a
 * command as an array of bulk strings, encode an error reply for a client, and parse replies
 * incrementally from a byte buffer.
 */

export type RespReply =
  | { type: 'simple'; value: string }
  | { type: 'error'; value: string }
  | { type: 'integer'; value: number }
  | { type: 'bulk'; value: Buffer | null }
  | { type: 'array'; value: RespReply[] | null };

/** The bytes are not RESP (or exceed the limits a handshake accepts). */
export class RespProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RespProtocolError';
  }
}

/** Limits for replies during a handshake: an upstream that is not Redis must not make us buffer. */
export const MAX_LINE = 4096;
export const MAX_BULK = 64 * 1024;
const MAX_DEPTH = 8;
const MAX_ITEMS = 1024;

/** `*N\r\n$len\r\narg\r\n…`: how clients send commands (binary safe; lengths in bytes). */
export function encodeCommand(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a, 'utf8') : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** `-MESSAGE\r\n`: an error reply as redis-cli prints it ("(error) MESSAGE"), on one line. */
export function encodeError(message: string): Buffer {
  return Buffer.from(`-${message.replace(/[\r\n]+/g, ' ')}\r\n`, 'utf8');
}

/**
 * Parse one reply starting at `offset`. Returns the reply and the offset after it, or undefined
 * when `buf` does not hold a complete reply yet. Throws RespProtocolError on bytes that are not
 * RESP2.
 */
export function parseReply(buf: Buffer, offset = 0, depth = 0): { reply: RespReply; next: number } | undefined {
  if (offset >= buf.length) return undefined;
  if (depth > MAX_DEPTH) throw new RespProtocolError('reply nested too deeply');
  const type = buf[offset]!;
  const eol = buf.indexOf('\r\n', offset + 1);
  if (eol < 0) {
    if (buf.length - offset > MAX_LINE) throw new RespProtocolError('reply line too long');
    // A byte that cannot start a reply is an error at once, not after MAX_LINE bytes.
    if (!isTypeByte(type)) throw new RespProtocolError(`not a RESP reply (first byte 0x${type.toString(16).padStart(2, '0')})`);
    return undefined;
  }
  if (eol - offset > MAX_LINE) throw new RespProtocolError('reply line too long');
  const line = buf.toString('utf8', offset + 1, eol);
  const next = eol + 2;
  switch (type) {
    case 0x2b: // '+'
      return { reply: { type: 'simple', value: line }, next };
    case 0x2d: // '-'
      return { reply: { type: 'error', value: line }, next };
    case 0x3a: // ':'
      return { reply: { type: 'integer', value: toInt(line) }, next };
    case 0x24: {
      // '$'
      const len = toInt(line);
      if (len === -1) return { reply: { type: 'bulk', value: null }, next };
      if (len < 0 || len > MAX_BULK) throw new RespProtocolError(`bulk length ${len} out of range`);
      if (buf.length < next + len + 2) return undefined;
      if (buf[next + len] !== 0x0d || buf[next + len + 1] !== 0x0a) throw new RespProtocolError('bulk string not terminated by CRLF');
      return { reply: { type: 'bulk', value: Buffer.from(buf.subarray(next, next + len)) }, next: next + len + 2 };
    }
    case 0x2a: {
      // '*'
      const n = toInt(line);
      if (n === -1) return { reply: { type: 'array', value: null }, next };
      if (n < 0 || n > MAX_ITEMS) throw new RespProtocolError(`array length ${n} out of range`);
      const items: RespReply[] = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, at, depth + 1);
        if (!r) return undefined;
        items.push(r.reply);
        at = r.next;
      }
      return { reply: { type: 'array', value: items }, next: at };
    }
    default:
      throw new RespProtocolError(`not a RESP reply (first byte 0x${type.toString(16).padStart(2, '0')})`);
  }
}

function isTypeByte(b: number): boolean {
  return b === 0x2b || b === 0x2d || b === 0x3a || b === 0x24 || b === 0x2a;
}

function toInt(s: string): number {
  if (!/^-?\d{1,18}$/.test(s)) throw new RespProtocolError('bad integer in reply');
  return Number(s);
}
