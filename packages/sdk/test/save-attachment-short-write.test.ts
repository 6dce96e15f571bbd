// saveAttachment on a file system whose write() takes fewer bytes than it is given without
// failing (a full disk, a file size limit: write(2) may do that): mocked, since such a disk
// cannot be made here; every other file operation is real. Before, the short file was named as
// the whole verified attachment.
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { SdkError } from '../src/errors.js';

/** Most bytes one write() takes; 0 makes writes take nothing (a disk that cannot go on). */
let writeCap = 1000;

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    async open(...args: Parameters<typeof real.open>) {
      const handle = await real.open(...args);
      if (String(args[0]).endsWith('.partial')) {
        const write = handle.write.bind(handle) as (
          b: Uint8Array,
          offset?: number,
          length?: number,
        ) => Promise<{ bytesWritten: number; buffer: Uint8Array }>;
        handle.write = (async (buffer: Uint8Array, offset = 0, length?: number) => {
          const want = length ?? buffer.length - offset;
          if (writeCap === 0) return { bytesWritten: 0, buffer };
          return write(buffer, offset, Math.min(want, writeCap));
        }) as typeof handle.write;
      }
      return handle;
    },
  };
});

const { saveAttachment } = await import('../src/node.js');

function streamOf(...chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });
}

describe('saveAttachment and short writes', () => {
  it('writes every byte when write() takes only part of a chunk', async () => {
    writeCap = 1000;
    const dir = await mkdtemp(join(tmpdir(), 'coffer-short-'));
    const a = Uint8Array.from({ length: 6000 }, (_, i) => i % 251);
    const b = Uint8Array.from({ length: 2500 }, (_, i) => (i * 7) % 253);
    const saved = await saveAttachment(streamOf(a, b), join(dir, 'report.bin'));
    const bytes = new Uint8Array(await readFile(saved));
    expect(bytes.length).toBe(8500);
    expect(bytes.subarray(0, 6000)).toEqual(a);
    expect(bytes.subarray(6000)).toEqual(b);
    expect(await readdir(dir)).toEqual(['report.bin']);
  });

  it('fails with STORE_UNAVAILABLE and leaves nothing when writes take nothing', async () => {
    writeCap = 0;
    const dir = await mkdtemp(join(tmpdir(), 'coffer-short-'));
    const err = await saveAttachment(streamOf(new Uint8Array(10)), join(dir, 'x.bin')).catch(
      (e: unknown) => e,
    );
    expect(SdkError.is(err, 'STORE_UNAVAILABLE')).toBe(true);
    expect(await readdir(dir)).toEqual([]);
  });
});
