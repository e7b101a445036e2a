/**
 * The parts of PostgreSQL's wire protocol (version 3, "Frontend/Backend Protocol" in the
 * PostgreSQL manual) that an ambassador logging in for its clients reads and writes: the
 * client's first packet (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), the
 * server's messages up to the end of authentication, and the few messages it writes itself.
 *
 * Not pg-protocol (node-postgres' parser): it parses backend messages only (none of the
 * client's packets), its `parse()` consumes a stream to its end (the handshake must stop at a
 * message boundary and hand the socket back), its startup encoder always sends protocol 3.0
 * with client_encoding added, and it knows neither NegotiateProtocolVersion nor the longer
 * cancel keys of protocol 3.2.
 *
 * Parameter names and values are kept as "byte strings" (latin1: one char per byte), so a
 * startup message is re-encoded byte for byte whatever encoding the client used.
 */

/** Codes of the packets a client may send first (in place of a protocol version). */
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH: a longer first packet is refused. */
export const MAX_STARTUP_PACKET = 10_000;

/** A server message longer than this before authentication is over is not PostgreSQL. */
export const MAX_HANDSHAKE_MESSAGE = 64 * 1024;

/** Protocol version numbers: major << 16 | minor (3.0 = 196608, 3.2 = 196610). */
export function protocolVersion(major: number, minor: number): number {
  return (major << 16) | minor;
}

export function versionText(v: number): string {
  return `${v >>> 16}.${v & 0xffff}`;
}

/** A malformed or unexpected message; `message` never contains message bytes. */
export class PgWireError extends Error {
  override name = 'PgWireError';
}

export type StartupParam = [name: string, value: string];

export type InitialPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  /** `key`: process id and secret as sent (4 bytes each in 3.0, a longer secret in 3.2). */
  | { kind: 'cancel'; key: Buffer; raw: Buffer }
  | { kind: 'startup'; version: number; params: StartupParam[] };

/**
 * The client's first packet at the start of `buf` (Int32 length, Int32 code, body), or
 * undefined while it is incomplete. Throws PgWireError for anything PostgreSQL would refuse.
 */
export function readInitialPacket(buf: Buffer): { packet: InitialPacket; length: number } | undefined {
  // A TLS ClientHello (direct SSL, `sslnegotiation=direct`) starts with 0x16: no valid length does.
  if (buf.length >= 1 && buf[0] === 0x16) throw new PgWireError('the client started TLS directly (sslnegotiation=direct)');
  if (buf.length < 8) return undefined;
  const length = buf.readInt32BE(0);
  if (length < 8 || length > MAX_STARTUP_PACKET) throw new PgWireError(`invalid length of startup packet (${length})`);
  if (buf.length < length) return undefined;
  const code = buf.readUInt32BE(4);
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (length !== 8) throw new PgWireError('invalid length of SSL/GSSENC request');
    return { packet: { kind: code === SSL_REQUEST_CODE ? 'ssl' : 'gssenc' }, length };
  }
  if (code === CANCEL_REQUEST_CODE) {
    // 3.0: process id + 4-byte secret; 3.2: a secret of up to 256 bytes.
    if (length < 16 || length > 12 + 256) throw new PgWireError('invalid length of cancel request');
    return { packet: { kind: 'cancel', key: Buffer.from(buf.subarray(8, length)), raw: Buffer.from(buf.subarray(0, length)) }, length };
  }
  return { packet: { kind: 'startup', version: code, params: readParams(buf.subarray(8, length)) }, length };
}

/** name\0value\0 … \0, as PostgreSQL's ProcessStartupPacket reads it. */
function readParams(body: Buffer): StartupParam[] {
  const params: StartupParam[] = [];
  let at = 0;
  for (;;) {
    if (at >= body.length) throw new PgWireError('invalid startup packet layout: expected terminator as last byte');
    const nameEnd = body.indexOf(0, at);
    if (nameEnd === at) {
      if (at !== body.length - 1) throw new PgWireError('invalid startup packet layout: expected terminator as last byte');
      return params;
    }
    const valueEnd = nameEnd < 0 ? -1 : body.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) throw new PgWireError('invalid startup packet layout: expected terminator as last byte');
    params.push([body.toString('latin1', at, nameEnd), body.toString('latin1', nameEnd + 1, valueEnd)]);
    at = valueEnd + 1;
  }
}

/** A StartupMessage with these parameters, in this order. */
export function startupMessage(version: number, params: readonly StartupParam[]): Buffer {
  let size = 8 + 1;
  for (const [k, v] of params) size += Buffer.byteLength(k, 'latin1') + Buffer.byteLength(v, 'latin1') + 2;
  const out = Buffer.alloc(size);
  out.writeInt32BE(size, 0);
  out.writeUInt32BE(version, 4);
  let at = 8;
  for (const [k, v] of params) {
    at += out.write(k, at, 'latin1') + 1;
    at += out.write(v, at, 'latin1') + 1;
  }
  return out;
}

/** The value of a startup parameter, as text (UTF-8), or undefined. */
export function paramText(params: readonly StartupParam[], name: string): string | undefined {
  for (const [k, v] of params) if (k === name) return Buffer.from(v, 'latin1').toString('utf8');
  return undefined;
}

/** A UTF-8 string as a byte string (see the module comment). */
export function byteString(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

export function sslRequest(): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeUInt32BE(SSL_REQUEST_CODE, 4);
  return b;
}

/** A backend or frontend message with a type byte: type, Int32 length, body. */
function message(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, 'latin1');
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstring(s: string, encoding: BufferEncoding = 'utf8'): Buffer {
  return Buffer.concat([Buffer.from(s, encoding), Buffer.from([0])]);
}

/** PasswordMessage ('p'): a cleartext password or an "md5…" hash. */
export function passwordMessage(password: string): Buffer {
  return message('p', cstring(password));
}

/** SASLInitialResponse ('p'): mechanism, then the client-first-message. */
export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeInt32BE(data.length, 0);
  return message('p', Buffer.concat([cstring(mechanism), len, data]));
}

/** SASLResponse ('p'): the client-final-message. */
export function saslResponse(data: Buffer): Buffer {
  return message('p', data);
}

/** AuthenticationOk ('R', 0). */
export function authenticationOk(): Buffer {
  return message('R', Buffer.from([0, 0, 0, 0]));
}

export interface ErrorFields {
  /** ERROR or FATAL. */
  severity: 'ERROR' | 'FATAL';
  /** SQLSTATE, five characters. */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** ErrorResponse ('E') as the server writes it: S and V severity, C code, M message, D, H. */
export function errorResponse(f: ErrorFields): Buffer {
  const parts = [cstring(`S${f.severity}`), cstring(`V${f.severity}`), cstring(`C${f.code}`), cstring(`M${f.message}`)];
  if (f.detail) parts.push(cstring(`D${f.detail}`));
  if (f.hint) parts.push(cstring(`H${f.hint}`));
  parts.push(Buffer.from([0]));
  return message('E', Buffer.concat(parts));
}

/** A message from the server: type character, body, and where the next one starts. */
export interface BackendMessage {
  type: string;
  body: Buffer;
  /** Offsets of the whole message (type byte included) in the buffer it was read from. */
  start: number;
  next: number;
}

/** The message at `at`, or undefined while incomplete. Throws PgWireError on a bad length. */
export function readMessage(buf: Buffer, at: number, maxLength = MAX_HANDSHAKE_MESSAGE): BackendMessage | undefined {
  if (buf.length - at < 5) return undefined;
  const length = buf.readInt32BE(at + 1);
  if (length < 4 || length > maxLength) throw new PgWireError(`message '${printable(buf[at]!)}' with invalid length ${length}`);
  const next = at + 1 + length;
  if (buf.length < next) return undefined;
  return { type: String.fromCharCode(buf[at]!), body: buf.subarray(at + 5, next), start: at, next };
}

function printable(byte: number): string {
  return byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `0x${byte.toString(16).padStart(2, '0')}`;
}

/** The fields of an ErrorResponse or NoticeResponse body, by field code ('S', 'C', 'M', …). */
export function readErrorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    if (end < 0) throw new PgWireError('unterminated field in ErrorResponse');
    fields.set(String.fromCharCode(body[at]!), body.toString('utf8', at + 1, end));
    at = end + 1;
  }
  return fields;
}

/** The mechanisms of an AuthenticationSASL body (after its Int32 code). */
export function readSaslMechanisms(body: Buffer): string[] {
  const out: string[] = [];
  let at = 4;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at);
    if (end < 0) throw new PgWireError('unterminated SASL mechanism name');
    out.push(body.toString('utf8', at, end));
    at = end + 1;
  }
  return out;
}

/** Authentication request codes ('R' messages). */
export const AUTH = {
  ok: 0,
  kerberosV5: 2,
  cleartext: 3,
  md5: 5,
  gss: 7,
  gssContinue: 8,
  sspi: 9,
  sasl: 10,
  saslContinue: 11,
  saslFinal: 12,
} as const;
