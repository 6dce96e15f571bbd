import { mkdtemp, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFileDurably } from '../src/_durable-file.js';
import { FieldsError, generateKekFile, localProviderFromFile } from '../src/index.js';

const tempDir = () => mkdtemp(join(tmpdir(), 'coffer-durable-'));

describe('writeFileDurably', () => {
  it('creates a new file (0600) and refuses an existing one, leaving no temporary file', async () => {
    const dir = await tempDir();
    const path = join(dir, 'k');
    await writeFileDurably(path, 'one', { replace: false });
    expect(await readFile(path, 'utf8')).toBe('one');
    if (process.platform !== 'win32') expect((await stat(path)).mode & 0o777).toBe(0o600);
    await expect(writeFileDurably(path, 'two', { replace: false })).rejects.toMatchObject({
      code: 'EEXIST',
    });
    expect(await readFile(path, 'utf8')).toBe('one');
    await writeFileDurably(path, 'three', { replace: true });
    expect(await readFile(path, 'utf8')).toBe('three');
    expect(await readdir(dir)).toEqual(['k']);
  });

  it("removes a crash's stale temporary files beside the path, never fresh or other files", async () => {
    const dir = await tempDir();
    const path = join(dir, 'server.kek');
    const old = new Date(Date.now() - 11 * 60 * 1000);
    const stale = ['server.kek.0123456789ab.tmp', 'server.kek.ba9876543210.tmp'];
    const kept = ['server.kek.aaaaaaaaaaaa.tmp', 'other.kek.0123456789ab.tmp', 'server.kek.notes'];
    for (const name of [...stale, ...kept]) await writeFile(join(dir, name), 'a KEK never used');
    for (const name of [...stale, kept[1]!, kept[2]!]) await utimes(join(dir, name), old, old);
    await writeFileDurably(path, 'k', { replace: false });
    expect((await readdir(dir)).sort()).toEqual([...kept, 'server.kek'].sort());
  });

  it('concurrent creations: one wins, and a reader never sees the file partly written', async () => {
    const dir = await tempDir();
    const path = join(dir, 'k');
    const texts = Array.from({ length: 8 }, (_, i) => String(i).repeat(200_000));
    const seen: string[] = [];
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const text = await readFile(path, 'utf8').catch(() => undefined);
        if (text !== undefined) seen.push(text);
        await new Promise((r) => setImmediate(r));
      }
    })();
    const results = await Promise.allSettled(
      texts.map((t) => writeFileDurably(path, t, { replace: false })),
    );
    reading = false;
    await reader;
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const final = await readFile(path, 'utf8');
    expect(texts).toContain(final);
    for (const text of seen) expect(text).toBe(final);
    expect(await readdir(dir)).toEqual(['k']);
  });
});

describe('generateKekFile', () => {
  it('writes a usable KEK once and refuses to overwrite it', async () => {
    const dir = await tempDir();
    const path = join(dir, 'fields.kek');
    await generateKekFile(path);
    const first = await readFile(path, 'utf8');
    await localProviderFromFile(path);
    await expect(generateKekFile(path)).rejects.toBeInstanceOf(FieldsError);
    expect(await readFile(path, 'utf8')).toBe(first);
    await writeFile(join(dir, 'not-a-kek'), 'x');
    await expect(localProviderFromFile(join(dir, 'not-a-kek'))).rejects.toBeInstanceOf(FieldsError);
  });
});
