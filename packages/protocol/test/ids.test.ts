import { toBase64url } from '@coffer/crypto';
import { expect, test } from 'vitest';
import { generateKeyPair, isId, keyPairFromSeed, newAccountId, newDeviceId } from '../src/index.js';
import { expectCode } from './_helpers.js';

test('ids are 22-character canonical b64url of 16 bytes', () => {
  const a = newAccountId();
  const d = newDeviceId();
  expect(a).toMatch(/^[A-Za-z0-9_-]{22}$/);
  expect(isId(a) && isId(d)).toBe(true);
  expect(a).not.toBe(newAccountId());
  expect(isId(toBase64url(new Uint8Array(16)))).toBe(true);
  for (const bad of [
    '',
    'alice',
    toBase64url(new Uint8Array(15)),
    toBase64url(new Uint8Array(17)),
    `${'A'.repeat(21)}B`, // non-canonical trailing bits
    `${'A'.repeat(21)}=`,
    `${'A'.repeat(20)}+A`,
    42,
    null,
    undefined,
  ]) {
    expect(isId(bad), String(bad)).toBe(false);
  }
});

test('key pairs from seeds', async () => {
  const pair = await generateKeyPair();
  expect(pair.seed).toHaveLength(32);
  expect(pair.publicKey).toHaveLength(32);
  const again = await keyPairFromSeed(pair.seed);
  expect(again.publicKey).toEqual(pair.publicKey);
  expect(again.seed).not.toBe(pair.seed); // a copy
  // RFC 8032 §7.1 test 1.
  const rfc = await keyPairFromSeed(
    Uint8Array.from(
      Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'),
    ),
  );
  expect(Buffer.from(rfc.publicKey).toString('hex')).toBe(
    'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
  );
  await expectCode(() => keyPairFromSeed(new Uint8Array(31)), 'INVALID_ARGUMENT');
});
