import { backend } from '#backend';
import { utf8Encode } from './encoding.js';
import { assertBytes, CryptoError } from './errors.js';
import { assertHash, HASH_LENGTH, type HashName } from './hash.js';

/**
 * Every Coffer key-derivation label: `coffer/v<version>/<purpose>`, purpose in lowercase
 * kebab-case, optionally with `/`-separated parts. A new scheme gets a new label, not a flag.
 */
export const LABEL_PATTERN =
  /^coffer\/v[1-9][0-9]*\/[a-z0-9]+(?:-[a-z0-9]+)*(?:\/[a-z0-9]+(?:-[a-z0-9]+)*)*$/;

export interface HkdfOptions {
  /** Domain separation: `coffer/v1/<purpose>`. */
  label: string;
  /** Output length in bytes, 1 to 255 × the hash length. */
  length: number;
  /** Optional salt (RFC 5869 §3.1); empty by default. */
  salt?: Uint8Array;
  /** Optional bytes that bind the key to its use (ids, transcript hashes). */
  context?: Uint8Array;
  /** Default SHA-256. */
  hash?: HashName;
}

/**
 * Derives a key with HKDF (RFC 5869). The HKDF `info` is `label || 0x00 || context`, which is
 * unambiguous because labels never contain a zero byte.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` for a label not of the form `coffer/v1/<purpose>` or an
 *   out-of-range length.
 * @example
 * const fieldKey = await hkdf(dataKey, { label: 'coffer/v1/field-key', length: 32, context: columnId });
 */
export async function hkdf(ikm: Uint8Array, options: HkdfOptions): Promise<Uint8Array> {
  const op = 'hkdf.derive';
  const { label, length, salt = EMPTY, context = EMPTY, hash = 'SHA-256' } = options;
  if (typeof label !== 'string' || !LABEL_PATTERN.test(label)) {
    throw new CryptoError('INVALID_ARGUMENT', op, '"label" expected the form coffer/v1/<purpose>');
  }
  assertBytes(op, 'ikm', ikm);
  assertBytes(op, 'salt', salt);
  assertBytes(op, 'context', context);
  const labelBytes = utf8Encode(label);
  const info = new Uint8Array(labelBytes.length + 1 + context.length);
  info.set(labelBytes, 0);
  info.set(context, labelBytes.length + 1);
  return hkdfRaw(op, hash, ikm, salt, info, length);
}

/**
 * HKDF-Extract (RFC 5869 §2.2): a pseudorandom key from input keying material. For protocols
 * that fix their own labels (MLS, HPKE); Coffer's own keys use {@link hkdf}.
 *
 * @example const prk = await hkdfExtract('SHA-256', salt, ikm);
 */
export async function hkdfExtract(
  hash: HashName,
  salt: Uint8Array,
  ikm: Uint8Array,
): Promise<Uint8Array> {
  const op = 'hkdf.extract';
  assertHash(op, hash);
  assertBytes(op, 'salt', salt);
  assertBytes(op, 'ikm', ikm);
  // HMAC with an empty key equals HMAC with HashLen zero bytes (RFC 5869 §2.2).
  return backend.hmac(hash, salt.length > 0 ? salt : new Uint8Array(HASH_LENGTH[hash]), ikm);
}

/**
 * HKDF-Expand (RFC 5869 §2.3).
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` when `prk` is shorter than the hash or `length` is out of range.
 * @example const okm = await hkdfExpand('SHA-256', prk, info, 32);
 */
export async function hkdfExpand(
  hash: HashName,
  prk: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  const op = 'hkdf.expand';
  assertHash(op, hash);
  assertBytes(op, 'prk', prk);
  assertBytes(op, 'info', info);
  const hashLength = HASH_LENGTH[hash];
  assertLength(op, hash, length);
  if (prk.length < hashLength) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      op,
      `"prk" expected at least ${hashLength} bytes, got ${prk.length}`,
    );
  }
  const out = new Uint8Array(length);
  const input = new Uint8Array(hashLength + info.length + 1);
  input.set(info, hashLength);
  let previous: Uint8Array = new Uint8Array(0);
  for (let i = 1, offset = 0; offset < length; i++) {
    // T(i) = HMAC(PRK, T(i-1) || info || i); T(0) is empty.
    const block = i === 1 ? input.subarray(hashLength) : input;
    if (i > 1) input.set(previous, 0);
    block[block.length - 1] = i;
    previous = await backend.hmac(hash, prk, block);
    out.set(previous.subarray(0, Math.min(hashLength, length - offset)), offset);
    offset += hashLength;
  }
  return out;
}

/** @internal Extract-then-expand with arbitrary `info`: for external vectors and protocols. */
export async function hkdfRaw(
  operation: string,
  hash: HashName,
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  assertHash(operation, hash);
  assertLength(operation, hash, length);
  return backend.hkdf(hash, ikm, salt, info, length);
}

function assertLength(operation: string, hash: HashName, length: number): void {
  const max = 255 * HASH_LENGTH[hash];
  if (!Number.isSafeInteger(length) || length < 1 || length > max) {
    throw new CryptoError('INVALID_ARGUMENT', operation, `"length" expected 1 to ${max} bytes`);
  }
}

const EMPTY = new Uint8Array(0);
