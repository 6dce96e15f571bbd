import { randomBytes } from '@coffer/crypto';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { base32Encode } from '../src/_base32.js';
import {
  generateKeyPair,
  generateLinkCode,
  LINK_QR_PREFIX,
  type LinkCode,
  type LinkRequest,
  type LinkResponse,
  MAX_LINK_MESSAGE_LENGTH,
  newAccountId,
  newDeviceId,
  normalizeUsername,
  openLinkRequest,
  openLinkResponse,
  parseLinkCode,
  sealLinkRequest,
  sealLinkResponse,
} from '../src/index.js';
import { codeOf, expectCode, flipBit } from './_helpers.js';

async function request(): Promise<LinkRequest> {
  return {
    deviceId: newDeviceId(),
    signingKey: (await generateKeyPair()).publicKey,
    name: 'Pixel 8 — work',
  };
}
function response(): LinkResponse {
  return {
    accountId: newAccountId(),
    username: 'Alice.Smith',
    identitySeed: randomBytes(32),
    manifestSeq: 7,
  };
}

describe('link code (spec §6)', () => {
  test('text, QR, link id and secret', () => {
    const code = generateLinkCode();
    expect(code.text).toMatch(/^([0-9A-HJKMNP-TV-Z]{4}-){5}[0-9A-HJKMNP-TV-Z]{4}$/);
    expect(code.qr).toBe(LINK_QR_PREFIX + code.text.replaceAll('-', ''));
    expect(code.linkId).toBe(code.text.replaceAll('-', '').slice(0, 8));
    expect(code.secret).toHaveLength(10);
    expect(parseLinkCode(code.text)).toEqual(code);
    expect(parseLinkCode(code.qr)).toEqual(code);
    expect(parseLinkCode(code.text.toLowerCase().replaceAll('-', ' '))).toEqual(code);
    expect(parseLinkCode(code.qr.toUpperCase())).toEqual(code);
  });

  test('round trip of any 15 bytes (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 15, maxLength: 15 }), (bytes) => {
        const code = parseLinkCode(base32Encode(bytes));
        expect(code.secret).toEqual(bytes.subarray(5));
        expect(code.linkId).toBe(base32Encode(bytes.subarray(0, 5)));
      }),
    );
  });

  test('parsing refuses other lengths, symbols and QR versions', async () => {
    const code = generateLinkCode();
    const symbols = code.qr.slice(LINK_QR_PREFIX.length);
    for (const bad of [
      '',
      symbols.slice(1),
      `${symbols}0`,
      `${symbols.slice(1)}U`,
      `coffer-link:1:${symbols.slice(2)}`,
      `coffer-link::${symbols}`,
      `x${code.qr}`,
    ]) {
      await expectCode(() => parseLinkCode(bad), 'INVALID_LINK_CODE');
    }
    await expectCode(() => parseLinkCode(`coffer-link:2:${symbols}`), 'UNSUPPORTED_VERSION');
    await expectCode(() => parseLinkCode(null as never), 'INVALID_ARGUMENT');
  });
});

describe('link messages (spec §6)', () => {
  test('request and response round trip', async () => {
    const code = generateLinkCode();
    const req = await request();
    const sealedReq = await sealLinkRequest(code, req);
    expect(await openLinkRequest(parseLinkCode(code.text), sealedReq)).toEqual(req);
    const res = response();
    const sealedRes = await sealLinkResponse(code, res);
    expect(await openLinkResponse(parseLinkCode(code.qr), sealedRes)).toEqual(res);
  });

  test('wrong code, crossed directions, tampering and oversize are DECRYPTION_FAILED', async () => {
    const code = generateLinkCode();
    const other = generateLinkCode();
    const sealedReq = await sealLinkRequest(code, await request());
    const sealedRes = await sealLinkResponse(code, response());
    await expectCode(() => openLinkRequest(other, sealedReq), 'DECRYPTION_FAILED');
    await expectCode(() => openLinkResponse(other, sealedRes), 'DECRYPTION_FAILED');
    // Same secret, another link id (the server relabelling a link).
    const relabelled: LinkCode = { ...code, linkId: other.linkId };
    await expectCode(() => openLinkRequest(relabelled, sealedReq), 'DECRYPTION_FAILED');
    await expectCode(() => openLinkResponse(code, sealedReq), 'DECRYPTION_FAILED');
    await expectCode(() => openLinkRequest(code, sealedRes), 'DECRYPTION_FAILED');
    // Every bit, the envelope's version byte included: one answer for all.
    for (let bit = 0; bit < sealedReq.length * 8; bit += 3) {
      const flipped = flipBit(sealedReq, bit);
      expect(await codeOf(() => openLinkRequest(code, flipped)), `bit ${bit}`).toBe(
        'DECRYPTION_FAILED',
      );
    }
    await expectCode(() => openLinkRequest(code, sealedReq.subarray(0, 40)), 'DECRYPTION_FAILED');
    await expectCode(
      () => openLinkRequest(code, new Uint8Array(MAX_LINK_MESSAGE_LENGTH + 1)),
      'DECRYPTION_FAILED',
    );
    await expectCode(() => openLinkRequest(code, new Uint8Array(0)), 'DECRYPTION_FAILED');
  });

  test('caller mistakes are INVALID_ARGUMENT', async () => {
    const code = generateLinkCode();
    const req = await request();
    const badRequests: Partial<LinkRequest>[] = [
      { deviceId: 'x' },
      { signingKey: new Uint8Array(31) },
      { name: '' },
      { name: 'x'.repeat(65) },
      { name: 'tab\there' },
    ];
    for (const change of badRequests) {
      await expectCode(() => sealLinkRequest(code, { ...req, ...change }), 'INVALID_ARGUMENT');
    }
    const res = response();
    const badResponses: Partial<LinkResponse>[] = [
      { accountId: 'x' },
      { username: 'a' },
      { username: 'bad name' },
      { identitySeed: new Uint8Array(16) },
      { manifestSeq: 0 },
      { manifestSeq: 2 ** 32 },
    ];
    for (const change of badResponses) {
      await expectCode(() => sealLinkResponse(code, { ...res, ...change }), 'INVALID_ARGUMENT');
    }
    await expectCode(
      () => sealLinkRequest({ ...code, secret: new Uint8Array(9) }, req),
      'INVALID_ARGUMENT',
    );
    await expectCode(
      () => sealLinkRequest({ ...code, linkId: 'UUUUUUUU' }, req),
      'INVALID_ARGUMENT',
    );
    await expectCode(() => openLinkRequest(code, 'x' as never), 'INVALID_ARGUMENT');
  });

  test('the error message never carries the code or the secret', async () => {
    const code = generateLinkCode();
    try {
      await openLinkRequest(code, new Uint8Array(50));
    } catch (err) {
      expect((err as Error).message).not.toContain(code.linkId);
      expect((err as Error).message).toBe('link.openRequest: decryption failed');
    }
  });
});

describe('normalizeUsername (spec §1)', () => {
  test('rules', () => {
    expect(normalizeUsername('  Alice.Smith ')).toBe('alice.smith');
    expect(normalizeUsername('abc')).toBe('abc');
    expect(normalizeUsername('a'.repeat(32))).toBe('a'.repeat(32));
    for (const bad of ['ab', 'a'.repeat(33), '.abc', 'abc-', 'a b c', 'ålice', '', 42, null]) {
      expect(normalizeUsername(bad), String(bad)).toBeNull();
    }
  });
});
