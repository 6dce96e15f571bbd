// Encrypted attachments (packages/server/spec/http-api-v1.md "Blobs"; packages/crypto/spec/
// stream-v1.md). A file is encrypted on the device under a fresh 32-byte key with the chunked
// stream format, bound to the context "coffer/v1/attachment", and uploaded as opaque bytes; the
// server answers with a blob id. What a recipient needs to fetch and open it — blob id, key,
// sizes, SHA-256 of the ciphertext — is the AttachmentDescriptor, sent inside an end-to-end
// encrypted message. Downloads check the ciphertext's length and SHA-256 and every chunk's tag.
// Nothing is buffered whole: memory stays around one chunk in each direction.
import {
  CryptoError,
  constantTimeEqual,
  createDecryptStream,
  createEncryptStream,
  createSha256,
  DEFAULT_CHUNK_SIZE,
  fromBase64url,
  importAeadKey,
  MAX_CHUNKS,
  randomBytes,
  toBase64url,
  utf8Encode,
  wipe,
} from '@coffer/crypto';
import { SdkError } from './errors.js';
import { errorFromResponse, type FetchLike, parseBase, readCappedText } from './transport.js';

/** The most of an upload's answer or a download's error body a client reads (JSON, a few bytes). */
const MAX_ANSWER_BYTES = 64 * 1024;

/** The stream-v1 context every attachment is encrypted under (its own label, with the version). */
export const ATTACHMENT_CONTEXT = 'coffer/v1/attachment';
/** The version of the descriptor's JSON form; another version fails with `INVALID_ATTACHMENT`. */
export const ATTACHMENT_DESCRIPTOR_VERSION = 1;
/** Plaintext bytes per encrypted chunk: stream-v1's default, 64 KiB. */
export const ATTACHMENT_CHUNK_SIZE = DEFAULT_CHUNK_SIZE;
/** A file name in a descriptor, in UTF-16 code units: what file systems allow, and no more. */
export const MAX_ATTACHMENT_NAME_LENGTH = 255;
/** A media type in a descriptor (RFC 6838 caps each part at 127 characters). */
export const MAX_ATTACHMENT_MEDIA_TYPE_LENGTH = 255;
/** Bytes of an attachment key. */
export const ATTACHMENT_KEY_LENGTH = 32;

const KEY_ID = new Uint8Array(0);
// stream-v1 §1: version, suite, log2_chunk, kid_len, kid (empty here), 32-byte salt.
const HEADER_LENGTH = 4 + KEY_ID.length + 32;
const TAG_LENGTH = 16;
const SHA256_LENGTH = 32;
const CONTEXT = utf8Encode(ATTACHMENT_CONTEXT);
/** Plaintext pieces a Uint8Array is fed to the encryptor in (bounds each read, not the total). */
const PIECE = 1024 * 1024;
const BLOB_ID = /^[A-Za-z0-9_-]{21}[AQgw]$/;
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$/;
/** An unknown field named in an error: anything else a sender wrote (a key, text) is not echoed. */
const PLAIN_FIELD_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const DESCRIPTOR_FIELDS = new Set([
  'v',
  'blobId',
  'key',
  'size',
  'cipherSize',
  'sha256',
  'chunkSize',
  'name',
  'mediaType',
]);

/**
 * What a recipient needs to download and open one attachment. It holds the key: send it only
 * inside an end-to-end encrypted message, never to the server in the clear.
 *
 * @example
 * const descriptor = await encryptAndUpload({ server, token, data: bytes, name: 'photo.jpg' });
 * await group.send(encodeAttachmentDescriptor(descriptor));
 */
export interface AttachmentDescriptor {
  /** The server's id of the ciphertext (b64url of 16 bytes): a read capability. */
  readonly blobId: string;
  /** The 32-byte key the file was encrypted under, fresh for this file. */
  readonly key: Uint8Array;
  /** Plaintext bytes. */
  readonly size: number;
  /** Ciphertext bytes, as stored on the server. */
  readonly cipherSize: number;
  /** SHA-256 of the ciphertext (32 bytes). */
  readonly sha256: Uint8Array;
  /** Plaintext bytes per chunk of the stream (a power of two from 1 KiB to 16 MiB). */
  readonly chunkSize: number;
  /** The file's name, as the sender chose to tell it. */
  readonly name?: string;
  /** The file's media type (`image/jpeg`), as the sender chose to tell it. */
  readonly mediaType?: string;
}

/** Where attachments are uploaded to and downloaded from. */
export interface AttachmentServerOptions {
  /** Base URL of the Coffer server. */
  readonly server: string;
  /** A session token of a device (`client` holds one once logged in). */
  readonly token: string;
  /** Default: the global `fetch`. Node's fetch streams request bodies (`duplex: 'half'`). */
  readonly fetch?: FetchLike;
  readonly signal?: AbortSignal;
}

/** Options of {@link encryptAndUpload}. */
export interface UploadAttachmentOptions extends AttachmentServerOptions {
  /** The plaintext: bytes, or a stream of them (read once, piece by piece). */
  readonly data: Uint8Array | AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>;
  readonly name?: string;
  readonly mediaType?: string;
  /** Default {@link ATTACHMENT_CHUNK_SIZE}. */
  readonly chunkSize?: number;
  /** Called as plaintext is encrypted: bytes so far, and the total when `data` is bytes. */
  readonly onProgress?: (done: number, total?: number) => void;
}

/** Options of {@link downloadAndDecrypt}. */
export interface DownloadAttachmentOptions extends AttachmentServerOptions {
  readonly descriptor: AttachmentDescriptor;
  /** Called as plaintext is released: bytes so far, and the descriptor's size. */
  readonly onProgress?: (done: number, total: number) => void;
}

function invalid(op: string, message: string): SdkError {
  return new SdkError('INVALID_ARGUMENT', op, message);
}

function corrupt(op: string, message: string, cause?: unknown): SdkError {
  return new SdkError('ATTACHMENT_CORRUPT', op, message, cause === undefined ? {} : { cause });
}

/** stream-v1 §3: the exact ciphertext length of `size` plaintext bytes in chunks of `chunkSize`. */
function cipherSizeOf(size: number, chunkSize: number): number {
  const chunks = size === 0 ? 1 : Math.ceil(size / chunkSize);
  return HEADER_LENGTH + size + chunks * TAG_LENGTH;
}

function isChunkSize(n: unknown): n is number {
  return (
    typeof n === 'number' && Number.isInteger(n) && n >= 1024 && n <= 2 ** 24 && (n & (n - 1)) === 0
  );
}

function checkName(name: unknown, what: (m: string) => SdkError): string | undefined {
  if (name === undefined) return undefined;
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > MAX_ATTACHMENT_NAME_LENGTH ||
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are refused
    /[\u0000-\u001f\u007f]/.test(name) ||
    // A lone surrogate does not survive UTF-8.
    /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(name)
  ) {
    throw what(
      `"name" expected 1 to ${MAX_ATTACHMENT_NAME_LENGTH} characters, no control characters`,
    );
  }
  return name;
}

function checkMediaType(mediaType: unknown, what: (m: string) => SdkError): string | undefined {
  if (mediaType === undefined) return undefined;
  if (
    typeof mediaType !== 'string' ||
    mediaType.length > MAX_ATTACHMENT_MEDIA_TYPE_LENGTH ||
    !MEDIA_TYPE.test(mediaType)
  ) {
    throw what('"mediaType" expected a media type such as image/jpeg');
  }
  return mediaType;
}

/** Checks every field of a descriptor, with `fail` making the error (caller's or peer's). */
function checkDescriptor(
  d: AttachmentDescriptor,
  fail: (message: string) => SdkError,
): AttachmentDescriptor {
  if (typeof d !== 'object' || d === null) throw fail('expected a descriptor object');
  if (typeof d.blobId !== 'string' || !BLOB_ID.test(d.blobId))
    throw fail('"blobId" expected b64url of 16 bytes');
  if (!(d.key instanceof Uint8Array) || d.key.length !== ATTACHMENT_KEY_LENGTH)
    throw fail(`"key" expected ${ATTACHMENT_KEY_LENGTH} bytes`);
  if (!(d.sha256 instanceof Uint8Array) || d.sha256.length !== SHA256_LENGTH)
    throw fail(`"sha256" expected ${SHA256_LENGTH} bytes`);
  if (!isChunkSize(d.chunkSize))
    throw fail('"chunkSize" expected a power of two from 1024 to 16777216');
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0)
    throw fail('"size" expected a non-negative integer');
  // stream-v1 §3: at most MAX_CHUNKS chunks; no sender can have encrypted more.
  if (d.size > Number.MAX_SAFE_INTEGER / 2 || Math.ceil(d.size / d.chunkSize) > MAX_CHUNKS)
    throw fail('"size" is out of range');
  if (d.cipherSize !== cipherSizeOf(d.size, d.chunkSize))
    throw fail('"cipherSize" does not match "size" and "chunkSize"');
  checkName(d.name, fail);
  checkMediaType(d.mediaType, fail);
  return d;
}

/**
 * The descriptor as JSON text, for the body of an end-to-end encrypted message:
 * `{"v":1,"blobId","key","size","cipherSize","sha256","chunkSize","name"?,"mediaType"?}` with
 * `key` and `sha256` as b64url.
 *
 * @throws {SdkError} `INVALID_ARGUMENT` for a descriptor with a missing or ill-formed field.
 * @example const text = encodeAttachmentDescriptor(descriptor);
 */
export function encodeAttachmentDescriptor(descriptor: AttachmentDescriptor): string {
  const op = 'attachments.encode';
  const d = checkDescriptor(descriptor, (m) => invalid(op, m));
  return JSON.stringify({
    v: ATTACHMENT_DESCRIPTOR_VERSION,
    blobId: d.blobId,
    key: toBase64url(d.key),
    size: d.size,
    cipherSize: d.cipherSize,
    sha256: toBase64url(d.sha256),
    chunkSize: d.chunkSize,
    ...(d.name === undefined ? {} : { name: d.name }),
    ...(d.mediaType === undefined ? {} : { mediaType: d.mediaType }),
  });
}

/**
 * Decodes a descriptor from its JSON text (or the already parsed object, when it sits inside a
 * larger JSON message), strictly: exactly the known fields, canonical b64url of the right
 * lengths, consistent sizes. A descriptor comes from another user, so anything else is refused.
 *
 * @throws {SdkError} `INVALID_ATTACHMENT` for anything that is not a version-1 descriptor.
 * @example const descriptor = decodeAttachmentDescriptor(message.text);
 */
export function decodeAttachmentDescriptor(input: string | object): AttachmentDescriptor {
  const op = 'attachments.decode';
  const fail = (m: string) => new SdkError('INVALID_ATTACHMENT', op, m);
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch {
      throw fail('not JSON');
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw fail('expected a JSON object');
  const o = value as Record<string, unknown>;
  const get = (k: string) => (Object.hasOwn(o, k) ? o[k] : undefined);
  if (get('v') !== ATTACHMENT_DESCRIPTOR_VERSION) {
    throw fail(
      typeof get('v') === 'number'
        ? `unsupported descriptor version ${String(get('v'))}`
        : '"v" expected a version number',
    );
  }
  for (const k of Object.keys(o)) {
    // The name is the sender's text (it may be a key): echoed only when it looks like a field.
    if (!DESCRIPTOR_FIELDS.has(k))
      throw fail(PLAIN_FIELD_NAME.test(k) ? `unknown field "${k}"` : 'an unknown field');
  }
  const bytes = (k: string, length: number) => {
    const v = get(k);
    let out: Uint8Array | undefined;
    if (typeof v === 'string' && v.length === Math.ceil((length * 4) / 3)) {
      try {
        out = fromBase64url(v);
      } catch {
        out = undefined;
      }
    }
    if (!out || out.length !== length) throw fail(`"${k}" expected b64url of ${length} bytes`);
    return out;
  };
  const key = bytes('key', ATTACHMENT_KEY_LENGTH);
  const sha256 = bytes('sha256', SHA256_LENGTH);
  const name = get('name');
  const mediaType = get('mediaType');
  const descriptor = {
    blobId: get('blobId'),
    key,
    size: get('size'),
    cipherSize: get('cipherSize'),
    sha256,
    chunkSize: get('chunkSize'),
    ...(name === undefined ? {} : { name }),
    ...(mediaType === undefined ? {} : { mediaType }),
  } as AttachmentDescriptor;
  return checkDescriptor(descriptor, fail);
}

function checkServer(op: string, options: AttachmentServerOptions): string {
  if (typeof options !== 'object' || options === null) throw invalid(op, 'expected options');
  if (typeof options.token !== 'string' || options.token.length === 0)
    throw invalid(op, '"token" expected a session token');
  if (options.fetch !== undefined && typeof options.fetch !== 'function')
    throw invalid(op, '"fetch" expected a function');
  return parseBase(options.server);
}

/** The plaintext as a ReadableStream, whatever form it came in. */
function sourceStream(
  op: string,
  data: UploadAttachmentOptions['data'],
): { stream: ReadableStream<Uint8Array>; total?: number } {
  if (data instanceof Uint8Array) {
    let offset = 0;
    return {
      total: data.length,
      stream: new ReadableStream<Uint8Array>({
        pull(controller) {
          if (offset >= data.length) return controller.close();
          controller.enqueue(data.subarray(offset, offset + PIECE));
          offset += PIECE;
        },
      }),
    };
  }
  if (typeof (data as ReadableStream<Uint8Array>)?.getReader === 'function')
    return { stream: data as ReadableStream<Uint8Array> };
  if (typeof (data as AsyncIterable<Uint8Array>)?.[Symbol.asyncIterator] === 'function') {
    const iterator = (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    return {
      stream: new ReadableStream<Uint8Array>({
        async pull(controller) {
          const next = await iterator.next();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        },
        async cancel(reason) {
          await iterator.return?.(reason);
        },
      }),
    };
  }
  throw invalid(op, '"data" expected a Uint8Array, an AsyncIterable or a ReadableStream of bytes');
}

/**
 * Encrypts `data` under a fresh key (stream-v1, context `coffer/v1/attachment`) and uploads
 * the ciphertext as it is produced (`POST /v1/blobs`): nothing is buffered whole, so files
 * larger than memory work. Returns the descriptor to send to the recipients.
 *
 * The request body is a stream: Node's fetch and Chromium (over HTTP/2) send it as it comes;
 * where a platform cannot stream request bodies, pass a `fetch` that can.
 *
 * @throws {SdkError} `INVALID_ARGUMENT` for bad options or non-bytes in `data` (also for a file
 *   over the server's size limit); `QUOTA_EXCEEDED`; `NOT_LOGGED_IN`; `NETWORK`; `ABORTED`;
 *   `PROTOCOL_VIOLATION` when the server's answer does not fit what was sent.
 * @example
 * ```ts
 * const descriptor = await encryptAndUpload({ server, token, data: fileBytes, name: 'a.pdf' });
 * ```
 */
export async function encryptAndUpload(
  options: UploadAttachmentOptions,
): Promise<AttachmentDescriptor> {
  const op = 'attachments.upload';
  const base = checkServer(op, options);
  const name = checkName(options.name, (m) => invalid(op, m));
  const mediaType = checkMediaType(options.mediaType, (m) => invalid(op, m));
  const chunkSize = options.chunkSize ?? ATTACHMENT_CHUNK_SIZE;
  if (!isChunkSize(chunkSize))
    throw invalid(op, '"chunkSize" expected a power of two from 1024 to 16777216');
  const key = randomBytes(ATTACHMENT_KEY_LENGTH);
  try {
    return await upload(op, options, { base, name, mediaType, chunkSize, key });
  } catch (err) {
    // The key of a file that never reached the server protects nothing; drop it (best effort).
    wipe(key);
    throw err;
  }
}

async function upload(
  op: string,
  options: UploadAttachmentOptions,
  checked: {
    readonly base: string;
    readonly name: string | undefined;
    readonly mediaType: string | undefined;
    readonly chunkSize: number;
    readonly key: Uint8Array;
  },
): Promise<AttachmentDescriptor> {
  const { base, name, mediaType, chunkSize, key } = checked;
  const { stream: source, total } = sourceStream(op, options.data);
  const fetchFn: FetchLike = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
  const aeadKey = await importAeadKey(key);
  let size = 0;
  let cipherSize = 0;
  let finished = false;
  let inputError: SdkError | undefined;
  const hash = createSha256();

  const counted = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (!(chunk instanceof Uint8Array)) {
        inputError = invalid(op, '"data" must yield Uint8Array chunks');
        throw inputError;
      }
      size += chunk.length;
      controller.enqueue(chunk);
      options.onProgress?.(size, total);
    },
  });
  const hashed = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      hash.update(chunk);
      cipherSize += chunk.length;
      controller.enqueue(chunk);
    },
    flush() {
      finished = true;
    },
  });
  // A failure to read the data is the caller's (a file that cannot be read), never the
  // network's: it is kept apart from what the upload itself throws.
  const reader = source.getReader();
  const guarded = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (err) {
        const code = (err as { code?: unknown })?.code;
        inputError ??= new SdkError(
          'STORE_UNAVAILABLE',
          op,
          `the data to upload could not be read (${typeof code === 'string' ? code : 'i/o error'})`,
          { cause: err },
        );
        controller.error(inputError);
        return;
      }
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  const body = guarded
    .pipeThrough(counted)
    .pipeThrough(createEncryptStream(aeadKey, { context: CONTEXT, chunkSize }))
    .pipeThrough(hashed);

  let response: Response;
  let text: string;
  try {
    if (options.signal?.aborted) throw options.signal.reason;
    response = await fetchFn(`${base}v1/blobs`, {
      method: 'POST',
      headers: {
        accept: 'application/json',
        'content-type': 'application/octet-stream',
        authorization: `Bearer ${options.token}`,
      },
      body,
      // Node's fetch sends a stream body only half-duplex, and says so.
      duplex: 'half',
      redirect: 'error',
      ...(options.signal ? { signal: options.signal } : {}),
    } as RequestInit);
    text = await readCappedText(response, MAX_ANSWER_BYTES, op);
  } catch (err) {
    if (inputError) throw inputError;
    if (SdkError.is(err)) throw err;
    if (CryptoError.is(err)) throw invalid(op, 'the file could not be encrypted');
    if (options.signal?.aborted)
      throw new SdkError('ABORTED', op, 'aborted by the caller', { cause: err });
    throw new SdkError('NETWORK', op, 'the server could not be reached', {
      cause: err,
      retryable: true,
    });
  }
  if (inputError) throw inputError;
  if (!response.ok) throw errorFromResponse(op, response, text);
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = undefined;
  }
  const a = (typeof answer === 'object' && answer !== null ? answer : {}) as Record<
    string,
    unknown
  >;
  if (!finished)
    throw new SdkError('PROTOCOL_VIOLATION', op, 'the server answered before the upload ended');
  if (typeof a.blobId !== 'string' || !BLOB_ID.test(a.blobId) || a.size !== cipherSize)
    throw new SdkError(
      'PROTOCOL_VIOLATION',
      op,
      'the server answered the upload with something else',
    );
  const descriptor: AttachmentDescriptor = {
    blobId: a.blobId,
    key,
    size,
    cipherSize,
    sha256: hash.digest(),
    chunkSize,
    ...(name === undefined ? {} : { name }),
    ...(mediaType === undefined ? {} : { mediaType }),
  };
  return checkDescriptor(descriptor, (m) => new SdkError('PROTOCOL_VIOLATION', op, m));
}

/**
 * Downloads an attachment (`GET /v1/blobs/{blobId}`) and decrypts it as it arrives, as a
 * stream of plaintext.
 *
 * Each chunk is released only after its tag verifies, so every byte read is authentic. But a
 * server can still cut the stream short, and that shows only at the end: the stream errors
 * with `ATTACHMENT_CORRUPT` instead of closing. Treat the plaintext as complete only when the
 * stream has closed without error (write it to a temporary file and rename it then, as
 * `saveAttachment` in `@coffer/sdk/node` does). The last chunk is released only after the
 * ciphertext's length and SHA-256 have matched the descriptor.
 *
 * @throws {SdkError} (the call) `INVALID_ARGUMENT` for a bad descriptor or options; `NOT_FOUND`
 *   for a blob the server does not have (expired, deleted); `NOT_LOGGED_IN`; `NETWORK`;
 *   `ABORTED`; `ATTACHMENT_CORRUPT` for a length that does not match. (The stream) errors with
 *   `ATTACHMENT_CORRUPT` for any byte, chunk or length that does not verify, and `NETWORK` when
 *   the connection drops.
 * @example
 * ```ts
 * const plaintext = await downloadAndDecrypt({ server, token, descriptor });
 * for await (const chunk of plaintext) await sink.write(chunk);
 * ```
 */
export async function downloadAndDecrypt(
  options: DownloadAttachmentOptions,
): Promise<ReadableStream<Uint8Array>> {
  const op = 'attachments.download';
  const base = checkServer(op, options);
  const d = checkDescriptor(options.descriptor, (m) => invalid(op, `"descriptor": ${m}`));
  const fetchFn: FetchLike = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
  const aeadKey = await importAeadKey(d.key);

  let response: Response;
  try {
    if (options.signal?.aborted) throw options.signal.reason;
    response = await fetchFn(`${base}v1/blobs/${d.blobId}`, {
      method: 'GET',
      headers: { accept: 'application/octet-stream', authorization: `Bearer ${options.token}` },
      redirect: 'error',
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    if (options.signal?.aborted)
      throw new SdkError('ABORTED', op, 'aborted by the caller', { cause: err });
    throw new SdkError('NETWORK', op, 'the server could not be reached', {
      cause: err,
      retryable: true,
    });
  }
  if (!response.ok)
    throw errorFromResponse(
      op,
      response,
      await readCappedText(response, MAX_ANSWER_BYTES, op).catch(() => ''),
    );
  const declared = response.headers.get('content-length');
  if (response.body === null || (declared !== null && declared !== String(d.cipherSize))) {
    await response.body?.cancel().catch(() => {});
    throw corrupt(op, `the attachment does not have the length the descriptor gives`);
  }

  // Before decryption: the ciphertext's length and SHA-256. Its flush runs before the decryptor's,
  // so a mismatch stops the final chunk from ever being released.
  const hash = createSha256();
  let received = 0;
  const verified = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      received += chunk.length;
      if (received > d.cipherSize) throw corrupt(op, `the attachment is longer than described`);
      hash.update(chunk);
      controller.enqueue(chunk);
    },
    flush() {
      if (received !== d.cipherSize) throw corrupt(op, `the attachment is shorter than described`);
      if (!constantTimeEqual(hash.digest(), d.sha256))
        throw corrupt(op, `the attachment does not have the described sha-256`);
    },
  });
  let released = 0;
  const counted = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      released += chunk.length;
      if (released > d.size) throw corrupt(op, `the attachment decrypts to more than described`);
      controller.enqueue(chunk);
      options.onProgress?.(released, d.size);
    },
    flush() {
      if (released !== d.size) throw corrupt(op, `the attachment decrypts to less than described`);
    },
  });
  const inner = response.body
    .pipeThrough(verified)
    .pipeThrough(createDecryptStream(aeadKey, { context: CONTEXT }))
    .pipeThrough(counted)
    .getReader();

  // The caller sees SdkErrors only: a chunk that fails to open is ATTACHMENT_CORRUPT, whatever
  // the crypto layer calls it; a body that stops arriving is NETWORK.
  const mapError = (err: unknown): SdkError => {
    if (SdkError.is(err)) return err;
    if (CryptoError.is(err)) return corrupt(op, `the attachment does not decrypt`, err);
    if (options.signal?.aborted)
      return new SdkError('ABORTED', op, 'aborted by the caller', { cause: err });
    return new SdkError('NETWORK', op, 'the download broke off', { cause: err, retryable: true });
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await inner.read();
      } catch (err) {
        controller.error(mapError(err));
        return;
      }
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel(reason) {
      await inner.cancel(reason).catch(() => {});
    },
  });
}
