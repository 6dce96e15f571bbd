// The two sources of randomness: randomBytes (fresh from the platform's generator, for secrets)
// and randomPublicBytes (served from a block made ahead of use on Node, for public values).
import { describe, expect, test } from 'vitest';
import { CryptoError, randomBytes, randomPublicBytes, toHex } from '../src/index.js';

describe('random', () => {
  test('both give the lengths asked for, and never the same bytes twice', () => {
    for (const random of [randomBytes, randomPublicBytes]) {
      const seen = new Set<string>();
      // Across several of the pool's 4 KiB blocks.
      for (let i = 0; i < 3000; i++) {
        const bytes = random(4 + (i % 13));
        expect(bytes).toHaveLength(4 + (i % 13));
        seen.add(toHex(bytes));
      }
      expect(seen.size).toBe(3000);
      expect(random(0)).toHaveLength(0);
    }
  });

  test('public bytes are spread like random ones (every bit set about half the time)', () => {
    const ones = new Array<number>(32).fill(0);
    const n = 4000;
    for (let i = 0; i < n; i++) {
      const b = randomPublicBytes(4);
      for (let bit = 0; bit < 32; bit++) if ((b[bit >> 3]! >> (bit & 7)) & 1) ones[bit]!++;
    }
    // Binomial(4000, 1/2): 6 standard deviations is ±190.
    for (const count of ones) expect(Math.abs(count - n / 2)).toBeLessThan(190);
  });

  test('public bytes come in small pieces only; bad lengths are INVALID_ARGUMENT', () => {
    expect(randomPublicBytes(64)).toHaveLength(64);
    for (const bad of [65, -1, 1.5, Number.NaN])
      expect(() => randomPublicBytes(bad)).toThrow(CryptoError);
    expect(() => randomBytes(-1)).toThrow(CryptoError);
  });

  test('randomBytes refuses lengths past its cap alike on every back end', () => {
    // node:crypto threw its own RangeError here; the pure-JS back end allocated 2 GiB.
    for (const bad of [2 ** 31, 2 ** 40])
      expect(() => randomBytes(bad)).toThrow(
        expect.objectContaining({ name: 'CryptoError', code: 'INVALID_ARGUMENT' }),
      );
  });
});
