import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAeadKey, toBase64url } from '@coffer/crypto';
import { afterAll, expect, test } from 'vitest';
import { type CliIo, main } from '../src/cli.js';
import { FieldsError, localProviderFromEnv, localProviderFromFile } from '../src/index.js';

// The usual slip with a KEK kept in the environment is passing its value where its name is
// expected: `--kek-env "$COFFER_FIELDS_KEK"`, `localProviderFromEnv(process.env.KEK)`. The
// error must say what went wrong without printing the key to a terminal or a CI log.

const dir = mkdtempSync(join(tmpdir(), 'coffer-fields-kek-msg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(argv: string[], env: Record<string, string> = {}) {
  let out = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { isTTY: false, columns: 100, write: (s: string) => (out += s) },
    env,
  };
  return { code: await main(argv, io), out };
}

async function messageOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect(FieldsError.is(err, 'INVALID_ARGUMENT')).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected a rejection');
}

// Random KEKs and fixed ones of every leading shape: one beginning with '-' reads as an option on
// a command line (a usage error, exit 2), the others reach the provider (exit 1).
const keks = [
  ...Array.from({ length: 16 }, () => toBase64url(generateAeadKey())),
  toBase64url(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xf8 : i))), // '-…'
  toBase64url(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xfc : i))), // '_…'
  toBase64url(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xd0 : i))), // '0…'
];

test('localProviderFromEnv and localProviderFromFile never echo a KEK given as a name', async () => {
  for (const kek of keks) {
    const env = await messageOf(localProviderFromEnv(kek, 'env', {}));
    expect(env).not.toContain(kek);
    expect(env).toMatch(/name/);
    const file = await messageOf(localProviderFromFile(kek, 'file'));
    expect(file).not.toContain(kek);
  }
  // Real names are still named.
  expect(await messageOf(localProviderFromEnv('FIELDS_KEK', 'env', {}))).toContain('FIELDS_KEK');
  expect(await messageOf(localProviderFromFile(join(dir, 'none.kek')))).toContain('none.kek');
});

test('coffer-fields: a KEK passed to --kek-env or --kek-file is not printed', async () => {
  for (const kek of keks) {
    for (const argv of [
      ['init', '--keyring', join(dir, 'k.json'), '--kek-env', kek],
      ['init', '--keyring', join(dir, 'k.json'), '--kek-file', kek],
      ['init', '--keyring', join(dir, 'k.json'), '--kek-env', kek, '--kek-id', 'k1'],
    ]) {
      const run = await cli(argv);
      expect(run.code).toBe(kek.startsWith('-') ? 2 : 1);
      expect(run.out).not.toContain(kek);
      expect(run.out).toContain('coffer-fields: error:');
      expect(run.out).toMatch(kek.startsWith('-') ? /needs a value/ : /looks like a KEK/);
    }
  }
});
