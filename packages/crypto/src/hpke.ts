import { Chacha20Poly1305 } from '@hpke/chacha20poly1305';
import {
  Aes128Gcm,
  Aes256Gcm,
  CipherSuite,
  DhkemX25519HkdfSha256,
  HkdfSha256,
  type SenderContextParams,
} from '@hpke/core';
import { concatBytes } from './encoding.js';
import { assertBytes, CryptoError, decryptionFailed } from './errors.js';
import { hkdfExpand, hkdfExtract } from './hkdf.js';
import { importKeyAgreementKey, x25519 } from './key-agreement.js';
import { createRawAead, type RawAead } from './raw-aead.js';

// HPKE (RFC 9180), base mode, with the suites Coffer ships: DHKEM(X25519, HKDF-SHA256) and
// HKDF-SHA256 with each of these AEADs. The first is MLS cipher suite 1's. The sender runs on
// @hpke/core; the recipient is composed below from Coffer's own primitives (see there why).

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
  const name = options.suite ?? DEFAULT_HPKE_SUITE;
  cipherSuite(op, name); // rejects an unknown suite with the same error as the sender
  if (enc.length !== HPKE_ENC_LENGTH) throw decryptionFailed(op);
  let ctx: RecipientContext;
  try {
    ctx = await setupBaseR(name, recipientSecretKey, enc, info);
  } catch {
    throw decryptionFailed(op);
  }
  let seq = 0;
  let queue: Promise<unknown> = Promise.resolve();
  return {
    async open(ciphertext, aad = new Uint8Array(0)) {
      assertBytes('hpke.open', 'ciphertext', ciphertext);
      assertBytes('hpke.open', 'aad', aad);
      // §5.2: messages open in sequence; the counter moves only when one opens.
      const run = queue.then(async () => {
        // nonce = base_nonce XOR I2OSP(seq, Nn); seq stays far below 2^53 (one per message).
        if (seq >= Number.MAX_SAFE_INTEGER)
          throw new CryptoError('LIMIT_EXCEEDED', 'hpke.open', 'message limit reached');
        const nonce = ctx.baseNonce.slice();
        for (let i = nonce.length - 1, n = seq; n > 0; i--, n = Math.floor(n / 256)) {
          nonce[i] = (nonce[i] ?? 0) ^ (n % 256);
        }
        let plaintext: Uint8Array;
        try {
          plaintext = await ctx.aead.open(nonce, ciphertext, aad);
        } catch {
          throw decryptionFailed('hpke.open');
        }
        seq++;
        return plaintext;
      });
      queue = run.catch(() => undefined);
      return run;
    },
    async export(exporterContext, length) {
      assertBytes('hpke.export', 'exporterContext', exporterContext);
      if (!Number.isSafeInteger(length) || length < 1 || length > 255 * 32) {
        throw new CryptoError(
          'INVALID_ARGUMENT',
          'hpke.export',
          '"length" expected 1 to 8160 bytes',
        );
      }
      // §5.3: Export(exporter_context, L) = LabeledExpand(exporter_secret, "sec", exporter_context, L)
      return labeledExpand(ctx.suiteId, ctx.exporterSecret, 'sec', exporterContext, length);
    },
  };
}

// The recipient side is composed here from Coffer's own X25519, HKDF and raw AEAD (RFC 9180 §4,
// §4.1, §5.1, §5.2, §5.3, base mode only) rather than run through @hpke/core, which does each step
// as a WebCrypto job: on Node 20 one open cost ~1.3 ms that way, most of it waiting on the thread
// pool and importing the key as PKCS#8, and MLS opens one per commit per member. The sender side
// (and every other suite feature) stays on @hpke/core. The RFC 9180 vectors check both sides.

interface RecipientContext {
  suiteId: Uint8Array;
  aead: RawAead;
  baseNonce: Uint8Array;
  exporterSecret: Uint8Array;
}

const HPKE_V1 = new TextEncoder().encode('HPKE-v1');
// §4.1: DHKEM(X25519, HKDF-SHA256) is KEM 0x0020; Nsecret = Nh = 32, Nn = 12.
const KEM_SUITE_ID = Uint8Array.of(0x4b, 0x45, 0x4d, 0x00, 0x20); // "KEM" || I2OSP(0x0020, 2)
const NH = 32;
const NN = 12;
const AEAD_OF: Record<
  number,
  { name: 'AES-128-GCM' | 'AES-256-GCM' | 'ChaCha20-Poly1305'; nk: number }
> = {
  1: { name: 'AES-128-GCM', nk: 16 },
  2: { name: 'AES-256-GCM', nk: 32 },
  3: { name: 'ChaCha20-Poly1305', nk: 32 },
};

const ascii = (label: string) => new TextEncoder().encode(label);

/** §4: LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm). */
function labeledExtract(
  suiteId: Uint8Array,
  salt: Uint8Array,
  label: string,
  ikm: Uint8Array,
): Promise<Uint8Array> {
  return hkdfExtract('SHA-256', salt, concatBytes(HPKE_V1, suiteId, ascii(label), ikm));
}

/** §4: LabeledExpand(prk, label, info, L) = Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L). */
function labeledExpand(
  suiteId: Uint8Array,
  prk: Uint8Array,
  label: string,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  const prefix = Uint8Array.of(length >> 8, length & 0xff);
  return hkdfExpand(
    'SHA-256',
    prk,
    concatBytes(prefix, HPKE_V1, suiteId, ascii(label), info),
    length,
  );
}

/** §5.1.1 SetupBaseR: Decap (§4.1) and KeyScheduleR with mode_base, empty psk and psk_id. */
async function setupBaseR(
  name: HpkeSuite,
  secretKey: Uint8Array,
  enc: Uint8Array,
  info: Uint8Array,
): Promise<RecipientContext> {
  const ids = HPKE_SUITE_IDS[name];
  const aeadParams = AEAD_OF[ids.aead];
  if (!aeadParams) throw new Error('unsupported aead');
  // Decap(enc, skR): dh = DH(skR, pkE), refused when all zero (§7.1.4, inside x25519);
  // kem_context = enc || pkRm; shared_secret = ExtractAndExpand(dh, kem_context).
  const key = await importKeyAgreementKey(secretKey);
  const dh = await x25519(key, enc);
  const eaePrk = await labeledExtract(KEM_SUITE_ID, new Uint8Array(0), 'eae_prk', dh);
  dh.fill(0);
  const kemContext = concatBytes(enc, key.publicKey);
  const sharedSecret = await labeledExpand(KEM_SUITE_ID, eaePrk, 'shared_secret', kemContext, NH);
  eaePrk.fill(0);
  // KeySchedule: suite_id = "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2).
  const suiteId = Uint8Array.of(0x48, 0x50, 0x4b, 0x45, 0, ids.kem, 0, ids.kdf, 0, ids.aead);
  const empty = new Uint8Array(0);
  const pskIdHash = await labeledExtract(suiteId, empty, 'psk_id_hash', empty);
  const infoHash = await labeledExtract(suiteId, empty, 'info_hash', info);
  const keyScheduleContext = concatBytes(Uint8Array.of(0), pskIdHash, infoHash);
  const secret = await labeledExtract(suiteId, sharedSecret, 'secret', empty);
  sharedSecret.fill(0);
  const aeadKey = await labeledExpand(suiteId, secret, 'key', keyScheduleContext, aeadParams.nk);
  const baseNonce = await labeledExpand(suiteId, secret, 'base_nonce', keyScheduleContext, NN);
  const exporterSecret = await labeledExpand(suiteId, secret, 'exp', keyScheduleContext, NH);
  secret.fill(0);
  const aead = await createRawAead(aeadKey, aeadParams.name);
  aeadKey.fill(0);
  return { suiteId, aead, baseNonce, exporterSecret };
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
