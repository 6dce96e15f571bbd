import { sha256 } from '@coffer/crypto';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { base32Encode, base32Pack, base32Symbols, CROCKFORD_ALPHABET } from '../src/_base32.js';
import {
  generateRecoveryCode,
  ProtocolError,
  parseRecoveryCode,
  RECOVERY_CODE_LENGTH,
  recoveryProof,
  recoveryVerifier,
} from '../src/index.js';
import { expectCode } from './_helpers.js';

describe('Crockford base32', () => {
  test('known values', () => {
    expect(base32Encode(new Uint8Array(5))).toBe('00000000');
    expect(base32Encode(new Uint8Array(5).fill(0xff))).toBe('ZZZZZZZZ');
    // 0x0842108421 is 00001 repeated: every symbol is "1".
    expect(base32Encode(Uint8Array.of(0x08, 0x42, 0x10, 0x84, 0x21))).toBe('11111111');
    expect(base32Encode(Uint8Array.of(0x00, 0x44, 0x32, 0x14, 0xc7))).toBe('01234567');
    expect(CROCKFORD_ALPHABET).toHaveLength(32);
    expect(CROCKFORD_ALPHABET).not.toMatch(/[ILOU]/);
  });

  test('round trip (fast-check)', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 0, max: 8 })
          .chain((n) => fc.uint8Array({ minLength: 5 * n, maxLength: 5 * n })),
        (bytes) => {
          const text = base32Encode(bytes);
          expect(text).toHaveLength((bytes.length * 8) / 5);
          expect(base32Pack(base32Symbols(text, 1000)!)).toEqual(bytes);
        },
      ),
    );
  });
});

describe('recovery code (spec §4)', () => {
  test('display form and round trip (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 20, maxLength: 20 }), (bytes) => {
        const text = parseRecoveryCode(base32Encode(bytes)).text;
        expect(text).toMatch(/^([0-9A-HJKMNP-TV-Z]{4}-){7}[0-9A-HJKMNP-TV-Z]{4}$/);
        expect(parseRecoveryCode(text).bytes).toEqual(bytes);
      }),
    );
    const code = generateRecoveryCode();
    expect(code.bytes).toHaveLength(RECOVERY_CODE_LENGTH);
    expect(parseRecoveryCode(code.text)).toEqual(code);
  });

  test('accepts what people type: lower case, spaces, dashes, O/I/L', () => {
    const code = parseRecoveryCode('0123-4567-89AB-CDEF-GHJK-MNPQ-RSTV-WXYZ');
    for (const typed of [
      '0123456789abcdefghjkmnpqrstvwxyz',
      '  0123 4567 89ab cdef ghjk mnpq rstv wxyz \n',
      '0123-4567-89AB-CDEF\tGHJK-MNPQ-RSTV-WXYZ\r\n',
      'O123-4567-89AB-CDEF-GHJK-MNPQ-RSTV-WXYZ',
      'o123 4567 89ab cdef ghjk mnpq rstv wxyz',
      '0-1-2-3-4-5-6-7-8-9-A-B-C-D-E-F-G-H-J-K-M-N-P-Q-R-S-T-V-W-X-Y-Z',
    ]) {
      expect(parseRecoveryCode(typed).bytes, typed).toEqual(code.bytes);
    }
    const ones = parseRecoveryCode('1111-1111-1111-1111-1111-1111-1111-1111');
    expect(parseRecoveryCode('IiLl-1111-1111-1111-1111-1111-1111-1111').bytes).toEqual(ones.bytes);
  });

  test('refuses wrong lengths and symbols outside the alphabet, without echoing them', async () => {
    const good = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    const bad = [
      '',
      good.slice(1),
      `${good}0`,
      `${good.slice(1)}U`,
      `${good.slice(1)}u`,
      `${good.slice(1)}*`,
      `${good.slice(1)}_`,
      `${good.slice(1)}é`,
      `${good.slice(1)}０`, // fullwidth digit
      `${good.slice(0, 16)}.${good.slice(16)}`,
      `${' '.repeat(300)}${good}`,
    ];
    for (const text of bad) {
      let err: unknown;
      try {
        parseRecoveryCode(text);
      } catch (e) {
        err = e;
      }
      expect(ProtocolError.is(err, 'INVALID_RECOVERY_CODE'), JSON.stringify(text)).toBe(true);
      if (text.length > 8) expect((err as Error).message).not.toContain(text.trim().slice(0, 8));
    }
    await expectCode(() => parseRecoveryCode(42 as never), 'INVALID_ARGUMENT');
  });

  test('proof and verifier', async () => {
    const code = generateRecoveryCode();
    const proof = await recoveryProof(code);
    expect(proof).toHaveLength(32);
    expect(await recoveryProof(parseRecoveryCode(code.text.toLowerCase()))).toEqual(proof);
    expect(await recoveryProof(generateRecoveryCode())).not.toEqual(proof);
    expect(await recoveryVerifier(proof)).toEqual(await sha256(proof));
    await expectCode(() => recoveryVerifier(new Uint8Array(31)), 'INVALID_ARGUMENT');
    await expectCode(
      () => recoveryProof({ text: '', bytes: new Uint8Array(16) }),
      'INVALID_ARGUMENT',
    );
  });
});
