import { fromBase64url } from '@coffer/crypto';
import * as opaque from '@serenity-kit/opaque';
import { SdkError } from './errors.js';

// The client's side of OPAQUE (RFC 9807) through @serenity-kit/opaque, default ciphersuite
// (ristretto255, SHA-512), no custom identifiers (the server uses userIdentifier = accountId).

/**
 * OPAQUE's key-stretching setting, as `@serenity-kit/opaque` takes it.
 *
 * @example
 * const cheap: KeyStretching = { 'argon2id-custom': { memory: 8, iterations: 1, parallelism: 1 } }; // tests only
 */
export type KeyStretching = {
  readonly 'argon2id-custom': {
    readonly memory: number;
    readonly iterations: number;
    readonly parallelism: number;
  };
};

/**
 * The password-hashing parameters every Coffer client uses: Argon2id with m = 64 MiB, t = 3,
 * p = 4 (RFC 9106's second recommendation). A constant of the SDK, never taken from the server:
 * a server that could lower them could make stolen records cheap to guess.
 *
 * @example createClient({ server, store, storeKey }); // uses PASSWORD_HASHING
 */
export const PASSWORD_HASHING: KeyStretching = Object.freeze({
  'argon2id-custom': Object.freeze({ memory: 65536, iterations: 3, parallelism: 4 }),
});

/** OPAQUE's export key is 64 bytes under the default ciphersuite. */
const EXPORT_KEY_LENGTH = 64;

/**
 * @internal
 *
 * @example
 * const { state, request } = await opaque.startLogin(password);
 */
export interface OpaqueClient {
  startRegistration(password: string): Promise<{ state: string; request: string }>;
  finishRegistration(
    password: string,
    state: string,
    response: string,
  ): Promise<{ record: string; exportKey: Uint8Array }>;
  startLogin(password: string): Promise<{ state: string; request: string }>;
  /**
   * Undefined when the password is wrong (or the server answered for an unknown user). The
   * session key binds a device's login proof to this login.
   */
  finishLogin(
    password: string,
    state: string,
    response: string,
  ): Promise<{ request: string; exportKey: Uint8Array; sessionKey: Uint8Array } | undefined>;
}

/**
 * @internal The OPAQUE client with the given stretching (the constant outside tests).
 *
 * @example
 * const opaque = opaqueClient(PASSWORD_HASHING, () => 'client.login');
 */
export function opaqueClient(keyStretching: KeyStretching, operation: () => string): OpaqueClient {
  // Library errors carry its own messages; only ours leave the SDK.
  const guard = async <T>(what: string, fn: () => T): Promise<T> => {
    await opaque.ready;
    try {
      return fn();
    } catch (err) {
      throw new SdkError(
        'PROTOCOL_VIOLATION',
        operation(),
        `the server's OPAQUE ${what} is malformed`,
        {
          cause: err instanceof Error ? new Error(err.name) : undefined,
          detail: 'OPAQUE',
        },
      );
    }
  };
  const exportKeyOf = (text: string): Uint8Array => {
    const key = fromBase64url(text);
    if (key.length !== EXPORT_KEY_LENGTH) {
      throw new SdkError('PROTOCOL_VIOLATION', operation(), 'unexpected OPAQUE export key length');
    }
    return key;
  };
  const stretching = keyStretching as Parameters<
    typeof opaque.client.finishRegistration
  >[0]['keyStretching'];
  return {
    async startRegistration(password) {
      await opaque.ready;
      const r = opaque.client.startRegistration({ password });
      return { state: r.clientRegistrationState, request: r.registrationRequest };
    },
    async finishRegistration(password, state, response) {
      const r = await guard('registration response', () =>
        opaque.client.finishRegistration({
          clientRegistrationState: state,
          registrationResponse: response,
          password,
          keyStretching: stretching,
        }),
      );
      return { record: r.registrationRecord, exportKey: exportKeyOf(r.exportKey) };
    },
    async startLogin(password) {
      await opaque.ready;
      const r = opaque.client.startLogin({ password });
      return { state: r.clientLoginState, request: r.startLoginRequest };
    },
    async finishLogin(password, state, response) {
      const r = await guard('login response', () =>
        opaque.client.finishLogin({
          clientLoginState: state,
          loginResponse: response,
          password,
          keyStretching: stretching,
        }),
      );
      if (!r) return undefined;
      return {
        request: r.finishLoginRequest,
        exportKey: exportKeyOf(r.exportKey),
        sessionKey: fromBase64url(r.sessionKey),
      };
    },
  };
}

/**
 * @internal Checks a test-only stretching option.
 *
 * @example
 * const stretching = checkKeyStretching(options.opaque?.keyStretching);
 */
export function checkKeyStretching(value: unknown): KeyStretching {
  const inner = (value as { 'argon2id-custom'?: unknown } | null)?.['argon2id-custom'] as
    | { memory?: unknown; iterations?: unknown; parallelism?: unknown }
    | undefined;
  const ok =
    typeof inner === 'object' &&
    inner !== null &&
    [inner.memory, inner.iterations, inner.parallelism].every(
      (n) => typeof n === 'number' && Number.isSafeInteger(n) && n > 0,
    );
  if (!ok) {
    throw new SdkError(
      'INVALID_ARGUMENT',
      'createClient',
      '"opaque.keyStretching" expected { "argon2id-custom": { memory, iterations, parallelism } }',
    );
  }
  return value as KeyStretching;
}
