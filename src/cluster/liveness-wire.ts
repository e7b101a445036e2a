/**
 * The host probe datagram, shared by the liveness check (connecting side) and its answerer (the
 * advertising ambassador). One UDP datagram each way:
 *
 *   offset  size  field
 *   0       4     magic "AMBP"
 *   4       1     version (1)
 *   5       1     type: 1 = request, 2 = reply
 *   6       2     N, number of port entries (0..MAX_PORTS), big-endian
 *   8       8     nonce: random in a request, echoed in its reply
 *   16      4*N   entries: port (2, big-endian), status (1), reserved (1, zero)
 *
 * A request lists the ports the checker uses on that host with status 0; the reply carries, for
 * each, whether the answerer serves it now (1: announced and its own check passes, 0: not).
 * A reply is exactly as long as its request, so the answerer can never amplify a spoofed
 * request, and it differs from the request (type), so a generic UDP echo service cannot pass for
 * an ambassador. The nonce is unguessable: an off-path stranger cannot answer for a dead host.
 */

export const MAGIC = 0x414d4250; // "AMBP"
export const VERSION = 1;
export const REQUEST = 1;
export const REPLY = 2;
export const HEADER_BYTES = 16;
export const ENTRY_BYTES = 4;
export const NONCE_BYTES = 8;
/** Ports per datagram; more would still fit, but no host serves that many of our clusters. */
export const MAX_PORTS = 64;

export const SERVING = 1;
export const NOT_SERVING = 0;

/** TXT key under which an advertising ambassador announces its host probe UDP port. */
export const LIVENESS_TXT_KEY = 'hostprobe';

export interface LivenessMessage {
  type: typeof REQUEST | typeof REPLY;
  nonce: Buffer;
  /** port → status (0 in a request). */
  entries: Array<{ port: number; status: number }>;
}

export function encodeLiveness(type: LivenessMessage['type'], nonce: Uint8Array, entries: ReadonlyArray<{ port: number; status?: number }>): Buffer {
  const n = Math.min(entries.length, MAX_PORTS);
  const buf = Buffer.alloc(HEADER_BYTES + n * ENTRY_BYTES);
  buf.writeUInt32BE(MAGIC, 0);
  buf[4] = VERSION;
  buf[5] = type;
  buf.writeUInt16BE(n, 6);
  buf.set(nonce.subarray(0, NONCE_BYTES), 8);
  for (let i = 0; i < n; i++) {
    const e = entries[i]!;
    const at = HEADER_BYTES + i * ENTRY_BYTES;
    buf.writeUInt16BE(e.port & 0xffff, at);
    buf[at + 2] = e.status ?? 0;
  }
  return buf;
}

/** Decodes a datagram; undefined when it is not exactly a well-formed probe message. */
export function decodeLiveness(buf: Buffer): LivenessMessage | undefined {
  if (buf.length < HEADER_BYTES || buf.readUInt32BE(0) !== MAGIC || buf[4] !== VERSION) return undefined;
  const type = buf[5];
  if (type !== REQUEST && type !== REPLY) return undefined;
  const n = buf.readUInt16BE(6);
  if (n > MAX_PORTS || buf.length !== HEADER_BYTES + n * ENTRY_BYTES) return undefined;
  const entries: LivenessMessage['entries'] = [];
  for (let i = 0; i < n; i++) {
    const at = HEADER_BYTES + i * ENTRY_BYTES;
    const status = buf[at + 2]!;
    if (buf[at + 3] !== 0 || status > 1 || (type === REQUEST && status !== 0)) return undefined;
    entries.push({ port: buf.readUInt16BE(at), status });
  }
  return { type, nonce: buf.subarray(8, 16), entries };
}

/** The probe port an announcement's TXT names, if it is a valid one. */
export function livenessPortOf(txt: Readonly<Record<string, string>>): number | undefined {
  const v = txt[LIVENESS_TXT_KEY];
  if (v === undefined || !/^\d{1,5}$/.test(v)) return undefined;
  const port = Number(v);
  return port >= 1 && port <= 65535 ? port : undefined;
}
