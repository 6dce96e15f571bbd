/**
 * Overwrites secrets with zeros, best effort: JavaScript engines may have copied the bytes
 * elsewhere (see SECURITY.md). Call it when a key or plaintext buffer is no longer needed.
 *
 * @example wipe(sharedSecret, derivedKey);
 */
export function wipe(...buffers: Uint8Array[]): void {
  for (const b of buffers) b.fill(0);
}
