// The server's side of OPAQUE (RFC 9807) through @serenity-kit/opaque, with its default
// ciphersuite (ristretto255, SHA-512). Every message is b64url text; the sizes below let routes
// reject malformed messages as 400 before the library sees them, and library errors about a
// client's message (bad encoding, bad point) are 400 too. Library messages are never passed on.
import { hmac, toBase64url, utf8Encode } from '@coffer/crypto';
import * as opaque from '@serenity-kit/opaque';
import { ServerError } from './errors.js';

/** Decoded sizes of the client's OPAQUE messages under the default ciphersuite. */
export const OPAQUE_SIZES = {
  registrationRequest: 32,
  registrationRecord: 192,
  startLoginRequest: 96,
  finishLoginRequest: 64,
} as const;

/**
 * A fresh OPAQUE server setup (the server's long-term OPRF seed and key pair), b64url.
 *
 * @example const setup = await createOpaqueSetup();
 */
export async function createOpaqueSetup(): Promise<string> {
  await opaque.ready;
  return opaque.server.createSetup();
}

/**
 * The registration response for `userIdentifier` (the account id).
 *
 * @throws {ServerError} `BAD_REQUEST` when the request does not decode.
 */
export async function registrationResponse(
  serverSetup: string,
  userIdentifier: string,
  registrationRequest: string,
  op: string,
): Promise<string> {
  await opaque.ready;
  try {
    return opaque.server.createRegistrationResponse({
      serverSetup,
      userIdentifier,
      registrationRequest,
    }).registrationResponse;
  } catch {
    throw new ServerError('BAD_REQUEST', op, '"registrationRequest" is not a valid OPAQUE message');
  }
}

/**
 * Starts a login. `record` null answers with OPAQUE's fake record for an unknown user, in the
 * same shape and size as a real answer.
 *
 * @throws {ServerError} `BAD_REQUEST` when the request does not decode.
 */
export async function startLogin(
  serverSetup: string,
  userIdentifier: string,
  record: string | null,
  startLoginRequest: string,
  op: string,
): Promise<{ serverLoginState: string; loginResponse: string }> {
  await opaque.ready;
  try {
    return opaque.server.startLogin({
      serverSetup,
      userIdentifier,
      registrationRecord: record,
      startLoginRequest,
    });
  } catch {
    throw new ServerError('BAD_REQUEST', op, '"startLoginRequest" is not a valid OPAQUE message');
  }
}

/**
 * Finishes a login: the OPAQUE session key (b64url) when the client proved the password,
 * undefined otherwise (the library throws for a wrong proof and for a malformed one alike; both
 * are a failed login). The key binds a device's login proof to this login (spec "Login").
 */
export async function finishLogin(
  serverLoginState: string,
  finishLoginRequest: string,
): Promise<string | undefined> {
  await opaque.ready;
  try {
    return opaque.server.finishLogin({ serverLoginState, finishLoginRequest }).sessionKey;
  } catch {
    return undefined;
  }
}

/**
 * The OPAQUE user identifier for a username with no account: stable per name (so that repeated
 * logins for it look like those of a real account), keyed so it cannot be computed without the
 * server's secret, and shaped like an account id.
 *
 * @example const id = await fakeIdentifier(throttleKey, 'mallory');
 */
export async function fakeIdentifier(key: Uint8Array, normalizedUsername: string): Promise<string> {
  const mac = await hmac('SHA-256', key, utf8Encode(`fake:${normalizedUsername}`));
  return toBase64url(mac.subarray(0, 16));
}
