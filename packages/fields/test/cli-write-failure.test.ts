// The fields CLI when the keyring file cannot be replaced (a full disk, a read-only mount):
// forced by failing the rename into place, since root here may write anywhere.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test, vi } from 'vitest';

const failRenames = vi.hoisted(() => ({ on: false }));
vi.mock('node:fs/promises', async (original) => {
  const fs = await original<typeof import('node:fs/promises')>();
  return {
    ...fs,
    rename: async (from: string, to: string) => {
      if (failRenames.on)
        throw Object.assign(new Error(`EROFS: read-only, rename '${from}'`), { code: 'EROFS' });
      return fs.rename(from, to);
    },
  };
});

const { main } = await import('../src/cli.js');

async function cli(argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { isTTY: false, columns: 100, write: (s: string) => (stderr += s) },
    env: {},
  });
  return { code, stdout, stderr };
}

describe('coffer-fields rotate and rewrap when the keyring cannot be written', () => {
  test('a typed error naming the file and the cause; the keyring and directory unchanged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-fields-rofs-'));
    const kek = join(dir, 'app.kek');
    const keyring = join(dir, 'keyring.json');
    expect((await cli(['keygen', '--kek-file', kek])).code).toBe(0);
    expect((await cli(['init', '--keyring', keyring, '--kek-file', kek])).code).toBe(0);
    const before = readFileSync(keyring, 'utf8');
    failRenames.on = true;
    try {
      for (const argv of [
        ['rotate', '--keyring', keyring, '--kek-file', kek],
        ['rewrap', '--keyring', keyring, '--from-kek-file', kek, '--to-kek-file', kek],
      ]) {
        const run = await cli(argv);
        expect(run.code, argv[0]).toBe(1);
        expect(run.stderr).toBe(
          `coffer-fields: error: cannot write ${keyring} (EROFS); the keyring there is unchanged\n`,
        );
      }
    } finally {
      failRenames.on = false;
    }
    expect(readFileSync(keyring, 'utf8')).toBe(before);
    expect(readdirSync(dir).sort()).toEqual(['app.kek', 'keyring.json']);
  });
});
