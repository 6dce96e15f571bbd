import { backend } from '#backend';
import { type AeadKey, type AeadKeyMaterial, keyMaterial, MAX_KEY_ID_LENGTH } from './aead-key.js';
import type { KeyHandle } from './backend/types.js';
import { utf8Encode } from './encoding.js';
import { sameBytes } from './envelope.js';
import { assertBytes, CryptoError, decryptionFailed } from './errors.js';

/** spec/stream-v1.md §1 */
export const STREAM_VERSION = 0x01;
/** spec §3: 2^32 chunks is 256 TiB at 64 KiB, well inside AES-GCM's per-key limits. */
export const MAX_CHUNKS = 2 ** 32;
/** spec §1: chunk sizes from 1 KiB to 16 MiB; the decoder's buffer is bounded by the largest. */
export const MIN_CHUNK_SIZE = 2 ** 10;
export const MAX_CHUNK_SIZE = 2 ** 24;
export const DEFAULT_CHUNK_SIZE = 2 ** 16;

const TAG = 16;
const SALT = 32;
const FIXED_HEADER = 4 + SALT;
const STREAM_LABEL = utf8Encode('coffer/v1/stream');
const EMPTY = new Uint8Array(0);

export interface StreamOptions {
  /** Associated data bound to every chunk; the same bytes must be given to decrypt. */
  context?: Uint8Array;
}

export interface EncryptStreamOptions extends StreamOptions {
  /** Plaintext bytes per chunk: a power of two from 1 KiB to 16 MiB. Default 64 KiB. */
  chunkSize?: number;
}

/** One stream's per-chunk state: the derived key, header and counter (spec §2). */
class ChunkCipher {
  private counter = 0;
  private finished = false;
  private readonly nonce: Uint8Array;
  private readonly counterOffset: number;

  constructor(
    private readonly op: string,
    private readonly key: KeyHandle,
    private readonly aad: Uint8Array,
    nonceLength: number,
  ) {
    this.nonce = new Uint8Array(nonceLength);
    this.counterOffset = nonceLength - 12;
  }

  private nextNonce(final: boolean): Uint8Array | undefined {
    if (this.finished || this.counter >= MAX_CHUNKS) return undefined;
    // nonce = [zeros] || uint88_be(i) || final; i < 2^32 so only the low four counter bytes vary.
    const n = this.nonce;
    const c = this.counter++;
    const o = this.counterOffset + 7;
    n[o] = c >>> 24;
    n[o + 1] = (c >>> 16) & 0xff;
    n[o + 2] = (c >>> 8) & 0xff;
    n[o + 3] = c & 0xff;
    n[o + 4] = final ? 1 : 0;
    this.finished = final;
    return n;
  }

  get chunks(): number {
    return this.counter;
  }

  async seal(plaintext: Uint8Array, final: boolean): Promise<Uint8Array> {
    const nonce = this.nextNonce(final);
    if (!nonce)
      throw new CryptoError(
        'LIMIT_EXCEEDED',
        this.op,
        `a stream holds at most ${MAX_CHUNKS} chunks`,
      );
    return backend.aeadSeal(this.key, nonce, plaintext, this.aad);
  }

  async open(chunk: Uint8Array, final: boolean): Promise<Uint8Array> {
    // spec §4.3: an empty final chunk is valid only as chunk 0.
    const nonce = chunk.length === TAG && this.counter > 0 ? undefined : this.nextNonce(final);
    const plaintext = nonce && (await backend.aeadOpen(this.key, nonce, chunk, this.aad));
    if (!plaintext) throw decryptionFailed(this.op);
    return plaintext;
  }
}

async function deriveChunkKey(
  m: AeadKeyMaterial,
  salt: Uint8Array,
  algorithm: 'AES-GCM' | 'XChaCha20-Poly1305',
) {
  // spec §2: stream_key = HKDF-SHA256(K, salt, "coffer/v1/stream")
  const streamKey = await backend.hkdf('SHA-256', m.bytes, salt, STREAM_LABEL, 32);
  const handle = await backend.aeadKey(algorithm, streamKey);
  streamKey.fill(0);
  return handle;
}

function algorithmOf(suiteId: number): 'AES-GCM' | 'XChaCha20-Poly1305' {
  return suiteId === 0x01 ? 'AES-GCM' : 'XChaCha20-Poly1305';
}

async function startEncryption(op: string, key: AeadKey, options: EncryptStreamOptions) {
  const m = keyMaterial(op, key);
  const context = options.context ?? EMPTY;
  assertBytes(op, 'context', context);
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const log2 = Math.log2(chunkSize);
  if (!Number.isInteger(log2) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      op,
      '"chunkSize" expected a power of two from 1024 to 16777216',
    );
  }
  // spec §1: version || suite || log2_chunk || kid_len || kid || salt
  const header = new Uint8Array(FIXED_HEADER + key.id.length);
  header[0] = STREAM_VERSION;
  header[1] = m.suiteId;
  header[2] = log2;
  header[3] = key.id.length;
  header.set(key.id, 4);
  header.set(backend.randomBytes(SALT), 4 + key.id.length);
  const handle = await deriveChunkKey(
    m,
    header.subarray(4 + key.id.length),
    algorithmOf(m.suiteId),
  );
  const aad = concatAad(header, context);
  return { header, chunkSize, cipher: new ChunkCipher(op, handle, aad, m.nonceLength) };
}

/** Parses and checks a complete header (spec §4); returns undefined for any mismatch. */
async function startDecryption(
  op: string,
  m: AeadKeyMaterial,
  key: AeadKey,
  header: Uint8Array,
  context: Uint8Array,
) {
  const log2 = header[2]!;
  if (
    header[1] !== m.suiteId ||
    log2 < 10 ||
    log2 > 24 ||
    !sameBytes(header.subarray(4, 4 + header[3]!), key.id)
  ) {
    return undefined;
  }
  const handle = await deriveChunkKey(
    m,
    header.subarray(header.length - SALT),
    algorithmOf(m.suiteId),
  );
  return {
    chunkSize: 2 ** log2,
    cipher: new ChunkCipher(op, handle, concatAad(header, context), m.nonceLength),
  };
}

function concatAad(header: Uint8Array, context: Uint8Array): Uint8Array {
  const aad = new Uint8Array(header.length + context.length);
  aad.set(header, 0);
  aad.set(context, header.length);
  return aad;
}

/** Length of the header that starts `bytes`, once its `kid_len` byte is known. */
function headerLength(op: string, bytes: Uint8Array): number | undefined {
  if (bytes.length === 0) return undefined;
  checkVersion(op, bytes);
  if (bytes.length < 4) return undefined;
  if (bytes[3]! > MAX_KEY_ID_LENGTH) throw decryptionFailed(op);
  return FIXED_HEADER + bytes[3]!;
}

/** spec §4.1: empty input, or a first byte other than 0x01, is not a stream this version reads. */
function checkVersion(op: string, bytes: Uint8Array): void {
  if (bytes[0] !== STREAM_VERSION) {
    throw new CryptoError(
      'UNSUPPORTED_VERSION',
      op,
      `unsupported format version ${bytes[0] ?? 'none'}`,
    );
  }
}

/**
 * Encrypts a whole payload in the chunked stream format (spec/stream-v1.md) in one call.
 * For payloads too large for memory use {@link createEncryptStream}.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` for a bad key, chunk size or argument type.
 * @example const sealed = await streamEncrypt(key, fileBytes);
 */
export async function streamEncrypt(
  key: AeadKey,
  plaintext: Uint8Array,
  options: EncryptStreamOptions = {},
): Promise<Uint8Array> {
  const op = 'stream.encrypt';
  assertBytes(op, 'plaintext', plaintext);
  const { header, chunkSize, cipher } = await startEncryption(op, key, options);
  const chunks = Math.max(1, Math.ceil(plaintext.length / chunkSize));
  if (chunks > MAX_CHUNKS)
    throw new CryptoError('LIMIT_EXCEEDED', op, `a stream holds at most ${MAX_CHUNKS} chunks`);
  const out = new Uint8Array(header.length + plaintext.length + chunks * TAG);
  out.set(header, 0);
  let offset = header.length;
  for (let i = 0; i < chunks; i++) {
    const part = plaintext.subarray(i * chunkSize, (i + 1) * chunkSize);
    const sealed = await cipher.seal(part, i === chunks - 1);
    out.set(sealed, offset);
    offset += sealed.length;
  }
  return out;
}

/**
 * Decrypts a whole stream made by {@link streamEncrypt} or {@link createEncryptStream}.
 *
 * @throws {CryptoError} `UNSUPPORTED_VERSION` for a version other than 1; `DECRYPTION_FAILED` for
 *   anything else wrong (tampered, truncated, reordered, extended, wrong key or context).
 * @example const plaintext = await streamDecrypt(key, sealed);
 */
export async function streamDecrypt(
  key: AeadKey,
  stream: Uint8Array,
  options: StreamOptions = {},
): Promise<Uint8Array> {
  const op = 'stream.decrypt';
  const m = keyMaterial(op, key);
  const context = options.context ?? EMPTY;
  assertBytes(op, 'stream', stream);
  assertBytes(op, 'context', context);
  checkVersion(op, stream);
  const hl = headerLength(op, stream);
  if (hl === undefined || stream.length < hl + TAG) throw decryptionFailed(op);
  const started = await startDecryption(op, m, key, stream.subarray(0, hl), context);
  if (!started) throw decryptionFailed(op);
  const { chunkSize, cipher } = started;
  const body = stream.subarray(hl);
  const step = chunkSize + TAG;
  const chunks = Math.max(1, Math.ceil(body.length / step));
  const last = body.length - (chunks - 1) * step;
  if (last < TAG || chunks > MAX_CHUNKS) throw decryptionFailed(op);
  const out = new Uint8Array(body.length - chunks * TAG);
  for (let i = 0; i < chunks; i++) {
    const plain = await cipher.open(body.subarray(i * step, (i + 1) * step), i === chunks - 1);
    out.set(plain, i * chunkSize);
  }
  return out;
}

/**
 * A TransformStream that encrypts bytes into the chunked stream format (spec/stream-v1.md), with
 * memory bounded by one chunk.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` synchronously-on-start for a bad key or chunk size;
 *   `LIMIT_EXCEEDED` past {@link MAX_CHUNKS} chunks.
 * @example
 * await file.stream().pipeThrough(createEncryptStream(key)).pipeTo(upload);
 */
export function createEncryptStream(
  key: AeadKey,
  options: EncryptStreamOptions = {},
): TransformStream<Uint8Array, Uint8Array> {
  const op = 'stream.encrypt';
  keyMaterial(op, key);
  let state: Awaited<ReturnType<typeof startEncryption>>;
  let buffer: Uint8Array;
  let filled = 0;
  return new TransformStream({
    async start(controller) {
      state = await startEncryption(op, key, options);
      buffer = new Uint8Array(state.chunkSize);
      controller.enqueue(state.header);
    },
    async transform(input, controller) {
      assertBytes(op, 'chunk', input);
      const { chunkSize, cipher } = state;
      let rest = input;
      while (rest.length > 0) {
        // A full buffer is sealed as non-final only once more data shows it is not the last.
        if (filled === chunkSize) {
          controller.enqueue(await cipher.seal(buffer, false));
          filled = 0;
        }
        // Fast path: seal whole chunks straight from the input while more data follows them.
        while (filled === 0 && rest.length > chunkSize) {
          controller.enqueue(await cipher.seal(rest.subarray(0, chunkSize), false));
          rest = rest.subarray(chunkSize);
        }
        const n = Math.min(chunkSize - filled, rest.length);
        buffer.set(rest.subarray(0, n), filled);
        filled += n;
        rest = rest.subarray(n);
      }
    },
    async flush(controller) {
      controller.enqueue(await state.cipher.seal(buffer.subarray(0, filled), true));
      buffer.fill(0);
    },
  });
}

/**
 * A TransformStream that decrypts the chunked stream format, releasing each chunk only after it
 * is authenticated. The stream errors with `DECRYPTION_FAILED` on tampering, reordering or
 * truncation; since truncation shows only at the end, treat the output as complete only when
 * the stream closes without error.
 *
 * @example
 * const plain = download.pipeThrough(createDecryptStream(key));
 */
export function createDecryptStream(
  key: AeadKey,
  options: StreamOptions = {},
): TransformStream<Uint8Array, Uint8Array> {
  const op = 'stream.decrypt';
  const m = keyMaterial(op, key);
  const context = options.context ?? EMPTY;
  assertBytes(op, 'context', context);
  let started: Awaited<ReturnType<typeof startDecryption>>;
  // Before the header is complete, `buffer` collects it; afterwards it holds one ciphertext chunk.
  let buffer = new Uint8Array(FIXED_HEADER + MAX_KEY_ID_LENGTH);
  let filled = 0;
  let step = 0;
  return new TransformStream({
    async transform(input, controller) {
      assertBytes(op, 'chunk', input);
      let rest = input;
      if (!started) {
        const hl = headerLength(op, concatPrefix(buffer, filled, rest));
        if (hl === undefined || filled + rest.length < hl) {
          buffer.set(rest, filled);
          filled += rest.length;
          return;
        }
        const take = hl - filled;
        buffer.set(rest.subarray(0, take), filled);
        rest = rest.subarray(take);
        started = await startDecryption(op, m, key, buffer.slice(0, hl), context);
        if (!started) throw decryptionFailed(op);
        step = started.chunkSize + TAG;
        buffer = new Uint8Array(step);
        filled = 0;
      }
      const { cipher } = started;
      while (rest.length > 0) {
        // A full chunk is opened as non-final only once more data follows it (spec §4.3).
        if (filled === step) {
          controller.enqueue(await cipher.open(buffer, false));
          filled = 0;
        }
        while (filled === 0 && rest.length > step) {
          controller.enqueue(await cipher.open(rest.subarray(0, step), false));
          rest = rest.subarray(step);
        }
        const n = Math.min(step - filled, rest.length);
        buffer.set(rest.subarray(0, n), filled);
        filled += n;
        rest = rest.subarray(n);
      }
    },
    async flush(controller) {
      if (!started && filled === 0) checkVersion(op, buffer.subarray(0, 0));
      if (!started || filled < TAG) throw decryptionFailed(op);
      controller.enqueue(await started.cipher.open(buffer.subarray(0, filled), true));
    },
  });
}

/** The first bytes of `buffer[0..filled] || rest`, enough to read a header's fixed fields. */
function concatPrefix(buffer: Uint8Array, filled: number, rest: Uint8Array): Uint8Array {
  const prefix = new Uint8Array(Math.min(4, filled + rest.length));
  prefix.set(buffer.subarray(0, Math.min(filled, prefix.length)), 0);
  if (filled < prefix.length) prefix.set(rest.subarray(0, prefix.length - filled), filled);
  return prefix;
}
