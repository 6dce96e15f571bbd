import { fromBase64url } from '@coffer/crypto';

/**
 * Strict readers for JSON that comes from outside (server responses, stored records). They
 * throw {@link ShapeError}, which the caller turns into its own opaque error
 * (`PROTOCOL_VIOLATION` for the server, `STORE_CORRUPT` for the store), naming only the field.
 */
export class ShapeError extends Error {
  override readonly name = 'ShapeError';
}

export type JsonObject = { readonly [key: string]: unknown };

export function asObject(value: unknown, what: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ShapeError(`${what} expected an object`);
  }
  return value as JsonObject;
}

export function str(obj: JsonObject, field: string): string {
  const v = obj[field];
  if (typeof v !== 'string') throw new ShapeError(`"${field}" expected a string`);
  return v;
}

export function optStr(obj: JsonObject, field: string): string | undefined {
  return obj[field] === undefined ? undefined : str(obj, field);
}

/** A non-negative safe integer (sequence numbers, versions, times in ms). */
export function int(obj: JsonObject, field: string): number {
  const v = obj[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new ShapeError(`"${field}" expected a non-negative integer`);
  }
  return v;
}

/** b64url bytes, with an exact length when given. */
export function bytes(obj: JsonObject, field: string, length?: number): Uint8Array {
  let out: Uint8Array;
  try {
    out = fromBase64url(str(obj, field));
  } catch {
    throw new ShapeError(`"${field}" expected b64url`);
  }
  if (length !== undefined && out.length !== length) {
    throw new ShapeError(`"${field}" expected ${length} bytes, got ${out.length}`);
  }
  return out;
}

export function array(obj: JsonObject, field: string): readonly unknown[] {
  const v = obj[field];
  if (!Array.isArray(v)) throw new ShapeError(`"${field}" expected an array`);
  return v;
}
