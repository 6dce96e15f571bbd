// A new home's store key, and a saved attachment, on file systems without hard links (FAT, sshfs without the hardlink
// extension): link() fails as such a file system makes it fail, mocked, since none can be
// mounted here; every other file operation is real.
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { SdkError } from '../src/errors.js';

const fail = (code: string) => Object.assign(new Error(`${code}: mocked`), { code });
let linkError: string | undefined;
/** The in-place key file whose write runs out of space after it was created. */
let diskFullAt: string | undefined;
/** link() calls and directory flushes, in order. */
const steps: string[] = [];

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    async link(from: string, to: string) {
      if (linkError) throw fail(linkError);
      await real.link(from, to);
      steps.push(`link ${to}`);
    },
    async open(...args: Parameters<typeof real.open>) {
      const handle = await real.open(...args);
      if (args[1] === 'r' && (await handle.stat()).isDirectory()) {
        const sync = handle.sync.bind(handle);
        handle.sync = async () => {
          await sync();
          steps.push(`flush ${String(args[0])}`);
        };
      }
      if (args[0] === diskFullAt) {
        handle.writeFile = async () => {
          throw fail('ENOSPC');
        };
      }
      return handle;
    },
  };
});

const { openNodeHome, saveAttachment } = await import('../src/node.js');

beforeEach(() => {
  linkError = undefined;
  diskFullAt = undefined;
  steps.length = 0;
});

describe('a new home', () => {
  it('flushes the directory once the key is linked into place', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'coffer-nolink-')), 'home');
    await openNodeHome(dir);
    const linked = steps.indexOf(`link ${join(dir, 'store.key')}`);
    expect(linked).toBeGreaterThanOrEqual(0);
    if (process.platform !== 'win32') expect(steps.slice(linked + 1)).toContain(`flush ${dir}`);
  });
});

describe('a new home where the file system has no hard links', () => {
  it.each(['EPERM', 'ENOSYS'])(
    'link failing with %s: the key is created in place',
    async (code) => {
      linkError = code;
      const dir = join(await mkdtemp(join(tmpdir(), 'coffer-nolink-')), 'home');
      const { storeKey } = await openNodeHome(dir);
      expect(storeKey).toHaveLength(32);
      expect(new Uint8Array(await readFile(join(dir, 'store.key')))).toEqual(storeKey);
      expect((await openNodeHome(dir)).storeKey).toEqual(storeKey);
      expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    },
  );

  it('a key write that fails in place leaves no key file to be corrupt later', async () => {
    linkError = 'EPERM';
    const dir = join(await mkdtemp(join(tmpdir(), 'coffer-nolink-')), 'home');
    diskFullAt = join(dir, 'store.key');
    await expect(openNodeHome(dir)).rejects.toSatisfy((err) =>
      SdkError.is(err, 'STORE_UNAVAILABLE'),
    );
    expect(await readdir(dir)).toEqual([]);
    // Space again: the home opens with a new key, not STORE_CORRUPT for an empty one.
    diskFullAt = undefined;
    const { storeKey } = await openNodeHome(dir);
    expect(storeKey).toHaveLength(32);
  });

  it('an existing key is kept, not replaced', async () => {
    linkError = 'EPERM';
    const dir = await mkdtemp(join(tmpdir(), 'coffer-nolink-'));
    const key = new Uint8Array(32).fill(7);
    await writeFile(join(dir, 'store.key'), key, { mode: 0o600 });
    expect((await openNodeHome(dir)).storeKey).toEqual(key);
  });
});

describe('saving an attachment', () => {
  it('where link() fails as sshfs makes it (ENOSYS), is renamed into place, and flushed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-nolink-'));
    linkError = 'ENOSYS';
    const path = join(dir, 'file.bin');
    const bytes = new Uint8Array([1, 2, 3]);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes);
        c.close();
      },
    });
    expect(await saveAttachment(stream, path)).toBe(path);
    expect(new Uint8Array(await readFile(path))).toEqual(bytes);
    expect(await readdir(dir)).toEqual(['file.bin']);
    if (process.platform !== 'win32') expect(steps).toContain(`flush ${dir}`);
  });
});
