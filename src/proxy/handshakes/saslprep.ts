/**
 * SASLprep (RFC 4013, a profile of stringprep, RFC 3454) of a password, the way PostgreSQL
 * applies it before SCRAM (src/common/saslprep.c): a password that is pure ASCII is used as it
 * is; otherwise non-ASCII spaces become U+0020 and characters "commonly mapped to nothing" go;
 * if what is left is empty, holds a prohibited character or breaks the bidirectional rule (all
 * checked before normalization, as PostgreSQL does), the password is used as it is, else its
 * NFKC normalization. Both the server (when the password was
 * set) and every client must make the same choice, or the SCRAM proof will not match.
 *
 * Two simplifications, each of which can only matter for a password that also contains a
 * character SASLprep changes: code points unassigned in Unicode 3.2 (newer emoji, for instance)
 * are not treated as prohibited, and "left-to-right" characters (stringprep's table D.2) are
 * taken to be the letters (\p{L}) outside the right-to-left table D.1.
 */
export function saslprep(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  let mapped = '';
  for (const ch of password) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(cp, NON_ASCII_SPACE)) mapped += ' ';
    else if (!inRanges(cp, MAPPED_TO_NOTHING)) mapped += ch;
  }
  if (mapped.length === 0) return password;
  // As PostgreSQL does, the checks look at the mapped characters, before normalization.
  const cps = [...mapped].map((c) => c.codePointAt(0)!);
  if (cps.some((cp) => inRanges(cp, PROHIBITED) || isNonCharacter(cp))) return password;
  const rtl = cps.map((cp) => inRanges(cp, RAND_AL_CAT));
  if (rtl.some(Boolean)) {
    if (!rtl[0] || !rtl[rtl.length - 1]) return password;
    if (cps.some((cp, i) => !rtl[i] && LETTER.test(String.fromCodePoint(cp)))) return password;
  }
  return mapped.normalize('NFKC');
}

type Ranges = ReadonlyArray<readonly [number, number]>;

function inRanges(cp: number, ranges: Ranges): boolean {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true;
  return false;
}

/** C.4: U+FDD0..FDEF and the last two code points of every plane. */
function isNonCharacter(cp: number): boolean {
  return (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
}

const LETTER = /\p{L}/u;

/** C.1.2 non-ASCII space characters (mapped to U+0020). */
const NON_ASCII_SPACE: Ranges = [
  [0x00a0, 0x00a0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000],
];

/** B.1 commonly mapped to nothing. */
const MAPPED_TO_NOTHING: Ranges = [
  [0x00ad, 0x00ad], [0x034f, 0x034f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200b, 0x200d], [0x2060, 0x2060],
  [0xfe00, 0xfe0f], [0xfeff, 0xfeff],
];

/** C.1.2, C.2.1, C.2.2, C.3, C.5, C.6, C.7, C.8, C.9 (C.4 is isNonCharacter). */
const PROHIBITED: Ranges = [
  ...NON_ASCII_SPACE,
  [0x0000, 0x001f], [0x007f, 0x007f],
  [0x0080, 0x009f], [0x06dd, 0x06dd], [0x070f, 0x070f], [0x180e, 0x180e], [0x200c, 0x200d], [0x2028, 0x2029],
  [0x2060, 0x2063], [0x206a, 0x206f], [0xfeff, 0xfeff], [0xfff9, 0xfffc], [0x1d173, 0x1d17a],
  [0xe000, 0xf8ff], [0xf0000, 0xffffd], [0x100000, 0x10fffd],
  [0xd800, 0xdfff],
  [0xfff9, 0xfffd],
  [0x2ff0, 0x2ffb],
  [0x0340, 0x0341], [0x200e, 0x200f], [0x202a, 0x202e],
  [0xe0001, 0xe0001], [0xe0020, 0xe007f],
];

/** D.1 characters with bidirectional property "R" or "AL". */
const RAND_AL_CAT: Ranges = [
  [0x05be, 0x05be], [0x05c0, 0x05c0], [0x05c3, 0x05c3], [0x05d0, 0x05ea], [0x05f0, 0x05f4], [0x061b, 0x061b],
  [0x061f, 0x061f], [0x0621, 0x063a], [0x0640, 0x064a], [0x066d, 0x066f], [0x0671, 0x06d5], [0x06dd, 0x06dd],
  [0x06e5, 0x06e6], [0x06fa, 0x06fe], [0x0700, 0x070d], [0x0710, 0x0710], [0x0712, 0x072c], [0x0780, 0x07a5],
  [0x07b1, 0x07b1], [0x200f, 0x200f], [0xfb1d, 0xfb1d], [0xfb1f, 0xfb28], [0xfb2a, 0xfb36], [0xfb38, 0xfb3c],
  [0xfb3e, 0xfb3e], [0xfb40, 0xfb41], [0xfb43, 0xfb44], [0xfb46, 0xfbb1], [0xfbd3, 0xfd3d], [0xfd50, 0xfd8f],
  [0xfd92, 0xfdc7], [0xfdf0, 0xfdfc], [0xfe70, 0xfe74], [0xfe76, 0xfefc],
];
