// Generates envelope-v1.json and stream-v1.json from the specs in ../../spec, independently of
// src/: it builds every byte with node:crypto and @noble/ciphers directly, so the fixtures test
// the implementation instead of echoing it. Deterministic: keys, nonces and salts come from
// SHA-256 of fixed labels, so a re-run writes identical files.
//
//   npx tsx packages/crypto/test/vectors/generate.ts
//
// The committed JSON files are fixtures kept forever: once released, a vector is never changed
// or removed, only added to (old data must always decrypt).
import { createCipheriv, createHash, hkdfSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';

type Expect = 'ok' | 'DECRYPTION_FAILED' | 'UNSUPPORTED_VERSION';
const SUITE = { 'AES-256-GCM': 0x01, 'XChaCha20-Poly1305': 0x02 } as const;
type Suite = keyof typeof SUITE;

const out = dirname(fileURLToPath(import.meta.url));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
const cat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
function det(label: string, length: number): Uint8Array {
  const bytes = Buffer.alloc(length);
  for (let i = 0, o = 0; o < length; i++, o += 32) {
    createHash('sha256').update(`coffer-vectors/${label}/${i}`).digest().copy(bytes, o);
  }
  return new Uint8Array(bytes);
}
function flip(b: Uint8Array, i: number, bit = 0): Uint8Array {
  const c = b.slice();
  c[i]! ^= 1 << bit;
  return c;
}

function aead(
  suite: Suite,
  key: Uint8Array,
  nonce: Uint8Array,
  pt: Uint8Array,
  aad: Uint8Array,
): Uint8Array {
  if (suite === 'XChaCha20-Poly1305') return xchacha20poly1305(key, nonce, aad).encrypt(pt);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  return cat(c.update(pt), c.final(), c.getAuthTag());
}

// ---- envelope-v1 (spec/envelope-v1.md) ----

function envelope(
  suite: Suite,
  key: Uint8Array,
  kid: Uint8Array,
  nonce: Uint8Array,
  pt: Uint8Array,
  ctx: Uint8Array,
) {
  const header = cat(Uint8Array.of(0x01, SUITE[suite], kid.length), kid); // §1
  return cat(header, nonce, aead(suite, key, nonce, pt, cat(header, ctx))); // §3
}

function envelopeVectors() {
  const vectors: object[] = [];
  const add = (id: string, description: string, v: Record<string, unknown>, expect: Expect) =>
    vectors.push({ id, description, ...v, expect });
  for (const suite of Object.keys(SUITE) as Suite[]) {
    const s = suite === 'AES-256-GCM' ? 'aes' : 'xchacha';
    const nn = suite === 'AES-256-GCM' ? 12 : 24;
    const key = det(`${s}/key`, 32);
    const base = { suite, key: hex(key) };
    const cases: [string, string, Uint8Array, Uint8Array, Uint8Array][] = [
      [
        'empty',
        'empty plaintext, no key id, no context',
        new Uint8Array(0),
        new Uint8Array(0),
        new Uint8Array(0),
      ],
      [
        'basic',
        'short text with key id and row context',
        utf8('k1'),
        utf8('hello, coffer'),
        utf8('users/42/email'),
      ],
      [
        'max-kid',
        '64-byte key id (the maximum)',
        det(`${s}/kid64`, 64),
        utf8('x'),
        new Uint8Array(0),
      ],
      [
        'long',
        '1000-byte plaintext, binary context',
        utf8('key-2026-11'),
        det(`${s}/pt1000`, 1000),
        det(`${s}/ctx`, 40),
      ],
    ];
    for (const [name, description, kid, pt, ctx] of cases) {
      const env = envelope(suite, key, kid, det(`${s}/${name}/nonce`, nn), pt, ctx);
      add(
        `${s}-${name}`,
        description,
        { ...base, keyId: hex(kid), context: hex(ctx), envelope: hex(env), plaintext: hex(pt) },
        'ok',
      );
    }
    // Negative cases, all from the "basic" envelope.
    const kid = utf8('k1');
    const ctx = utf8('users/42/email');
    const env = envelope(suite, key, kid, det(`${s}/basic/nonce`, nn), utf8('hello, coffer'), ctx);
    const neg = (
      name: string,
      description: string,
      bytes: Uint8Array,
      expect: Expect,
      over: Record<string, string> = {},
    ) =>
      add(
        `${s}-${name}`,
        description,
        { ...base, keyId: hex(kid), context: hex(ctx), envelope: hex(bytes), ...over },
        expect,
      );
    const headerLength = 3 + kid.length;
    neg('bad-tag', 'last tag bit flipped', flip(env, env.length - 1, 7), 'DECRYPTION_FAILED');
    neg(
      'bad-ct',
      'first ciphertext bit flipped',
      flip(env, headerLength + nn),
      'DECRYPTION_FAILED',
    );
    neg('bad-nonce', 'nonce bit flipped', flip(env, headerLength), 'DECRYPTION_FAILED');
    neg(
      'bad-kid',
      'key id byte changed (header is associated data)',
      flip(env, 3),
      'DECRYPTION_FAILED',
    );
    neg('bad-kid-len', 'kid_len changed', flip(env, 2), 'DECRYPTION_FAILED');
    neg(
      'kid-len-over-max',
      'kid_len 65',
      cat(Uint8Array.of(1, SUITE[suite], 65), det('kid65', 65 + nn + 16)),
      'DECRYPTION_FAILED',
    );
    neg('other-suite', 'suite byte of the other suite', flip(env, 1, 0), 'DECRYPTION_FAILED');
    neg(
      'unknown-suite',
      'suite byte 0x7f',
      (() => {
        const e = env.slice();
        e[1] = 0x7f;
        return e;
      })(),
      'DECRYPTION_FAILED',
    );
    neg(
      'version-2',
      'version byte 0x02',
      (() => {
        const e = env.slice();
        e[0] = 0x02;
        return e;
      })(),
      'UNSUPPORTED_VERSION',
    );
    neg(
      'version-0',
      'version byte 0x00',
      (() => {
        const e = env.slice();
        e[0] = 0x00;
        return e;
      })(),
      'UNSUPPORTED_VERSION',
    );
    neg('empty-input', 'zero bytes', new Uint8Array(0), 'UNSUPPORTED_VERSION');
    neg('truncated-tag', 'last byte removed', env.subarray(0, env.length - 1), 'DECRYPTION_FAILED');
    neg(
      'header-only',
      'header without nonce or tag',
      env.subarray(0, headerLength),
      'DECRYPTION_FAILED',
    );
    neg('appended', 'one byte appended', cat(env, Uint8Array.of(0)), 'DECRYPTION_FAILED');
    neg('wrong-context', 'opened with another row context', env, 'DECRYPTION_FAILED', {
      context: hex(utf8('users/43/email')),
    });
    neg('no-context', 'opened without its context', env, 'DECRYPTION_FAILED', { context: '' });
    neg('wrong-key', 'opened with another key of the same id', env, 'DECRYPTION_FAILED', {
      key: hex(det(`${s}/other-key`, 32)),
    });
    neg('wrong-key-id', 'opened with a key whose id differs', env, 'DECRYPTION_FAILED', {
      keyId: hex(utf8('k2')),
    });
  }
  return vectors;
}

// ---- stream-v1 (spec/stream-v1.md) ----

function stream(
  suite: Suite,
  key: Uint8Array,
  kid: Uint8Array,
  log2: number,
  salt: Uint8Array,
  chunks: Uint8Array[],
  ctx: Uint8Array,
  finalAt = chunks.length - 1,
) {
  const header = cat(Uint8Array.of(0x01, SUITE[suite], log2, kid.length), kid, salt); // §1
  const streamKey = new Uint8Array(hkdfSync('sha256', key, salt, utf8('coffer/v1/stream'), 32)); // §2
  const aad = cat(header, ctx);
  const sealed = chunks.map((pt, i) => {
    const counter = Buffer.alloc(12);
    counter.writeUInt32BE(i, 7);
    counter[11] = i === finalAt ? 1 : 0;
    const nonce = suite === 'AES-256-GCM' ? counter : cat(new Uint8Array(12), counter);
    return aead(suite, streamKey, nonce, pt, aad);
  });
  return { header, sealed };
}

function split(data: Uint8Array, size: number): Uint8Array[] {
  if (data.length === 0) return [data];
  const parts: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return parts;
}

function streamVectors() {
  const vectors: object[] = [];
  const S = 1024; // log2 = 10: the smallest chunk size keeps the fixtures small
  for (const suite of Object.keys(SUITE) as Suite[]) {
    const s = suite === 'AES-256-GCM' ? 'aes' : 'xchacha';
    const key = det(`${s}/stream-key`, 32);
    const kid = utf8('files-1');
    const ctx = utf8('attachment/7');
    const base = { suite, key: hex(key), keyId: hex(kid), context: hex(ctx), chunkSize: S };
    const add = (
      id: string,
      description: string,
      bytes: Uint8Array,
      expect: Expect,
      plaintext?: Uint8Array,
      over: Record<string, unknown> = {},
    ) =>
      vectors.push({
        id: `${s}-${id}`,
        description,
        ...base,
        stream: hex(bytes),
        ...(plaintext ? { plaintext: hex(plaintext) } : {}),
        ...over,
        expect,
      });
    const salt = (n: string) => det(`${s}/${n}/salt`, 32);
    for (const [name, length] of [
      ['empty', 0],
      ['one-byte', 1],
      ['one-chunk', S],
      ['chunk-plus-one', S + 1],
      ['three-chunks', 3 * S],
    ] as const) {
      const pt = det(`${s}/${name}/pt`, length);
      const { header, sealed } = stream(suite, key, kid, 10, salt(name), split(pt, S), ctx);
      add(name, `${length}-byte payload`, cat(header, ...sealed), 'ok', pt);
    }
    // Negative cases from a 2.5-chunk payload: chunks c0 (S), c1 (S), c2 (S/2, final).
    const pt = det(`${s}/neg/pt`, 2 * S + S / 2);
    const parts = split(pt, S);
    const { header, sealed } = stream(suite, key, kid, 10, salt('neg'), parts, ctx);
    const [c0, c1, c2] = sealed as [Uint8Array, Uint8Array, Uint8Array];
    const good = cat(header, c0, c1, c2);
    add('three-chunks-partial', '2.5-chunk payload', good, 'ok', pt);
    add(
      'truncated-last-chunk',
      'final chunk dropped (stream ends on a non-final chunk)',
      cat(header, c0, c1),
      'DECRYPTION_FAILED',
    );
    add(
      'truncated-mid-chunk',
      'cut inside the final chunk',
      good.subarray(0, good.length - 5),
      'DECRYPTION_FAILED',
    );
    add('reordered', 'chunks 0 and 1 swapped', cat(header, c1, c0, c2), 'DECRYPTION_FAILED');
    add('duplicated', 'chunk 0 repeated', cat(header, c0, c0, c1, c2), 'DECRYPTION_FAILED');
    add('dropped-middle', 'chunk 1 dropped', cat(header, c0, c2), 'DECRYPTION_FAILED');
    add(
      'appended-bytes',
      'bytes after the final chunk',
      cat(good, Uint8Array.of(0, 0, 0)),
      'DECRYPTION_FAILED',
    );
    const early = stream(suite, key, kid, 10, salt('neg'), parts.slice(0, 2), ctx);
    add(
      'appended-chunk',
      'a valid non-final chunk sealed as final, then another chunk',
      cat(header, early.sealed[0]!, early.sealed[1]!, c2),
      'DECRYPTION_FAILED',
    );
    const emptyFinal = stream(
      suite,
      key,
      kid,
      10,
      salt('neg'),
      [parts[0]!, parts[1]!, new Uint8Array(0)],
      ctx,
    );
    add(
      'empty-final-chunk',
      'an empty final chunk after full chunks (non-canonical)',
      cat(header, ...emptyFinal.sealed),
      'DECRYPTION_FAILED',
    );
    const noFinal = stream(suite, key, kid, 10, salt('neg'), parts, ctx, -1);
    add(
      'no-final-flag',
      'every chunk sealed as non-final',
      cat(header, ...noFinal.sealed),
      'DECRYPTION_FAILED',
    );
    add('header-only', 'header with no chunk', header, 'DECRYPTION_FAILED');
    add('bad-salt', 'salt bit flipped', flip(good, header.length - 1), 'DECRYPTION_FAILED');
    add(
      'bad-chunk',
      'bit flipped in chunk 1',
      flip(good, header.length + c0.length + 3),
      'DECRYPTION_FAILED',
    );
    add('bad-log2', 'log2_chunk changed to 11', flip(good, 2, 0), 'DECRYPTION_FAILED');
    add(
      'log2-too-small',
      'log2_chunk 9',
      (() => {
        const g = good.slice();
        g[2] = 9;
        return g;
      })(),
      'DECRYPTION_FAILED',
    );
    add(
      'log2-too-large',
      'log2_chunk 25',
      (() => {
        const g = good.slice();
        g[2] = 25;
        return g;
      })(),
      'DECRYPTION_FAILED',
    );
    add(
      'kid-len-over-max',
      'kid_len 65',
      (() => {
        const g = good.slice();
        g[3] = 65;
        return g;
      })(),
      'DECRYPTION_FAILED',
    );
    add(
      'version-2',
      'version byte 0x02',
      (() => {
        const g = good.slice();
        g[0] = 2;
        return g;
      })(),
      'UNSUPPORTED_VERSION',
    );
    add('wrong-context', 'opened with another context', good, 'DECRYPTION_FAILED', undefined, {
      context: hex(utf8('attachment/8')),
    });
    add('wrong-key', 'opened with another key', good, 'DECRYPTION_FAILED', undefined, {
      key: hex(det(`${s}/other`, 32)),
    });
  }
  return vectors;
}

function write(name: string, format: string, vectors: object[]) {
  const doc = {
    format,
    generator: 'packages/crypto/test/vectors/generate.ts',
    notes:
      'Hex fields. expect: "ok" (opens to plaintext) or the error code decryption must fail with.',
    vectors,
  };
  writeFileSync(join(out, name), `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`${name}: ${vectors.length} vectors`);
}

write('envelope-v1.json', 'coffer envelope v1 (spec/envelope-v1.md)', envelopeVectors());
write('stream-v1.json', 'coffer stream v1 (spec/stream-v1.md)', streamVectors());
