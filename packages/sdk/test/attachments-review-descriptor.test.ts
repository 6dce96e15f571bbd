// Review findings on attachment descriptors (decodeAttachmentDescriptor): what a sender controls
// must end in INVALID_ATTACHMENT, and nothing it wrote (a field name may be a key, or the file's
// text) may reach an error message.
import { MAX_CHUNKS, randomBytes, toBase64url } from '@coffer/crypto';
import { describe, expect, it } from 'vitest';
import {
  type AttachmentDescriptor,
  decodeAttachmentDescriptor,
  encodeAttachmentDescriptor,
  SdkError,
} from '../src/index.js';

const HEADER = 36;
const TAG = 16;

function decodeError(input: unknown): unknown {
  try {
    decodeAttachmentDescriptor(JSON.stringify(input));
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('attachment descriptors (review)', () => {
  const d: AttachmentDescriptor = {
    blobId: toBase64url(randomBytes(16)),
    key: randomBytes(32),
    size: 70_000,
    cipherSize: HEADER + 70_000 + 2 * TAG,
    sha256: randomBytes(32),
    chunkSize: 65536,
  };
  const json = () => JSON.parse(encodeAttachmentDescriptor(d)) as Record<string, unknown>;

  it('never puts an unknown field name in the error: it is the sender’s text (here, the key)', () => {
    const key = toBase64url(d.key);
    for (const name of [key, `secret plaintext ${'x'.repeat(10_000)}`, '\u001b[31mred']) {
      const err = decodeError({ ...json(), [name]: true });
      expect(SdkError.is(err, 'INVALID_ATTACHMENT'), String(err)).toBe(true);
      const message = (err as Error).message;
      expect(message).not.toContain(key);
      expect(message).not.toContain('secret plaintext');
      expect(message).not.toContain('\u001b');
      expect(message.length).toBeLessThan(200);
    }
    // A short, plain name is still named, to help whoever debugs a sender.
    const err = decodeError({ ...json(), extra: true });
    expect((err as Error).message).toContain('extra');
  });

  it('refuses a size that stream-v1 cannot encode (more than MAX_CHUNKS chunks)', () => {
    const chunkSize = 1024;
    // One chunk more than stream-v1 allows (spec/stream-v1.md §3: n <= 2^32).
    const size = MAX_CHUNKS * chunkSize + 1;
    expect(Number.isSafeInteger(size)).toBe(true);
    const cipherSize = HEADER + size + (MAX_CHUNKS + 1) * TAG;
    const err = decodeError({ ...json(), size, cipherSize, chunkSize });
    expect(SdkError.is(err, 'INVALID_ATTACHMENT'), String(err)).toBe(true);
    // Exactly MAX_CHUNKS chunks is a valid (if very large) descriptor.
    const max = MAX_CHUNKS * chunkSize;
    const ok = decodeAttachmentDescriptor(
      JSON.stringify({
        ...json(),
        size: max,
        cipherSize: HEADER + max + MAX_CHUNKS * TAG,
        chunkSize,
      }),
    );
    expect(ok.size).toBe(max);
  });
});
