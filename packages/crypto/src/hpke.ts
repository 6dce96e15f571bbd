import { Chacha20Poly1305 } from '@hpke/chacha20poly1305';
import {
  Aes128Gcm,
  Aes256Gcm,
  CipherSuite,
  DhkemX25519HkdfSha256,
  HkdfSha256,
  type RecipientContextParams,
  type SenderContextParams,
} from '@hpke/core';
import { assertBytes, CryptoError, decryptionFailed } from './errors.js';

// HPKE (RFC 9180) through @hpke/core, base mode, with the suites Coffer ships: DHKEM(X25519,
// HKDF-SHA256) and HKDF-SHA256 with each of these AEADs. The first is MLS cipher suite 1's.

export type HpkeSuite =
  | 'X25519-HKDF-SHA256-AES-128-GCM'
  | 'X25519-HKDF-SHA256-AES-256-GCM'
  | 'X25519-HKDF-SHA256-CHACHA20-POLY1305';

export const DEFAULT_HPKE_SUITE: HpkeSuite = 'X25519-HKDF-SHA256-AES-128-GCM';
export const HPKE_ENC_LENGTH = 32;

/** @internal RFC 9180 §7 identifiers of each suite. */
export const HPKE_SUITE_IDS: Readonly<
  Record<HpkeSuite, { kem: number; kdf: number; aead: number }>
> = {
  'X25519-HKDF-SHA256-AES-128-GCM': { kem: 0x20, kdf: 0x01, aead: 0x01 },
  'X25519-HKDF-SHA256-AES-256-GCM': { kem: 0x20, kdf: 0x01, aead: 0x02 },
  'X25519-HKDF-SHA256-CHACHA20-POLY1305': { kem: 0x20, kdf: 0x01, aead: 0x03 },
};

export interface HpkeOptions {
  /** Default {@link DEFAULT_HPKE_SUITE}. */
  suite?: HpkeSuite;
  /** Application info bound into the key schedule (RFC 9180 §5.1). Default empty. */
  info?: Uint8Array;
}

export interface HpkeSealOptions extends HpkeOptions {
  /** Associated data. Default empty. */
  aad?: Uint8Array;
}

/** A sender context: seal many messages to one recipient (RFC 9180 §5.2). */
export interface HpkeSender {
  /** The encapsulated key to send with the first message. */
  readonly enc: Uint8Array;
  seal(plaintext: Uint8Array, aad?: Uint8Array): Promise<Uint8Array>;
  /** Secret export (RFC 9180 §5.3). */
  export(exporterContext: Uint8Array, length: number): Promise<Uint8Array>;
}

/** A recipient context: open messages in the order they were sealed. */
export interface HpkeRecipient {
  open(ciphertext: Uint8Array, aad?: Uint8Array): Promise<Uint8Array>;
  export(exporterContext: Uint8Array, length: number): Promise<Uint8Array>;
}

const suites = new Map<HpkeSuite, CipherSuite>();

function cipherSuite(operation: string, name: HpkeSuite | undefined): CipherSuite {
  const suite = name ?? DEFAULT_HPKE_SUITE;
  let s = suites.get(suite);
  if (!s) {
    if (!Object.hasOwn(HPKE_SUITE_IDS, suite)) {
      throw new CryptoError('INVALID_ARGUMENT', operation, '"suite" is not a supported HPKE suite');
    }
    const aead = { 1: Aes128Gcm, 2: Aes256Gcm, 3: Chacha20Poly1305 }[
      HPKE_SUITE_IDS[suite].aead as 1 | 2 | 3
    ];
    s = new CipherSuite({
      kem: new DhkemX25519HkdfSha256(),
      kdf: new HkdfSha256(),
      aead: new aead(),
    });
    suites.set(suite, s);
  }
  return s;
}

function bytes(b: ArrayBuffer): Uint8Array {
  return new Uint8Array(b);
}

/** @internal `ephemeralSecret` fixes the sender's ephemeral key, for the RFC 9180 vectors only. */
export async function createHpkeSenderWith(
  recipientPublicKey: Uint8Array,
  options: HpkeOptions,
  ephemeralSecret?: Uint8Array,
): Promise<HpkeSender> {
  const op = 'hpke.createSender';
  assertBytes(op, 'recipientPublicKey', recipientPublicKey);
  const info = options.info ?? new Uint8Array(0);
  assertBytes(op, 'info', info);
  const suite = cipherSuite(op, options.suite);
  let params: SenderContextParams;
  try {
    params = { recipientPublicKey: await suite.kem.deserializePublicKey(recipientPublicKey), info };
    if (ephemeralSecret) params.ekm = await suite.kem.deriveKeyPair(ephemeralSecret);
  } catch {
    throw new CryptoError('INVALID_KEY', op, 'not a valid x25519 public key');
  }
  let ctx: Awaited<ReturnType<CipherSuite['createSenderContext']>>;
  try {
    ctx = await suite.createSenderContext(params);
  } catch {
    // Encapsulation fails only for a low-order recipient key (all-zero DH output, §7.1.4).
    throw new CryptoError('INVALID_KEY', op, 'not a valid x25519 public key');
  }
  return {
    enc: bytes(ctx.enc),
    async seal(plaintext, aad = new Uint8Array(0)) {
      assertBytes('hpke.seal', 'plaintext', plaintext);
      assertBytes('hpke.seal', 'aad', aad);
      return bytes(await ctx.seal(plaintext, aad));
    },
    export: (exporterContext, length) => exportSecret(ctx, exporterContext, length),
  };
}

/**
 * Creates an HPKE sender context for `recipientPublicKey` (an X25519 public key).
 *
 * @throws {CryptoError} `INVALID_KEY` for a malformed or low-order public key.
 * @example
 * const sender = await createHpkeSender(recipientPublicKey, { info: utf8Encode('coffer/v1/audience') });
 * const first = await sender.seal(message); // send sender.enc with it
 */
export function createHpkeSender(
  recipientPublicKey: Uint8Array,
  options: HpkeOptions = {},
): Promise<HpkeSender> {
  return createHpkeSenderWith(recipientPublicKey, options);
}

/**
 * Creates an HPKE recipient context from the recipient's 32-byte X25519 secret key and the
 * sender's `enc`.
 *
 * @throws {CryptoError} `DECRYPTION_FAILED` for an `enc` that cannot be decapsulated;
 *   `INVALID_ARGUMENT` for a secret key that is not 32 bytes.
 * @example const recipient = await createHpkeRecipient(secretKey, enc); await recipient.open(ct);
 */
export async function createHpkeRecipient(
  recipientSecretKey: Uint8Array,
  enc: Uint8Array,
  options: HpkeOptions = {},
): Promise<HpkeRecipient> {
  const op = 'hpke.createRecipient';
  assertBytes(op, 'recipientSecretKey', recipientSecretKey, 32);
  assertBytes(op, 'enc', enc);
  const info = options.info ?? new Uint8Array(0);
  assertBytes(op, 'info', info);
  const suite = cipherSuite(op, options.suite);
  if (enc.length !== HPKE_ENC_LENGTH) throw decryptionFailed(op);
  let ctx: Awaited<ReturnType<CipherSuite['createRecipientContext']>>;
  try {
    const recipientKey = await suite.kem.deserializePrivateKey(recipientSecretKey);
    const params: RecipientContextParams = { recipientKey, enc, info };
    ctx = await suite.createRecipientContext(params);
  } catch {
    throw decryptionFailed(op);
  }
  return {
    async open(ciphertext, aad = new Uint8Array(0)) {
      assertBytes('hpke.open', 'ciphertext', ciphertext);
      assertBytes('hpke.open', 'aad', aad);
      try {
        return bytes(await ctx.open(ciphertext, aad));
      } catch {
        throw decryptionFailed('hpke.open');
      }
    },
    export: (exporterContext, length) => exportSecret(ctx, exporterContext, length),
  };
}

async function exportSecret(
  ctx: { export(c: Uint8Array, l: number): Promise<ArrayBuffer> },
  exporterContext: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  assertBytes('hpke.export', 'exporterContext', exporterContext);
  if (!Number.isSafeInteger(length) || length < 1 || length > 255 * 32) {
    throw new CryptoError('INVALID_ARGUMENT', 'hpke.export', '"length" expected 1 to 8160 bytes');
  }
  return bytes(await ctx.export(exporterContext, length));
}

/**
 * Single-shot HPKE: encrypts one message to a public key (RFC 9180 §6.1, base mode).
 *
 * @throws {CryptoError} `INVALID_KEY` for a malformed or low-order public key.
 * @example const { enc, ciphertext } = await hpkeSeal(recipientPublicKey, message, { info });
 */
export async function hpkeSeal(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  options: HpkeSealOptions = {},
): Promise<{ enc: Uint8Array; ciphertext: Uint8Array }> {
  const sender = await createHpkeSender(recipientPublicKey, options);
  return { enc: sender.enc, ciphertext: await sender.seal(plaintext, options.aad) };
}

/**
 * Single-shot HPKE: decrypts what {@link hpkeSeal} made.
 *
 * @throws {CryptoError} `DECRYPTION_FAILED` for a wrong key, `enc`, info, aad or a tampered ciphertext.
 * @example const plaintext = await hpkeOpen(secretKey, enc, ciphertext, { info });
 */
export async function hpkeOpen(
  recipientSecretKey: Uint8Array,
  enc: Uint8Array,
  ciphertext: Uint8Array,
  options: HpkeSealOptions = {},
): Promise<Uint8Array> {
  const recipient = await createHpkeRecipient(recipientSecretKey, enc, options);
  return recipient.open(ciphertext, options.aad);
}
