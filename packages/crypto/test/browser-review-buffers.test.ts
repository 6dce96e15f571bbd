// Inputs in shared or resizable memory. Every function takes any Uint8Array (assertBytes checks
// nothing more), and node:crypto and @noble read such views like any other. WebCrypto refuses
// them (WebIDL BufferSource: no SharedArrayBuffer, no resizable ArrayBuffer), so the web back end
// used to return a wrong verdict where it catches (verify false for a valid signature, an
// authentic envelope DECRYPTION_FAILED, a good peer key INVALID_KEY) and threw an untyped
// TypeError where it does not (sign, encrypt). Shared memory needs no cross-origin isolation to
// exist: a shared WebAssembly.Memory is one in any page.
import { describe, expect, test } from 'vitest';
import {
  createRawAead,
  decrypt,
  encrypt,
  generateAeadKey,
  generateKeyAgreementKeyPair,
  generateSigningKeyPair,
  hmac,
  importAeadKey,
  importKeyAgreementKey,
  importSigningKey,
  importVerifyingKey,
  randomBytes,
  sha256,
  sha512,
  sign,
  streamDecrypt,
  streamEncrypt,
  toHex,
  utf8Encode,
  verify,
  x25519,
} from '../src/index.js';

/** A copy of `bytes` in shared memory, at a non-zero offset. */
function shared(bytes: Uint8Array): Uint8Array {
  const size = bytes.length + 8;
  const sab: ArrayBufferLike =
    typeof SharedArrayBuffer === 'function'
      ? new SharedArrayBuffer(size)
      : new WebAssembly.Memory({
          initial: Math.ceil(size / 65536),
          maximum: Math.ceil(size / 65536),
          shared: true,
        }).buffer;
  const view = new Uint8Array(sab, 8, bytes.length);
  view.set(bytes);
  return view;
}

/** A copy of `bytes` in a resizable ArrayBuffer, at a non-zero offset. */
function resizable(bytes: Uint8Array): Uint8Array {
  const Resizable = ArrayBuffer as unknown as new (
    length: number,
    options: { maxByteLength: number },
  ) => ArrayBuffer;
  const ab = new Resizable(bytes.length + 8, { maxByteLength: bytes.length + 64 });
  const view = new Uint8Array(ab, 8, bytes.length);
  view.set(bytes);
  return view;
}

const KINDS = [
  ['shared', shared],
  ['resizable', resizable],
] as const;

describe.each(KINDS)('inputs in %s memory give the same answers as any other', (_, into) => {
  test('ed25519: sign, verify, key import', async () => {
    const { secretKey, publicKey } = await generateSigningKeyPair();
    const key = await importSigningKey(into(secretKey));
    expect(toHex(key.publicKey)).toBe(toHex(publicKey));
    const message = randomBytes(100);
    const signature = await sign(key, message);
    expect(toHex(await sign(key, into(message)))).toBe(toHex(signature));
    expect(await verify(publicKey, into(message), signature)).toBe(true);
    expect(await verify(publicKey, message, into(signature))).toBe(true);
    expect(await verify(into(publicKey), message, signature)).toBe(true);
    expect(await verify(await importVerifyingKey(into(publicKey)), message, signature)).toBe(true);
  });

  test('x25519', async () => {
    const a = await generateKeyAgreementKeyPair();
    const b = await generateKeyAgreementKeyPair();
    const mine = await importKeyAgreementKey(into(a.secretKey));
    const expected = toHex(await x25519(await importKeyAgreementKey(a.secretKey), b.publicKey));
    expect(toHex(await x25519(mine, into(b.publicKey)))).toBe(expected);
  });

  test('envelopes of both suites, and streams', async () => {
    for (const suite of ['AES-256-GCM', 'XChaCha20-Poly1305'] as const) {
      const raw = generateAeadKey();
      const key = await importAeadKey(into(raw), { suite, id: into(utf8Encode('k')) });
      const plaintext = randomBytes(3000);
      const context = utf8Encode('records/1');
      const sealed = await encrypt(key, into(plaintext), { context: into(context) });
      expect(toHex(await decrypt(key, sealed, { context }))).toBe(toHex(plaintext));
      expect(toHex(await decrypt(key, into(sealed), { context: into(context) }))).toBe(
        toHex(plaintext),
      );
      const stream = await streamEncrypt(key, into(plaintext), { chunkSize: 1024, context });
      expect(toHex(await streamDecrypt(key, into(stream), { context }))).toBe(toHex(plaintext));
    }
  });

  test('raw AEADs', async () => {
    for (const [algorithm, length] of [
      ['AES-128-GCM', 16],
      ['AES-256-GCM', 32],
      ['ChaCha20-Poly1305', 32],
    ] as const) {
      const keyBytes = randomBytes(length);
      const aead = await createRawAead(into(keyBytes), algorithm);
      const nonce = randomBytes(12);
      const plaintext = randomBytes(50);
      const aad = randomBytes(7);
      const sealed = await aead.seal(nonce, plaintext, aad);
      expect(toHex(await aead.seal(into(nonce), into(plaintext), into(aad)))).toBe(toHex(sealed));
      expect(toHex(await aead.open(into(nonce), into(sealed), into(aad)))).toBe(toHex(plaintext));
    }
  });

  test('hashes and HMACs, small and large', async () => {
    for (const size of [64, 10_000]) {
      const data = randomBytes(size);
      const key = randomBytes(32);
      expect(toHex(await sha256(into(data)))).toBe(toHex(await sha256(data)));
      expect(toHex(await sha512(into(data)))).toBe(toHex(await sha512(data)));
      expect(toHex(await hmac('SHA-256', into(key), into(data)))).toBe(
        toHex(await hmac('SHA-256', key, data)),
      );
    }
  });
});
