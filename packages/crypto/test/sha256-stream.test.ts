// Incremental SHA-256: the same digest as the one-shot sha256, however the input is split.
import { describe, expect, it } from 'vitest';
import { CryptoError, createSha256, randomBytes, sha256, toHex, utf8Encode } from '../src/index.js';

describe('createSha256', () => {
  it('matches the FIPS 180-2 "abc" vector and the empty input', () => {
    const h = createSha256();
    h.update(utf8Encode('a'));
    h.update(utf8Encode('bc'));
    expect(toHex(h.digest())).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    expect(toHex(createSha256().digest())).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });

  it('equals sha256 of the whole for any split', async () => {
    const data = randomBytes(100_003);
    for (const piece of [1, 63, 64, 65, 4096, 100_003]) {
      const h = createSha256();
      for (let i = 0; i < data.length; i += piece) h.update(data.subarray(i, i + piece));
      expect(toHex(h.digest()), String(piece)).toBe(toHex(await sha256(data)));
    }
  });

  it('refuses non-bytes and any use after the digest', () => {
    const h = createSha256();
    expect(() => h.update('x' as unknown as Uint8Array)).toThrow(CryptoError);
    h.digest();
    expect(() => h.update(new Uint8Array(1))).toThrow(CryptoError);
    expect(() => h.digest()).toThrow(CryptoError);
  });
});
