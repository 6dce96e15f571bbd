// HMAC-SHA256 under one fixed key, for many short messages (blind indexes). node:crypto's
// createHmac pays a native call and hashes both key pads again on every message: for a
// 40-byte message that is most of the work. Here the key's inner and outer pad states are
// hashed once, and each message costs two SHA-256 compressions in the audited @noble/hashes,
// synchronously on every platform (measured 1.3–2× createHmac for short messages; see
// packages/fields/bench). The same RFC 2104 HMAC: Wycheproof's vectors run through it.
import { hmac as nobleHmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { assertBytes, CryptoError } from './errors.js';

/** HMAC-SHA256 under a key fixed at creation. */
export interface KeyedHmacSha256 {
  /**
   * The 32-byte HMAC-SHA256 of `data`, in a new array or written into `out` (32 bytes; a hot
   * loop reusing one saves an allocation per call, which costs about as much as the hashing).
   */
  mac(data: Uint8Array, out?: Uint8Array): Uint8Array;
  /** Overwrites the key's pad states; `mac` throws afterwards. */
  destroy(): void;
}

/**
 * Prepares HMAC-SHA256 (RFC 2104) under `key` for repeated use: `mac(data)` equals
 * `hmac('SHA-256', key, data)`, synchronously and without re-hashing the key each time.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` for an empty or non-Uint8Array key, non-bytes data, or
 *   use after `destroy`.
 * @example
 * const indexMac = createKeyedHmacSha256(indexKey);
 * const tag = indexMac.mac(utf8Encode('alice@example.com'));
 */
export function createKeyedHmacSha256(key: Uint8Array): KeyedHmacSha256 {
  const op = 'hash.keyedHmacSha256';
  assertBytes(op, 'key', key);
  if (key.length === 0) throw new CryptoError('INVALID_ARGUMENT', op, '"key" must not be empty');
  let keyed: ReturnType<typeof nobleHmac.create> | undefined = nobleHmac.create(sha256, key);
  // One working copy, overwritten from the keyed states for each message.
  let work = keyed.clone();
  return {
    mac(data, out) {
      if (!keyed) throw new CryptoError('INVALID_ARGUMENT', op, 'the key was destroyed');
      assertBytes(op, 'data', data);
      if (out === undefined) out = new Uint8Array(32);
      else assertBytes(op, 'out', out, 32);
      work = keyed._cloneInto(work);
      work.update(data);
      work.digestInto(out);
      return out;
    },
    destroy() {
      keyed?.destroy();
      work.destroy();
      keyed = undefined;
    },
  };
}
