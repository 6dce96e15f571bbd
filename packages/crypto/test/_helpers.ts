import {
  type AeadKey,
  concatBytes,
  createDecryptStream,
  type StreamOptions,
} from '../src/index.js';

/** A ReadableStream of `data` in pieces of `pieceSize` bytes. */
export function readableOf(data: Uint8Array, pieceSize: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= data.length) return controller.close();
      controller.enqueue(data.slice(offset, offset + pieceSize));
      offset += pieceSize;
    },
  });
}

/** Reads a whole stream into one array; rejects with the stream's error. */
export async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
  }
  return concatBytes(...parts);
}

/** Pipes `data`, in pieces of `pieceSize`, through a decrypting TransformStream. */
export async function streamThrough(
  key: AeadKey,
  data: Uint8Array,
  options: StreamOptions,
  pieceSize: number,
): Promise<ReadableStream<Uint8Array>> {
  return readableOf(data, pieceSize).pipeThrough(createDecryptStream(key, options));
}

/** Copies `bytes` with one bit flipped. */
export function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = bytes.slice();
  copy[bit >> 3]! ^= 1 << (bit & 7);
  return copy;
}

/** The error code a promise rejects with, 'ok' if it resolves. Non-Coffer errors propagate. */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (err) {
    const code = (err as { code?: unknown; name?: unknown }).code;
    if ((err as { name?: unknown }).name === 'CryptoError' && typeof code === 'string') return code;
    throw err;
  }
}
