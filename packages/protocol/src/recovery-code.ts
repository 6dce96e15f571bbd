import { hkdf, randomBytes, sha256, utf8Encode } from '@coffer/crypto';
import { base32Encode, base32Pack, base32Symbols, groupsOfFour } from './_base32.js';
import { assertBytes, assertObject, invalidArgument, ProtocolError } from './errors.js';
import { isId } from './ids.js';

/** A recovery code is 20 random bytes: 160 bits, so its verifier cannot be brute-forced (§4). */
export const RECOVERY_CODE_LENGTH = 20;
/** Its Crockford base32 form has 32 symbols. */
const SYMBOLS = (RECOVERY_CODE_LENGTH * 8) / 5;
/** Human input longer than this is refused unread: 32 symbols leave room for any spacing. */
export const MAX_CODE_INPUT_LENGTH = 256;
/** The recovery proof and the recovery key are 32 bytes. */
const KEY_LENGTH = 32;

/** A recovery code (spec §4): shown once at signup, the way back in without the password. */
export interface RecoveryCode {
  /** Display form: 8 groups of 4 Crockford base32 characters. */
  readonly text: string;
  readonly bytes: Uint8Array;
}

/**
 * A fresh recovery code: 20 random bytes, shown as `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`.
 *
 * @example const code = generateRecoveryCode(); show(code.text);
 */
export function generateRecoveryCode(): RecoveryCode {
  return fromBytes(randomBytes(RECOVERY_CODE_LENGTH));
}

/**
 * Reads a recovery code typed or pasted by a person (spec §4): lower case, whitespace and dashes
 * are accepted, `O` reads as `0` and `I`/`L` as `1`; then exactly 32 symbols must remain.
 *
 * @throws {ProtocolError} `INVALID_RECOVERY_CODE` for any other character or symbol count (the
 *   message never repeats the input); `INVALID_ARGUMENT` when `text` is not a string.
 * @example const code = parseRecoveryCode('abcd efgh ijkl …'); // as typed
 */
export function parseRecoveryCode(text: string): RecoveryCode {
  const op = 'recoveryCode.parse';
  if (typeof text !== 'string') throw invalidArgument(op, '"text" expected a string');
  const symbols = text.length <= MAX_CODE_INPUT_LENGTH ? base32Symbols(text, SYMBOLS) : undefined;
  if (!symbols || symbols.length !== SYMBOLS) {
    throw new ProtocolError(
      'INVALID_RECOVERY_CODE',
      op,
      `expected ${SYMBOLS} characters of the recovery code alphabet`,
    );
  }
  return fromBytes(base32Pack(symbols));
}

/**
 * The recovery proof (spec §4): `hkdf(code, "coffer/v1/recovery-auth", empty context, 32)`. Sent
 * to the server only to start a recovery.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` when `code.bytes` is not 20 bytes.
 * @example const proof = await recoveryProof(parseRecoveryCode(input));
 */
export async function recoveryProof(code: RecoveryCode): Promise<Uint8Array> {
  const bytes = codeBytes('recoveryCode.proof', code);
  return hkdf(bytes, { label: 'coffer/v1/recovery-auth', length: KEY_LENGTH });
}

/**
 * The recovery verifier the server stores at signup (spec §4): `SHA-256(proof)`.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` when `proof` is not 32 bytes.
 * @example const verifier = await recoveryVerifier(await recoveryProof(code));
 */
export async function recoveryVerifier(proof: Uint8Array): Promise<Uint8Array> {
  assertBytes('recoveryCode.verifier', 'proof', proof, KEY_LENGTH);
  return sha256(proof);
}

/**
 * @internal The recovery key that wraps the backup key (spec §4):
 * `hkdf(code, "coffer/v1/recovery", utf8(accountId), 32)`. Wipe it after use.
 */
export async function recoveryKey(
  operation: string,
  code: RecoveryCode,
  accountId: string,
): Promise<Uint8Array> {
  const bytes = codeBytes(operation, code);
  if (!isId(accountId)) throw invalidArgument(operation, '"accountId" expected an id');
  return hkdf(bytes, {
    label: 'coffer/v1/recovery',
    length: KEY_LENGTH,
    context: utf8Encode(accountId),
  });
}

/** @internal The 20 bytes of a recovery code argument. */
export function codeBytes(operation: string, code: RecoveryCode): Uint8Array {
  assertObject(operation, 'recoveryCode', code);
  assertBytes(operation, 'recoveryCode.bytes', code.bytes, RECOVERY_CODE_LENGTH);
  return code.bytes;
}

function fromBytes(bytes: Uint8Array): RecoveryCode {
  return Object.freeze({ text: groupsOfFour(base32Encode(bytes)), bytes });
}
