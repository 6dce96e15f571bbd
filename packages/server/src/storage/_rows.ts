// Small conversions every store needs when reading rows back.

/** A bigint column as a number (node-postgres returns int8 as a string). */
export function num(value: number | string): number {
  return typeof value === 'number' ? value : Number(value);
}

/** A plain Uint8Array copy of driver bytes (both drivers return Buffers). */
export function bytes(value: Uint8Array): Uint8Array {
  return new Uint8Array(value);
}

/** The row id that binds a manifest's ciphertexts: account ids are b64url, so `:` is unambiguous. */
export function manifestRowId(accountId: string, seq: number): string {
  return `${accountId}:${seq}`;
}
