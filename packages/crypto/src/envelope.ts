import { backend } from '#backend';
import {
  type AeadKey,
  type AeadSuite,
  keyMaterial,
  MAX_KEY_ID_LENGTH,
  SUITES,
} from './aead-key.js';
import { assertBytes, CryptoError, decryptionFailed } from './errors.js';

/** spec/envelope-v1.md §1 */
export const ENVELOPE_VERSION = 0x01;
const TAG_LENGTH = 16;
const EMPTY = new Uint8Array(0);

export interface EnvelopeOptions {
  /**
   * Associated data that binds the envelope to where it belongs (row, column, record id). The
   * same bytes must be given to {@link decrypt}. Default empty.
   */
  context?: Uint8Array;
}

export interface SealOptions extends EnvelopeOptions {
  /**
   * Bytes written in front of the envelope in the returned array, for a caller's own framing
   * (a format tag): the envelope is `result.subarray(frame.length)`. Not authenticated: put what
   * must be into `context`. Saves copying the envelope into a framed buffer. Default none.
   */
  frame?: Uint8Array;
  /**
   * {@link encryptSync} only: an array to seal into, for a caller that turns each envelope into
   * something else at once (a text form) and passes the same array every time. When it is large
   * enough (and the platform seals synchronously), the result is a subarray of it — valid only
   * until the next call with that array — and no array is allocated; otherwise a new one is
   * returned, as without it. It holds only what the envelope holds (no plaintext).
   */
  into?: Uint8Array;
}

/** What an envelope says about itself before it is opened (unauthenticated until then). */
export interface EnvelopeHeader {
  readonly version: number;
  readonly suite: AeadSuite;
  readonly keyId: Uint8Array;
}

/**
 * Encrypts `plaintext` into a versioned envelope (spec/envelope-v1.md) with a fresh random nonce.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` when `key` is not from {@link importAeadKey} or an
 *   argument is not a Uint8Array.
 * @example
 * const key = await importAeadKey(raw, { id: 'k1' });
 * const envelope = await encrypt(key, utf8Encode('hello'), { context: utf8Encode('users/42/email') });
 */
export async function encrypt(
  key: AeadKey,
  plaintext: Uint8Array,
  options: SealOptions = {},
): Promise<Uint8Array> {
  return seal('envelope.encrypt', key, plaintext, options);
}

/**
 * {@link encrypt} without a promise, for callers that cannot await (an ORM's synchronous value
 * transformer, a hot loop). The same envelope, the same checks.
 *
 * @throws {CryptoError} as {@link encrypt}; `UNSUPPORTED_RUNTIME` where the platform's AEAD is
 *   asynchronous only (WebCrypto's AES-GCM in browsers): see {@link aeadIsSynchronous}.
 * @example const envelope = encryptSync(key, utf8Encode('hello'), { context });
 */
export function encryptSync(
  key: AeadKey,
  plaintext: Uint8Array,
  options: SealOptions = {},
): Uint8Array {
  const op = 'envelope.encryptSync';
  requireSync(op);
  if (options.into !== undefined) assertBytes(op, 'into', options.into);
  return seal(op, key, plaintext, options, options.into) as Uint8Array;
}

/**
 * Opens an envelope made by {@link encrypt} with the same key and context.
 *
 * @throws {CryptoError} `UNSUPPORTED_VERSION` when the envelope is not version 1;
 *   `DECRYPTION_FAILED` for anything else wrong with it (tampered, truncated, wrong key, wrong
 *   context), without saying which.
 * @example const plaintext = await decrypt(key, envelope, { context: utf8Encode('users/42/email') });
 */
export async function decrypt(
  key: AeadKey,
  envelope: Uint8Array,
  options: EnvelopeOptions = {},
): Promise<Uint8Array> {
  const op = 'envelope.decrypt';
  const opening = open(op, key, envelope, options);
  const plaintext = opening instanceof Promise ? await opening : opening;
  if (plaintext === undefined) throw decryptionFailed(op);
  return plaintext;
}

/**
 * {@link decrypt} without a promise; see {@link encryptSync}.
 *
 * @throws {CryptoError} as {@link decrypt}; `UNSUPPORTED_RUNTIME` where the platform's AEAD is
 *   asynchronous only.
 * @example const plaintext = decryptSync(key, envelope, { context });
 */
export function decryptSync(
  key: AeadKey,
  envelope: Uint8Array,
  options: EnvelopeOptions = {},
): Uint8Array {
  const op = 'envelope.decryptSync';
  requireSync(op);
  const plaintext = open(op, key, envelope, options) as Uint8Array | undefined;
  if (plaintext === undefined) throw decryptionFailed(op);
  return plaintext;
}

/**
 * Whether {@link encryptSync} and {@link decryptSync} work here: true on Node (node:crypto) and
 * with the pure-JavaScript back end, false in browsers.
 */
export function aeadIsSynchronous(): boolean {
  return backend.syncAead;
}

function requireSync(op: string): void {
  if (!backend.syncAead)
    throw new CryptoError(
      'UNSUPPORTED_RUNTIME',
      op,
      'synchronous AEAD is not available on this platform; use the async API',
    );
}

/** The envelope; synchronous whenever the back end is (spec §1, §3). */
function seal(
  op: string,
  key: AeadKey,
  plaintext: Uint8Array,
  options: SealOptions,
  into?: Uint8Array,
): Uint8Array | Promise<Uint8Array> {
  const m = keyMaterial(op, key);
  const context = options.context ?? EMPTY;
  const frame = options.frame ?? EMPTY;
  assertBytes(op, 'plaintext', plaintext);
  assertBytes(op, 'context', context);
  assertBytes(op, 'frame', frame);
  // spec §1: header = version || suite || kid_len || kid; envelope = header || nonce || ct.
  const kid = key.id;
  const headerLength = 3 + kid.length;
  const header = new Uint8Array(headerLength);
  header[0] = ENVELOPE_VERSION;
  header[1] = m.suiteId;
  header[2] = kid.length;
  header.set(kid, 3);
  const nonce = backend.randomNonce(m.nonceLength);
  // spec §3: aad = header || context. The back end seals into the envelope's own buffer, leaving
  // room in front for header and nonce, so the ciphertext is never copied.
  const aad = withContext(header, context);
  const start = frame.length;
  const sealing = backend.aeadSeal(
    m.handle,
    nonce,
    plaintext,
    aad,
    start + headerLength + nonce.length,
    into,
  );
  const finish = (out: Uint8Array): Uint8Array => {
    if (start > 0) out.set(frame, 0);
    out.set(header, start);
    out.set(nonce, start + headerLength);
    return out;
  };
  return sealing instanceof Promise ? sealing.then(finish) : finish(sealing);
}

/** The plaintext, or undefined when the envelope does not open; synchronous where the back end is. */
function open(
  op: string,
  key: AeadKey,
  envelope: Uint8Array,
  options: EnvelopeOptions,
): Uint8Array | undefined | Promise<Uint8Array | undefined> {
  const m = keyMaterial(op, key);
  const context = options.context ?? EMPTY;
  assertBytes(op, 'envelope', envelope);
  assertBytes(op, 'context', context);
  checkVersion(op, envelope);
  // spec §4 step 2: every other failure is the same DECRYPTION_FAILED.
  const kidLength = envelope[2] ?? 0xff;
  const headerLength = 3 + kidLength;
  if (
    kidLength > MAX_KEY_ID_LENGTH ||
    envelope.length < headerLength + m.nonceLength + TAG_LENGTH ||
    envelope[1] !== m.suiteId ||
    !sameBytes(envelope.subarray(3, headerLength), key.id)
  ) {
    return undefined;
  }
  const aad = withContext(envelope.subarray(0, headerLength), context);
  const nonce = envelope.subarray(headerLength, headerLength + m.nonceLength);
  return backend.aeadOpen(m.handle, nonce, envelope.subarray(headerLength + m.nonceLength), aad);
}

/**
 * Reads an envelope's suite and key id without a key, to choose the key that opens it. The
 * result is unauthenticated until {@link decrypt} succeeds.
 *
 * @throws {CryptoError} `UNSUPPORTED_VERSION` for a version other than 1; `DECRYPTION_FAILED` for
 *   a malformed header.
 * @example const { keyId } = readEnvelopeHeader(envelope); const key = keyring.get(keyId);
 */
export function readEnvelopeHeader(envelope: Uint8Array): EnvelopeHeader {
  const op = 'envelope.readHeader';
  assertBytes(op, 'envelope', envelope);
  checkVersion(op, envelope);
  const suite = suiteById(envelope[1]);
  const kidLength = envelope[2] ?? 0xff;
  if (
    !suite ||
    kidLength > MAX_KEY_ID_LENGTH ||
    envelope.length < 3 + kidLength + SUITES[suite].nonceLength + TAG_LENGTH
  ) {
    throw decryptionFailed(op);
  }
  return { version: ENVELOPE_VERSION, suite, keyId: envelope.slice(3, 3 + kidLength) };
}

/** @internal */
export function suiteById(id: number | undefined): AeadSuite | undefined {
  for (const [name, s] of Object.entries(SUITES)) if (s.id === id) return name as AeadSuite;
  return undefined;
}

/** `header || context`: the header itself (a view, no copy) when the context is empty. */
function withContext(header: Uint8Array, context: Uint8Array): Uint8Array {
  if (context.length === 0) return header;
  const aad = new Uint8Array(header.length + context.length);
  aad.set(header, 0);
  aad.set(context, header.length);
  return aad;
}

/** @internal Non-secret byte equality (key ids are public). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function checkVersion(operation: string, bytes: Uint8Array): void {
  if (bytes[0] !== ENVELOPE_VERSION) {
    throw new CryptoError(
      'UNSUPPORTED_VERSION',
      operation,
      `unsupported format version ${bytes[0] ?? 'none'}`,
    );
  }
}
