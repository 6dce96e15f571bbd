// Case 2: streaming encryption + decryption of 64 MiB against one node:crypto AES-256-GCM call
// each way (the ceiling: no chunking, no per-chunk tags, no framing).
import * as nc from 'node:crypto';
import {
  assertSameBytes,
  assertTrue,
  type CaseFactory,
  filler,
  KiB,
  MiB,
  type Side,
} from '@coffer/bench-kit';
import {
  createDecryptStream,
  createEncryptStream,
  generateAeadKey,
  importAeadKey,
  streamDecrypt,
  streamEncrypt,
} from '../src/index.js';

const PAYLOAD = 64 * MiB;
const PIECE = 64 * KiB;

/** A source that hands out `data` in `piece`-byte views (no copies), like a file reader. */
function source(data: Uint8Array, piece: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= data.length) {
        controller.close();
        return;
      }
      controller.enqueue(data.subarray(offset, offset + piece));
      offset += piece;
    },
  });
}

async function rawSetup() {
  const raw = generateAeadKey();
  const key = await importAeadKey(raw, { id: 'k1' });
  const data = filler(PAYLOAD);
  const keyBuffer = Buffer.from(raw);
  const baseline: Side = {
    label: 'node:crypto aes-256-gcm, one createCipheriv + one createDecipheriv over 64 MiB',
    op: () => {
      const iv = nc.randomBytes(12);
      const c = nc.createCipheriv('aes-256-gcm', keyBuffer, iv);
      const ct = c.update(data);
      c.final();
      const tag = c.getAuthTag();
      const d = nc.createDecipheriv('aes-256-gcm', keyBuffer, iv);
      d.setAuthTag(tag);
      const pt = d.update(ct);
      d.final();
      return pt;
    },
  };
  return { key, data, baseline };
}

export function streamCases(): CaseFactory[] {
  return [
    {
      name: 'stream-transform/aes-256-gcm/64MiB',
      async build() {
        const { key, data, baseline } = await rawSetup();
        /** Pipes the payload through both TransformStreams; returns the plaintext length. */
        const pipeline = async (collect?: Uint8Array[]): Promise<number> => {
          let length = 0;
          await source(data, PIECE)
            .pipeThrough(createEncryptStream(key))
            .pipeThrough(createDecryptStream(key))
            .pipeTo(
              new WritableStream<Uint8Array>({
                write(chunk) {
                  length += chunk.length;
                  collect?.push(chunk);
                },
              }),
            );
          return length;
        };
        return {
          name: 'stream-transform/aes-256-gcm/64MiB',
          unit: 'MiB/s',
          bytesPerOp: PAYLOAD,
          ours: {
            label: 'createEncryptStream -> createDecryptStream, 64 KiB input pieces',
            op: async () => {
              if ((await pipeline()) !== PAYLOAD) throw new Error('stream lost bytes');
            },
          },
          baseline,
          seconds: 1.2,
          goal: 0.8,
          async check() {
            const parts: Uint8Array[] = [];
            assertTrue('transform length', (await pipeline(parts)) === PAYLOAD);
            assertSameBytes('transform round trip', Buffer.concat(parts), data);
            assertSameBytes('baseline round trip', baseline.op() as Uint8Array, data);
          },
        };
      },
    },
    {
      name: 'stream-oneshot/aes-256-gcm/64MiB',
      async build() {
        const { key, data, baseline } = await rawSetup();
        return {
          name: 'stream-oneshot/aes-256-gcm/64MiB',
          unit: 'MiB/s',
          bytesPerOp: PAYLOAD,
          ours: {
            label: 'streamEncrypt+streamDecrypt',
            op: async () => streamDecrypt(key, await streamEncrypt(key, data)),
          },
          baseline,
          seconds: 1.2,
          goal: 0.8,
          async check() {
            assertSameBytes(
              'one-shot round trip',
              await streamDecrypt(key, await streamEncrypt(key, data)),
              data,
            );
            assertSameBytes('baseline round trip', baseline.op() as Uint8Array, data);
          },
        };
      },
    },
  ];
}
