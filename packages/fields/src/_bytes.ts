import { FieldsError } from './errors.js';

const encoder = new TextEncoder();

/** Longest table, column, index or tenant name (spec/field-v1.md §1). */
export const MAX_NAME_BYTES = 255;
/** Longest row id: primary keys are ids, not data. */
export const MAX_ROW_ID_BYTES = 1024;

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** lp(x) = uint16_be(len) || utf8(x), checked against `max` bytes (spec §1). */
/**
 * lp() of an identifier (tenant, table, column, index name): also refuses control characters,
 * so that names can never run into each other in caches or logs.
 */
export function nameLp(operation: string, what: string, text: string): Uint8Array {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  if (typeof text === 'string' && /[\u0000-\u001f\u007f]/.test(text)) {
    throw new FieldsError(
      'INVALID_ARGUMENT',
      operation,
      `"${what}" must not contain control characters`,
    );
  }
  return lp(operation, what, text);
}

export function lp(
  operation: string,
  what: string,
  text: string,
  max = MAX_NAME_BYTES,
): Uint8Array {
  if (typeof text !== 'string' || text.length === 0) {
    throw new FieldsError('INVALID_ARGUMENT', operation, `"${what}" expected a non-empty string`);
  }
  const bytes = utf8(text);
  if (bytes.length > max) {
    throw new FieldsError('INVALID_ARGUMENT', operation, `"${what}" is longer than ${max} bytes`);
  }
  const out = new Uint8Array(2 + bytes.length);
  out[0] = bytes.length >> 8;
  out[1] = bytes.length & 0xff;
  out.set(bytes, 2);
  return out;
}

/** Concatenation, from @coffer/crypto. */
export { concatBytes as concat } from '@coffer/crypto';

export function uint32be(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}
