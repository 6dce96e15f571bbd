import { describe, expect, test } from 'vitest';
import {
  decrypt,
  encrypt,
  generateAeadKey,
  generateKeyAgreementKeyPair,
  generateSigningKeyPair,
  hpkeOpen,
  hpkeSeal,
  importAeadKey,
  importKeyAgreementKey,
  importSigningKey,
  sign,
  streamDecrypt,
  streamEncrypt,
  utf8Encode,
  verify,
  x25519,
} from '../src/index.js';

describe('smoke', () => {
  test('envelope', async () => {
    const key = await importAeadKey(generateAeadKey(), { id: 'k1' });
    const env = await encrypt(key, utf8Encode('hi'));
    expect(await decrypt(key, env)).toEqual(utf8Encode('hi'));
  });
  test('stream', async () => {
    const key = await importAeadKey(generateAeadKey());
    const data = new Uint8Array(5000).fill(7);
    const s = await streamEncrypt(key, data, { chunkSize: 1024 });
    expect(await streamDecrypt(key, s)).toEqual(data);
  });
  test('sign', async () => {
    const { secretKey, publicKey } = await generateSigningKeyPair();
    const k = await importSigningKey(secretKey);
    expect(k.publicKey).toEqual(publicKey);
    const sig = await sign(k, utf8Encode('m'));
    expect(await verify(publicKey, utf8Encode('m'), sig)).toBe(true);
    expect(await verify(publicKey, utf8Encode('n'), sig)).toBe(false);
  });
  test('x25519 + hpke', async () => {
    const a = await generateKeyAgreementKeyPair();
    const b = await generateKeyAgreementKeyPair();
    const s1 = await x25519(await importKeyAgreementKey(a.secretKey), b.publicKey);
    const s2 = await x25519(await importKeyAgreementKey(b.secretKey), a.publicKey);
    expect(s1).toEqual(s2);
    const { enc, ciphertext } = await hpkeSeal(b.publicKey, utf8Encode('x'));
    expect(await hpkeOpen(b.secretKey, enc, ciphertext)).toEqual(utf8Encode('x'));
  });
});
