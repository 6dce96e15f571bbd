/**
 * Seals with a @noble cipher into a buffer that leaves `prefix` free bytes in front. The ChaCha
 * ciphers write straight into it; noble's GCM takes no output buffer, so it costs one copy.
 */
export function nobleSealInto(
  cipher: { encrypt(plaintext: Uint8Array, output?: Uint8Array): Uint8Array },
  plaintext: Uint8Array,
  prefix: number,
  writesIntoOutput: boolean,
): Uint8Array {
  if (prefix === 0) return cipher.encrypt(plaintext);
  const out = new Uint8Array(prefix + plaintext.length + 16);
  if (writesIntoOutput) cipher.encrypt(plaintext, out.subarray(prefix));
  else out.set(cipher.encrypt(plaintext), prefix);
  return out;
}
