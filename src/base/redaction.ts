/** TXT keys whose values are never shown (a TXT record is public, but people put things in it). */
const SECRET_KEY = /pass|secret|token|key|auth|cred|private/i;

/** A TXT record as shown to people (/peers, `ambassador browse`): values of secret-looking keys replaced. */
export function redactTxt(txt: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(txt)) out[k] = SECRET_KEY.test(k) ? '[redacted]' : v;
  return out;
}
