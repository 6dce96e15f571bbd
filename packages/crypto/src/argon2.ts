import { argon2id as argon2idWasm } from 'hash-wasm';
import { assertBytes, CryptoError } from './errors.js';

// Argon2id (RFC 9106) through hash-wasm: the reference C implementation compiled to
// WebAssembly, so Node and browsers run the same code. Measured in bench/ against @noble/hashes'
// pure-JS argon2id (see README "Argon2id").

export interface Argon2idParams {
  /** Memory in KiB; default 65536 (64 MiB, RFC 9106 §4 second recommended option). */
  memoryKiB?: number;
  /** Passes; default 3. */
  iterations?: number;
  /** Lanes; default 4. */
  parallelism?: number;
  /** Output length in bytes; default 32. */
  length?: number;
}

/** RFC 9106 §4, second recommended option: for memory-constrained environments. */
export const ARGON2ID_DEFAULTS: Readonly<Required<Argon2idParams>> = {
  memoryKiB: 65536,
  iterations: 3,
  parallelism: 4,
  length: 32,
};

/** Floors below which a password-derived key is too cheap to guess (OWASP's minimum). */
export const ARGON2ID_MIN_MEMORY_KIB = 19456;
export const ARGON2ID_MIN_SALT_LENGTH = 16;
/** Caps on caller-chosen cost, so a bad parameter cannot exhaust memory (4 GiB). */
export const ARGON2ID_MAX_MEMORY_KIB = 4 * 1024 * 1024;

/**
 * Derives a key from a password with Argon2id.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` for an empty password, a salt under 16 bytes or
 *   parameters outside the accepted range; `UNSUPPORTED_RUNTIME` when WebAssembly cannot run it.
 * @example const key = await argon2id(utf8Encode(password), salt);
 */
export async function argon2id(
  password: Uint8Array,
  salt: Uint8Array,
  params: Argon2idParams = {},
): Promise<Uint8Array> {
  const op = 'argon2.argon2id';
  assertBytes(op, 'password', password);
  assertBytes(op, 'salt', salt);
  const { memoryKiB, iterations, parallelism, length } = { ...ARGON2ID_DEFAULTS, ...params };
  if (password.length === 0)
    throw new CryptoError('INVALID_ARGUMENT', op, '"password" must not be empty');
  if (salt.length < ARGON2ID_MIN_SALT_LENGTH) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      op,
      `"salt" expected at least ${ARGON2ID_MIN_SALT_LENGTH} bytes, got ${salt.length}`,
    );
  }
  checkRange(op, 'memoryKiB', memoryKiB, ARGON2ID_MIN_MEMORY_KIB, ARGON2ID_MAX_MEMORY_KIB);
  checkRange(op, 'iterations', iterations, 1, 64);
  checkRange(op, 'parallelism', parallelism, 1, 255);
  checkRange(op, 'length', length, 16, 1024);
  if (memoryKiB < 8 * parallelism)
    checkRange(op, 'memoryKiB', memoryKiB, 8 * parallelism, ARGON2ID_MAX_MEMORY_KIB);
  try {
    return await argon2idWasm({
      password,
      salt,
      memorySize: memoryKiB,
      iterations,
      parallelism,
      hashLength: length,
      outputType: 'binary',
    });
  } catch (cause) {
    // Inputs are validated above; what is left is the runtime failing (WebAssembly memory).
    throw new CryptoError('UNSUPPORTED_RUNTIME', op, 'argon2id could not run (out of memory?)', {
      cause,
    });
  }
}

function checkRange(op: string, name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      op,
      `"${name}" expected an integer from ${min} to ${max}`,
    );
  }
}
