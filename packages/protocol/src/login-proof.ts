import { concatBytes, hkdf, type SigningKey, sign, utf8Encode, verify, wipe } from '@coffer/crypto';
import { lp8 } from './_bytes.js';
import { assertBytes, assertObject, invalidArgument } from './errors.js';
import { isId } from './ids.js';
import { PUBLIC_KEY_LENGTH } from './key-pair.js';

/** Ed25519 signatures are 64 bytes. */
export const LOGIN_PROOF_LENGTH = 64;
/** OPAQUE session keys are 64 bytes under the default ciphersuite (SHA-512). */
export const LOGIN_SESSION_KEY_LENGTH = 64;

// spec §7: the signed message is this label, a zero byte, lp8(loginId), lp8(deviceId), then
// the 32-byte binding derived from the login's OPAQUE session key.
const PROOF_PREFIX = concatBytes(utf8Encode('coffer/v1/login-device'), Uint8Array.of(0));
const BINDING_LABEL = 'coffer/v1/login-binding';
const BINDING_LENGTH = 32;

/** What a login proof is bound to (spec §7). */
export interface LoginProofContext {
  /** The `loginId` login/start answered with. */
  readonly loginId: string;
  /** The device the login names. */
  readonly deviceId: string;
  /** The OPAQUE session key of this login (both sides have it; it is never sent). */
  readonly sessionKey: Uint8Array;
}

/**
 * A listed device's proof that it takes part in this login (spec §7): its Ed25519 signature over
 * the login id, the device id and a value derived from the login's OPAQUE session key, so that
 * a proof is worth nothing in any other login. Send it as `deviceProof` to login/finish.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` for a loginId or deviceId that is not an id, or a
 *   session key that is not 64 bytes.
 * @example const proof = await signLoginProof(device.signingKey, { loginId, deviceId, sessionKey });
 */
export async function signLoginProof(
  device: SigningKey,
  context: LoginProofContext,
): Promise<Uint8Array> {
  const message = await proofMessage('loginProof.sign', context);
  return sign(device, message);
}

/**
 * Checks a login proof against the signing key the current manifest lists for the device.
 * False for any bad proof, key or context: what a client sends never throws.
 *
 * @example if (!(await verifyLoginProof(entry.signingKey, proof, { loginId, deviceId, sessionKey }))) refuse();
 */
export async function verifyLoginProof(
  signingKey: Uint8Array,
  proof: Uint8Array,
  context: LoginProofContext,
): Promise<boolean> {
  if (!(signingKey instanceof Uint8Array) || signingKey.length !== PUBLIC_KEY_LENGTH) return false;
  if (!(proof instanceof Uint8Array) || proof.length !== LOGIN_PROOF_LENGTH) return false;
  let message: Uint8Array;
  try {
    message = await proofMessage('loginProof.verify', context);
  } catch {
    return false;
  }
  return verify(signingKey, message, proof);
}

async function proofMessage(op: string, context: LoginProofContext): Promise<Uint8Array> {
  assertObject(op, 'context', context);
  const { loginId, deviceId, sessionKey } = context;
  if (!isId(loginId)) throw invalidArgument(op, '"loginId" expected an id (22 characters)');
  if (!isId(deviceId)) throw invalidArgument(op, '"deviceId" expected an id (22 characters)');
  assertBytes(op, 'sessionKey', sessionKey, LOGIN_SESSION_KEY_LENGTH);
  const binding = await hkdf(sessionKey, { label: BINDING_LABEL, length: BINDING_LENGTH });
  try {
    return concatBytes(PROOF_PREFIX, lp8(utf8Encode(loginId)), lp8(utf8Encode(deviceId)), binding);
  } finally {
    wipe(binding);
  }
}
