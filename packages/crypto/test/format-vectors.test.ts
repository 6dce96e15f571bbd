import { describe, expect, test } from 'vitest';
import type { AeadSuite } from '../src/index.js';
import { CryptoError, decrypt, importAeadKey, streamDecrypt, toHex } from '../src/index.js';
import { collect, streamThrough } from './_helpers.js';
import { hex } from './_vectors.js';
import envelopeFile from './vectors/envelope-v1.json' with { type: 'json' };
import streamFile from './vectors/stream-v1.json' with { type: 'json' };

// Our own formats' fixtures (generated independently of src/ by vectors/generate.ts). They are
// kept forever: every release must open every "ok" vector and reject every other one with the
// code it names.

interface Vector {
  id: string;
  suite: AeadSuite;
  key: string;
  keyId: string;
  context: string;
  expect: 'ok' | 'DECRYPTION_FAILED' | 'UNSUPPORTED_VERSION';
  plaintext?: string;
}

async function outcome(run: () => Promise<Uint8Array>): Promise<string> {
  try {
    return `ok:${toHex(await run())}`;
  } catch (err) {
    if (CryptoError.is(err)) return err.code;
    throw err;
  }
}

function expected(v: Vector): string {
  return v.expect === 'ok' ? `ok:${v.plaintext}` : v.expect;
}

describe('envelope-v1 fixtures', () => {
  const vectors = envelopeFile.vectors as (Vector & { envelope: string })[];
  test.each(vectors.map((v) => [v.id, v] as const))('%s', async (_id, v) => {
    const key = await importAeadKey(hex(v.key), { suite: v.suite, id: hex(v.keyId) });
    const got = await outcome(() => decrypt(key, hex(v.envelope), { context: hex(v.context) }));
    expect(got).toBe(expected(v));
  });
  test('cover both suites and both outcomes', () => {
    expect(vectors.filter((v) => v.expect === 'ok').length).toBeGreaterThanOrEqual(8);
    expect(new Set(vectors.map((v) => v.suite)).size).toBe(2);
  });
});

describe('stream-v1 fixtures', () => {
  const vectors = streamFile.vectors as (Vector & { stream: string; chunkSize: number })[];
  test.each(vectors.map((v) => [v.id, v] as const))('%s', async (_id, v) => {
    const key = await importAeadKey(hex(v.key), { suite: v.suite, id: hex(v.keyId) });
    const options = { context: hex(v.context) };
    const oneShot = await outcome(() => streamDecrypt(key, hex(v.stream), options));
    // The TransformStream must agree with the one-shot decoder, fed in awkward pieces.
    const piecewise = await outcome(async () =>
      collect(await streamThrough(key, hex(v.stream), options, 333)),
    );
    expect(oneShot).toBe(expected(v));
    expect(piecewise).toBe(expected(v));
  });
});
