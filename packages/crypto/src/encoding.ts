import { CryptoError } from './errors.js';

// Strict, canonical encoders: every byte string has exactly one accepted text form, so an
// encoded value can be compared, hashed or used as a map key without normalising it first.

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64URL_DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < B64URL.length; i++) B64URL_DECODE[B64URL.charCodeAt(i)] = i;

const HEX = '0123456789abcdef';
const HEX_BYTE: string[] = Array.from({ length: 256 }, (_, i) => HEX[i >> 4]! + HEX[i & 15]!);

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Encodes bytes as unpadded base64url (RFC 4648 §5).
 *
 * @example toBase64url(new Uint8Array([255, 254])) // "__4"
 */
export function toBase64url(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64URL[n >> 18]! + B64URL[(n >> 12) & 63]! + B64URL[(n >> 6) & 63]! + B64URL[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += B64URL[n >> 18]! + B64URL[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += B64URL[n >> 18]! + B64URL[(n >> 12) & 63]! + B64URL[(n >> 6) & 63]!;
  }
  return out;
}

/**
 * Decodes unpadded base64url, rejecting padding, other alphabets, whitespace and
 * non-canonical trailing bits.
 *
 * @throws {CryptoError} `INVALID_ENCODING` for any text that {@link toBase64url} would not produce.
 * @example fromBase64url('__4') // Uint8Array [255, 254]
 */
export function fromBase64url(text: string): Uint8Array {
  const op = 'encoding.fromBase64url';
  if (typeof text !== 'string')
    throw new CryptoError('INVALID_ARGUMENT', op, '"text" expected a string');
  const rest = text.length % 4;
  if (rest === 1) throw new CryptoError('INVALID_ENCODING', op, 'invalid base64url length');
  const out = new Uint8Array(((text.length - rest) / 4) * 3 + (rest === 0 ? 0 : rest - 1));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? B64URL_DECODE[c]! : -1;
    if (v < 0) throw new CryptoError('INVALID_ENCODING', op, `invalid base64url character at ${i}`);
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  // Leftover bits must be zero, or two texts would decode to the same bytes.
  if ((acc & ((1 << bits) - 1)) !== 0) {
    throw new CryptoError('INVALID_ENCODING', op, 'non-canonical base64url');
  }
  return out;
}

/**
 * Encodes bytes as lowercase hex.
 *
 * @example toHex(new Uint8Array([1, 171])) // "01ab"
 */
export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += HEX_BYTE[bytes[i]!]!;
  return out;
}

/**
 * Decodes lowercase hex (the canonical form; uppercase is rejected).
 *
 * @throws {CryptoError} `INVALID_ENCODING` for odd lengths or characters outside `0-9a-f`.
 * @example fromHex('01ab') // Uint8Array [1, 171]
 */
export function fromHex(text: string): Uint8Array {
  const op = 'encoding.fromHex';
  if (typeof text !== 'string')
    throw new CryptoError('INVALID_ARGUMENT', op, '"text" expected a string');
  if (text.length % 2 !== 0) throw new CryptoError('INVALID_ENCODING', op, 'odd hex length');
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) {
    const hi = hexValue(text.charCodeAt(2 * i));
    const lo = hexValue(text.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) throw new CryptoError('INVALID_ENCODING', op, `invalid hex at ${2 * i}`);
    out[i] = (hi << 4) | lo;
  }
  return out;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 102) return c - 87; // a-f
  return -1;
}

/** Encodes a string as UTF-8. Lone surrogates become U+FFFD, as `TextEncoder` does. */
export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * Decodes UTF-8 strictly.
 *
 * @throws {CryptoError} `INVALID_ENCODING` when the bytes are not well-formed UTF-8.
 */
export function utf8Decode(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new CryptoError('INVALID_ENCODING', 'encoding.utf8Decode', 'invalid utf-8');
  }
}

/** Concatenates byte arrays into a new one. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
