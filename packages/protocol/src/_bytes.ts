// Big-endian integer encoding and a bounds-checked reader for the formats of spec/account-v1.md.
// The reader never throws on its own: every failure goes through the caller's `fail`, so each
// format reports its own error code (INVALID_MANIFEST, INVALID_BACKUP).

/** Largest integer a u64 field may hold (spec §3.1): JavaScript numbers stay exact. */
export const MAX_SAFE_U64 = Number.MAX_SAFE_INTEGER;
export const MAX_U32 = 0xffffffff;

export function u16(n: number): Uint8Array {
  return Uint8Array.of(n >>> 8, n & 0xff);
}

export function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

export function u64(n: number): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, Math.floor(n / 2 ** 32));
  view.setUint32(4, n >>> 0);
  return out;
}

/** `lp8(x)`: one length byte, then `x` (at most 255 bytes, checked by the caller). */
export function lp8(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + bytes.length);
  out[0] = bytes.length;
  out.set(bytes, 1);
  return out;
}

/** Non-secret byte equality (public keys, hashes of public data, ids). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Lexicographic order of byte strings (spec §3.1 sorts device entries by id bytes). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

export function isZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (const b of bytes) acc |= b;
  return acc === 0;
}

/** A cursor over untrusted bytes; every read past the end calls `fail`. */
export interface ByteReader {
  u8(): number;
  u16(): number;
  u32(): number;
  /** A u64 that must be at most 2^53 − 1. */
  u64(): number;
  /** `length` bytes, copied. */
  take(length: number): Uint8Array;
  /** `lp8(x)`, returning `x` (copied). */
  lp8(): Uint8Array;
  /** Calls `fail` unless every byte was read. */
  end(): void;
}

export function byteReader(bytes: Uint8Array, fail: () => never): ByteReader {
  let offset = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (n: number): number => {
    if (bytes.length - offset < n) fail();
    const at = offset;
    offset += n;
    return at;
  };
  return {
    u8: () => view.getUint8(need(1)),
    u16: () => view.getUint16(need(2)),
    u32: () => view.getUint32(need(4)),
    u64: () => {
      const at = need(8);
      const hi = view.getUint32(at);
      if (hi > 0x1fffff) fail();
      return hi * 2 ** 32 + view.getUint32(at + 4);
    },
    take: (length) => bytes.slice(need(length), offset),
    lp8() {
      const length = view.getUint8(need(1));
      return bytes.slice(need(length), offset);
    },
    end: () => {
      if (offset !== bytes.length) fail();
    },
  };
}

/** True for an integer in [min, max]. */
export function isIntIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}
