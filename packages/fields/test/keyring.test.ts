import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAeadKey, toBase64url } from '@coffer/crypto';
import { describe, expect, test } from 'vitest';
import {
  createFieldCipher,
  createKeyring,
  createLocalProvider,
  FieldsError,
  localProviderFromFile,
  parseKeyring,
  primaryVersion,
  retireDataKey,
  rewrapKeyring,
  rotateKey,
} from '../src/index.js';
import { codeOf, setup } from './_fixtures.js';

const ctx = { table: 't', column: 'c', rowId: 1 };

describe('keyring', () => {
  test('holds no key in the clear, round-trips through JSON', async () => {
    const { keyring, provider } = await setup();
    expect(keyring.keys.map((k) => `${k.purpose}/${k.version}`)).toEqual(['data/1', 'index/1']);
    const json = JSON.stringify(keyring);
    const again = parseKeyring(json);
    expect(again).toEqual(keyring);
    const stored = await createFieldCipher(keyring, provider).encrypt('v', ctx);
    expect(await createFieldCipher(again, provider).decrypt(stored, ctx)).toBe('v');
  });

  test('rotation adds a version; old values still open; new ones use it', async () => {
    const { keyring, provider, fields } = await setup();
    const old = await fields.encrypt('old', ctx);
    const rotated = await rotateKey(keyring, provider, 'kek1');
    expect(primaryVersion(rotated, 'data')).toBe(2);
    const next = createFieldCipher(rotated, provider);
    const fresh = await next.encrypt('new', ctx);
    expect(next.keyVersionOf(fresh)).toBe(2);
    expect(next.keyVersionOf(old)).toBe(1);
    expect(await next.decrypt(old, ctx)).toBe('old');
    expect(primaryVersion(await rotateKey(rotated, provider, 'kek1', 'index'), 'index')).toBe(2);
  });

  test('master-key rotation rewraps without touching rows', async () => {
    const { keyring, provider, fields } = await setup();
    const stored = await fields.encrypt('kept', ctx);
    const hsm = await createLocalProvider({ kek2: generateAeadKey() });
    const rewrapped = await rewrapKeyring(keyring, { from: provider, to: hsm, kekId: 'kek2' });
    expect(rewrapped.keys.every((k) => k.kekId === 'kek2')).toBe(true);
    expect(rewrapped.keys.map((k) => k.wrapped)).not.toEqual(keyring.keys.map((k) => k.wrapped));
    expect(await createFieldCipher(rewrapped, hsm).decrypt(stored, ctx)).toBe('kept');
    // The old KEK no longer opens the new keyring.
    expect(await codeOf(createFieldCipher(rewrapped, provider).decrypt(stored, ctx))).toBe(
      'UNKNOWN_KEY',
    );
  });

  test('retiring a key that rows still use is refused', async () => {
    const { keyring, provider } = await setup();
    const rotated = await rotateKey(keyring, provider, 'kek1');
    expect(await codeOf(Promise.resolve().then(() => retireDataKey(rotated, 1, 5)))).toBe(
      'KEY_IN_USE',
    );
    expect(await codeOf(Promise.resolve().then(() => retireDataKey(rotated, 2, 0)))).toBe(
      'KEY_IN_USE',
    );
    expect(await codeOf(Promise.resolve().then(() => retireDataKey(rotated, 9, 0)))).toBe(
      'UNKNOWN_KEY',
    );
    const retired = retireDataKey(rotated, 1, 0);
    expect(retired.keys.filter((k) => k.purpose === 'data').map((k) => k.version)).toEqual([2]);
  });

  test('a wrapped key moved to another entry does not unwrap', async () => {
    const { keyring, provider } = await setup();
    const rotated = await rotateKey(keyring, provider, 'kek1');
    const [d1, , d2] = rotated.keys;
    const swapped = {
      ...rotated,
      keys: [{ ...d1!, wrapped: d2!.wrapped }, ...rotated.keys.slice(1)],
    };
    expect(
      await codeOf(
        createFieldCipher(swapped, provider).decrypt(
          await createFieldCipher(rotated, provider).encrypt('x', ctx),
          ctx,
        ),
      ),
    ).toBe('ok');
    const onV1 = await createFieldCipher(keyring, provider).encrypt('x', ctx);
    expect(await codeOf(createFieldCipher(swapped, provider).decrypt(onV1, ctx))).toBe(
      'DECRYPTION_FAILED',
    );
  });

  test.each([
    ['not JSON', '{'],
    ['wrong format', '{"format":"x","keys":[]}'],
    ['no data key', '{"format":"coffer-keyring/v1","keys":[]}'],
    ['bad entry', '{"format":"coffer-keyring/v1","keys":[{"purpose":"data"}]}'],
    [
      'bad base64url',
      `{"format":"coffer-keyring/v1","keys":[{"purpose":"data","version":1,"provider":"local","kekId":"k","wrapped":"a+b","createdAt":"x"}]}`,
    ],
    [
      'duplicate',
      `{"format":"coffer-keyring/v1","keys":[${'{"purpose":"data","version":1,"provider":"local","kekId":"k","wrapped":"AA","createdAt":"x"},'.repeat(2).slice(0, -1)}]}`,
    ],
  ])('parseKeyring rejects %s', async (_name, text) => {
    const code = await codeOf(Promise.resolve().then(() => parseKeyring(text)));
    expect(['INVALID_ARGUMENT', 'UNKNOWN_KEY']).toContain(code);
  });
});

describe('local provider', () => {
  test('unknown KEK, bad KEK sizes, tampered wraps', async () => {
    const provider = await createLocalProvider({ a: generateAeadKey() });
    expect(await codeOf(createKeyring(provider, 'b'))).toBe('UNKNOWN_KEY');
    expect(await codeOf(createLocalProvider({ a: new Uint8Array(16) }))).toBe('INVALID_ARGUMENT');
    const wrapped = await provider.keyOperation({
      op: 'wrap',
      kekId: 'a',
      key: generateAeadKey(),
      context: Uint8Array.of(1),
    });
    expect(
      await codeOf(
        provider.keyOperation({ op: 'unwrap', kekId: 'a', wrapped, context: Uint8Array.of(2) }),
      ),
    ).toBe('DECRYPTION_FAILED');
    const bad = wrapped.slice();
    bad[bad.length - 1]! ^= 1;
    expect(
      await codeOf(
        provider.keyOperation({
          op: 'unwrap',
          kekId: 'a',
          wrapped: bad,
          context: Uint8Array.of(1),
        }),
      ),
    ).toBe('DECRYPTION_FAILED');
    bad[0] = 9;
    expect(
      await codeOf(
        provider.keyOperation({
          op: 'unwrap',
          kekId: 'a',
          wrapped: bad,
          context: Uint8Array.of(1),
        }),
      ),
    ).toBe('UNSUPPORTED_VERSION');
  });

  test('from the environment', async () => {
    const { localProviderFromEnv } = await import('../src/index.js');
    const kek = toBase64url(generateAeadKey());
    const provider = await localProviderFromEnv('KEK', 'env', { KEK: kek });
    expect((await createKeyring(provider, 'env')).keys.length).toBe(2);
    expect(await codeOf(localProviderFromEnv('KEK', 'env', {}))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(localProviderFromEnv('KEK', 'env', { KEK: 'short' }))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});

describe('typed errors for malformed key material', () => {
  test('a KEK id over 64 bytes is INVALID_ARGUMENT, also as a key file name', async () => {
    expect(await codeOf(createLocalProvider({ ['k'.repeat(65)]: generateAeadKey() }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await codeOf(createLocalProvider({ '': generateAeadKey() }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(createLocalProvider({ ['é'.repeat(32)]: generateAeadKey() }))).toBe('ok');
    const dir = mkdtempSync(join(tmpdir(), 'coffer-fields-kek-'));
    try {
      const path = join(dir, `${'production-fields-master-key-'.repeat(3)}.kek`);
      writeFileSync(path, toBase64url(generateAeadKey()));
      const err = await localProviderFromFile(path).catch((e: unknown) => e);
      expect(FieldsError.is(err, 'INVALID_ARGUMENT')).toBe(true);
      expect((err as Error).message).toContain('kekId');
      expect(await codeOf(localProviderFromFile(path, 'short'))).toBe('ok');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a malformed wrapped key in a keyring built in code is INVALID_ARGUMENT', async () => {
    const { keyring, provider } = await setup();
    const broken = {
      ...keyring,
      keys: keyring.keys.map((k) =>
        k.purpose === 'data' ? { ...k, wrapped: 'not base64url!' } : k,
      ),
    };
    const fields = createFieldCipher(broken, provider);
    const err = await fields.encrypt('x', ctx).catch((e: unknown) => e);
    expect(FieldsError.is(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain('data key version 1');
  });
});

describe('lazy re-encryption on write', () => {
  test('refresh re-seals only values under an older key, keeping their form', async () => {
    const { keyring, provider, fields } = await setup();
    const oldText = await fields.encrypt('a', ctx);
    const oldBinary = await fields.encrypt('b', ctx, { format: 'binary' });
    const next = createFieldCipher(await rotateKey(keyring, provider, 'kek1'), provider);
    const freshText = await next.refresh(oldText, ctx);
    const freshBinary = await next.refresh(oldBinary, ctx);
    expect([next.keyVersionOf(freshText), next.keyVersionOf(freshBinary)]).toEqual([2, 2]);
    expect(typeof freshText).toBe('string');
    expect(freshBinary).toBeInstanceOf(Uint8Array);
    expect(await next.decrypt(freshBinary, ctx)).toBe('b');
    expect(await next.refresh(freshText, ctx)).toBe(freshText);
    expect(await codeOf(next.refresh('plain', ctx))).toBe('PLAINTEXT_VALUE');
    expect(
      await next.decrypt(await next.refresh('plain', ctx, { allowPlaintext: true }), ctx),
    ).toBe('plain');
  });

  test('refresh keeps the padded length: rotation never reveals what padding hid', async () => {
    const { keyring, provider, fields } = await setup();
    const text = await fields.encrypt('a@b.c', ctx, { padTo: 256 });
    const bytes = await fields.encrypt(Uint8Array.of(1, 2), ctx, { format: 'binary', padTo: 64 });
    const short = await fields.encrypt('a@b.c', ctx);
    expect(text.length).toBe(392);
    const next = createFieldCipher(await rotateKey(keyring, provider, 'kek1'), provider);
    const fresh = (await next.refresh(text, ctx)) as string;
    expect(next.keyVersionOf(fresh)).toBe(2);
    expect(fresh.length).toBe(text.length);
    expect(await next.decrypt(fresh, ctx)).toBe('a@b.c');
    const freshBytes = (await next.refresh(bytes, ctx)) as Uint8Array;
    expect(freshBytes.length).toBe(bytes.length);
    expect(await next.decrypt(freshBytes, ctx)).toEqual(Uint8Array.of(1, 2));
    // A smaller padTo now does not shorten it; a larger one rounds it up; unpadded stays so.
    expect(((await next.refresh(text, ctx, { padTo: 16 })) as string).length).toBe(392);
    expect(((await next.refresh(text, ctx, { padTo: 384 })) as string).length).toBe(563);
    expect(((await next.refresh(short, ctx)) as string).length).toBe(short.length);
  });
});
