// writeFileDurably on file systems without hard links (FAT, sshfs without the hardlink
// extension): link() fails as such a file system makes it fail, mocked, since none can be
// mounted here; every other file operation is real.
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it, vi } from 'vitest';

const fail = (code: string) => Object.assign(new Error(`${code}: mocked`), { code });
let linkError: string | undefined;
/** The file whose write runs out of space after it was created. */
let diskFullAt: string | undefined;

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    async link(from: string, to: string) {
      if (linkError) throw fail(linkError);
      return real.link(from, to);
    },
    async open(...args: Parameters<typeof real.open>) {
      const handle = await real.open(...args);
      if (args[0] === diskFullAt) {
        handle.writeFile = async () => {
          throw fail('ENOSPC');
        };
      }
      return handle;
    },
  };
});

const { writeFileDurably } = await import('../src/_durable-file.js');
const { generateKekFile } = await import('../src/index.js');

beforeEach(() => {
  linkError = undefined;
  diskFullAt = undefined;
});

describe('writeFileDurably where the file system has no hard links', () => {
  it.each(['EPERM', 'ENOSYS'])('link failing with %s: created in place, once', async (code) => {
    linkError = code;
    const dir = await mkdtemp(join(tmpdir(), 'coffer-nolink-'));
    const path = join(dir, 'k');
    await writeFileDurably(path, 'one', { replace: false });
    expect(await readFile(path, 'utf8')).toBe('one');
    await expect(writeFileDurably(path, 'two', { replace: false })).rejects.toMatchObject({
      code: 'EEXIST',
    });
    expect(await readFile(path, 'utf8')).toBe('one');
    expect(await readdir(dir)).toEqual(['k']);
  });

  it('a KEK write that fails in place leaves no short KEK file that blocks a new one', async () => {
    linkError = 'EPERM';
    const dir = await mkdtemp(join(tmpdir(), 'coffer-nolink-'));
    const path = join(dir, 'fields.kek');
    diskFullAt = path;
    await expect(generateKekFile(path)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining(`cannot write ${path}`),
    });
    expect(await readdir(dir)).toEqual([]);
    diskFullAt = undefined;
    await generateKekFile(path);
    expect((await readFile(path, 'utf8')).trim()).toHaveLength(43);
  });
});
