import { generateAeadKey } from '@coffer/crypto';
import {
  createFieldCipher,
  createKeyring,
  createLocalProvider,
  type KeyOperation,
  type KeyProvider,
} from '../src/index.js';

/** A local provider with one KEK, and a keyring wrapped by it. */
export async function setup() {
  const provider = await createLocalProvider({ kek1: generateAeadKey() });
  const keyring = await createKeyring(provider, 'kek1');
  return { provider, keyring, fields: createFieldCipher(keyring, provider) };
}

/** Wraps a provider, counting calls and optionally failing them (for caching and outage tests). */
export function instrumented(inner: KeyProvider) {
  const calls: KeyOperation['op'][] = [];
  let failWith: Error | undefined;
  const provider: KeyProvider = {
    kind: inner.kind,
    async keyOperation(request) {
      calls.push(request.op);
      if (failWith) throw failWith;
      return inner.keyOperation(request);
    },
  };
  return { provider, calls, fail: (err: Error | undefined) => (failWith = err) };
}

/** Copies `bytes` with one bit flipped. */
export function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = bytes.slice();
  copy[bit >> 3]! ^= 1 << (bit & 7);
  return copy;
}

/**
 * Copies a text-format ciphertext with one character of its tag changed. The character is
 * fourth from the end: a whole base64url digit, so the decoded bytes always change (the last
 * digit may carry bits a decoder ignores).
 */
export function tamperText(text: string): string {
  const at = text.length - 4;
  return `${text.slice(0, at)}${text[at] === 'A' ? 'B' : 'A'}${text.slice(at + 1)}`;
}

/** The FieldsError code a promise rejects with, or 'ok'. Other errors propagate. */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (err) {
    const e = err as { name?: unknown; code?: unknown };
    if (e.name === 'FieldsError' && typeof e.code === 'string') return e.code;
    throw err;
  }
}
