// Crockford base32 (https://www.crockford.com/base32.html) as spec/account-v1.md §4 and §6 use
// it: the 32-symbol alphabet without I, L, O and U, bits taken most significant first, no check
// symbol. Codes are whole multiples of 40 bits, so no padding ever appears.

export const CROCKFORD_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

const DECODE = new Int8Array(128).fill(-1);
for (let i = 0; i < CROCKFORD_ALPHABET.length; i++) {
  const c = CROCKFORD_ALPHABET.charCodeAt(i);
  DECODE[c] = i;
  DECODE[String.fromCharCode(c).toLowerCase().charCodeAt(0)] = i;
}
// spec §4: what people misread is mapped, not refused.
for (const [from, to] of [
  ['O', 0],
  ['o', 0],
  ['I', 1],
  ['i', 1],
  ['L', 1],
  ['l', 1],
] as const) {
  DECODE[from.charCodeAt(0)] = to;
}

/** Encodes bytes whose bit length is a multiple of 5 (every code here is a multiple of 40). */
export function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += CROCKFORD_ALPHABET[(acc >> bits) & 31]!;
    }
  }
  if (bits > 0) out += CROCKFORD_ALPHABET[(acc << (5 - bits)) & 31]!;
  return out;
}

/**
 * Reads human input: skips ASCII whitespace and dashes, folds case, maps O→0 and I/L→1, and
 * returns the symbols' values, or undefined for any other character or more than `maxSymbols`.
 */
export function base32Symbols(text: string, maxSymbols: number): number[] | undefined {
  const symbols: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x2d) continue;
    const v = c < 128 ? DECODE[c]! : -1;
    if (v < 0 || symbols.length === maxSymbols) return undefined;
    symbols.push(v);
  }
  return symbols;
}

/** Packs symbol values (a count whose bit length is a whole number of bytes) into bytes. */
export function base32Pack(symbols: readonly number[]): Uint8Array {
  const out = new Uint8Array(Math.floor((symbols.length * 5) / 8));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (const v of symbols) {
    acc = ((acc << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

/** `XXXX-XXXX-…`: groups of four symbols joined by dashes. */
export function groupsOfFour(symbols: string): string {
  return symbols.match(/.{1,4}/g)?.join('-') ?? '';
}
