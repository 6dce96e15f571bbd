// Incremental SHA-256 for payloads that never sit whole in memory (attachments). WebCrypto has no
// incremental digest, so every platform uses the audited @noble/hashes implementation.
import { sha256 } from '@noble/hashes/sha2.js';
import { assertBytes, CryptoError } from './errors.js';

/** A SHA-256 computation fed piece by piece. */
export interface Sha256Stream {
  /** Hashes `data` after what came before. */
  update(data: Uint8Array): void;
  /** The 32-byte digest of everything given; the hasher cannot be used afterwards. */
  digest(): Uint8Array;
}

/**
 * Starts an incremental SHA-256: the same digest as {@link sha256} of the concatenated input.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` for a non-Uint8Array piece, or any use after `digest`.
 * @example
 * const h = createSha256();
 * for await (const chunk of file) h.update(chunk);
 * const digest = h.digest();
 */
export function createSha256(): Sha256Stream {
  const op = 'hash.sha256Stream';
  const state = sha256.create();
  let done = false;
  const open = () => {
    if (done) throw new CryptoError('INVALID_ARGUMENT', op, 'the digest was already taken');
  };
  return {
    update(data) {
      open();
      assertBytes(op, 'data', data);
      state.update(data);
    },
    digest() {
      open();
      done = true;
      return state.digest();
    },
  };
}
