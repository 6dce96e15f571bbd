import { readFile } from 'node:fs/promises';
import {
  type AeadKey,
  CryptoError,
  decrypt,
  encrypt,
  fromBase64url,
  generateAeadKey,
  importAeadKey,
  MAX_KEY_ID_LENGTH,
  toBase64url,
} from '@coffer/crypto';
import { writeFileDurably } from '../_durable-file.js';
import { FieldsError } from '../errors.js';
import type { KeyOperation, KeyProvider } from '../key-provider.js';

/** Keyring data and index keys (spec/wrapped-key-v1.md: every provider wraps 32 bytes). */
const DATA_KEY_BYTES = 32;

/**
 * A provider whose KEKs are held in this process: for development and tests, or where a
 * secrets manager injects the KEK as an environment variable. Production deployments that can
 * should keep the KEK in an HSM (`createPkcs11Provider`) or a key manager (`createKmipProvider`).
 * Wrapped keys are Coffer envelopes (AES-256-GCM) with the KEK id as key id.
 */
export interface LocalProvider extends KeyProvider {
  readonly kind: 'local';
}

/**
 * A local provider over in-memory KEKs (32 bytes each), by KEK id.
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` for a KEK that is not 32 bytes, or a KEK id that is
 *   empty or longer than 64 UTF-8 bytes (it is the key id of every wrapped key).
 * @example const provider = await createLocalProvider({ 'dev-kek': kekBytes });
 */
export async function createLocalProvider(
  keks: Record<string, Uint8Array>,
): Promise<LocalProvider> {
  const keys = new Map<string, AeadKey>();
  for (const [kekId, bytes] of Object.entries(keks)) {
    if (!(bytes instanceof Uint8Array) || bytes.length !== 32) {
      throw new FieldsError(
        'INVALID_ARGUMENT',
        'provider.local',
        `KEK "${kekId}" expected 32 bytes`,
      );
    }
    // The KEK id is each wrapped key's envelope key id (wrapped-key-v1): 1 to 64 bytes.
    const idBytes = Buffer.byteLength(kekId, 'utf8');
    if (idBytes === 0 || idBytes > MAX_KEY_ID_LENGTH)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        'provider.local',
        `KEK id expected 1 to ${MAX_KEY_ID_LENGTH} UTF-8 bytes, got ${idBytes} ` +
          '(localProviderFromFile uses the file name unless given a kekId)',
      );
    try {
      keys.set(kekId, await importAeadKey(bytes, { id: kekId }));
    } catch (err) {
      if (!CryptoError.is(err)) throw err;
      throw new FieldsError('INVALID_ARGUMENT', 'provider.local', `KEK "${kekId}" is not usable`);
    }
  }
  return {
    kind: 'local',
    async keyOperation(request) {
      checkRequest(request);
      const op = `provider.local.${request.op}`;
      const kek = keys.get(request.kekId);
      if (!kek) throw new FieldsError('UNKNOWN_KEY', op, `no KEK "${request.kekId}"`);
      if (request.op === 'wrap') return encrypt(kek, request.key, { context: request.context });
      try {
        return await decrypt(kek, request.wrapped, { context: request.context });
      } catch (err) {
        if (CryptoError.is(err, 'UNSUPPORTED_VERSION'))
          throw new FieldsError('UNSUPPORTED_VERSION', op, 'unsupported wrapped-key version');
        if (CryptoError.is(err))
          throw new FieldsError('DECRYPTION_FAILED', op, 'wrapped key does not unwrap');
        throw err;
      }
    },
  };
}

/**
 * A local provider whose one KEK comes from an environment variable holding 32 bytes in
 * base64url (as `coffer-fields keygen` prints).
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` when the variable is missing or malformed.
 * @example const provider = await localProviderFromEnv('COFFER_FIELDS_KEK');
 */
export async function localProviderFromEnv(
  variable = 'COFFER_FIELDS_KEK',
  kekId = 'env',
  env = process.env,
): Promise<LocalProvider> {
  // The usual slip is passing the variable's value (the KEK) for its name: never echo that.
  if (typeof variable !== 'string' || looksLikeKek(variable))
    throw new FieldsError(
      'INVALID_ARGUMENT',
      'provider.local',
      'expected the name of an environment variable, got what looks like a KEK itself (not shown): pass the name, e.g. COFFER_FIELDS_KEK',
    );
  const text = env[variable];
  if (!text)
    throw new FieldsError(
      'INVALID_ARGUMENT',
      'provider.local',
      `environment variable ${variable} is not set`,
    );
  return createLocalProvider({
    [kekId]: decodeKek(text.trim(), `environment variable ${variable}`),
  });
}

/**
 * A local provider whose one KEK is read from a key file (base64url text, 32 bytes). The KEK id
 * defaults to the file's name.
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` when the file is missing or malformed, or the KEK id
 *   (by default the file name) is longer than 64 UTF-8 bytes.
 * @example const provider = await localProviderFromFile('/etc/coffer/fields.kek');
 */
export async function localProviderFromFile(
  path: string,
  kekId = path.split(/[\\/]/).pop() ?? 'file',
): Promise<LocalProvider> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    // A KEK passed where its file's path belongs is not echoed either.
    throw new FieldsError(
      'INVALID_ARGUMENT',
      'provider.local',
      looksLikeKek(path)
        ? 'cannot read key file: expected a path, got what looks like a KEK itself (not shown)'
        : `cannot read key file ${path}`,
    );
  }
  return createLocalProvider({ [kekId]: decodeKek(text.trim(), `key file ${path}`) });
}

/** Writes a new random KEK to `path` (mode 0600), refusing to overwrite. Returns nothing secret. */
export async function generateKekFile(path: string): Promise<void> {
  const kek = generateAeadKey();
  try {
    // Flushed before it is used: a KEK lost to a power cut after the data it wraps reached the
    // database would make all of that data unreadable.
    await writeFileDurably(path, `${toBase64url(kek)}\n`, { replace: false, mode: 0o600 });
  } catch (err) {
    const exists = (err as { code?: unknown }).code === 'EEXIST';
    throw new FieldsError(
      'INVALID_ARGUMENT',
      'provider.local',
      exists ? `${path} exists; refusing to overwrite a key` : `cannot write ${path}`,
    );
  } finally {
    kek.fill(0);
  }
}

/**
 * A request as the KeyProvider contract has it (as the PKCS#11 and KMIP providers check it):
 * anything else is the caller's mistake, INVALID_ARGUMENT, never a failed unwrap.
 */
function checkRequest(request: KeyOperation): void {
  const op = 'provider.local.keyOperation';
  const invalid = (message: string) => new FieldsError('INVALID_ARGUMENT', op, message);
  if (typeof request !== 'object' || request === null)
    throw invalid('"request" expected an object');
  if (request.op !== 'wrap' && request.op !== 'unwrap')
    throw invalid('"op" expected wrap or unwrap');
  if (typeof request.kekId !== 'string') throw invalid('"kekId" expected a string');
  if (!(request.context instanceof Uint8Array)) throw invalid('"context" expected a Uint8Array');
  if (request.op === 'wrap') {
    if (!(request.key instanceof Uint8Array) || request.key.length !== DATA_KEY_BYTES)
      throw invalid(`"key" expected ${DATA_KEY_BYTES} bytes`);
  } else if (!(request.wrapped instanceof Uint8Array)) {
    throw invalid('"wrapped" expected a Uint8Array');
  }
}

/** True for a KEK's text form (base64url of 32 bytes, as keygen writes it), which no message may hold. */
function looksLikeKek(text: string): boolean {
  const t = text.trim();
  if (!/^[A-Za-z0-9_-]{43}$/.test(t)) return false;
  try {
    return fromBase64url(t).length === 32;
  } catch {
    return false;
  }
}

function decodeKek(text: string, where: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = fromBase64url(text);
  } catch {
    throw new FieldsError('INVALID_ARGUMENT', 'provider.local', `${where} is not base64url`);
  }
  if (bytes.length !== 32)
    throw new FieldsError('INVALID_ARGUMENT', 'provider.local', `${where} must hold 32 bytes`);
  return bytes;
}
