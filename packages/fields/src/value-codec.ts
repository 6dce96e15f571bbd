import { utf8Decode } from '@coffer/crypto';
import { utf8 } from './_bytes.js';
import { FieldsError } from './errors.js';

/** A JSON value (objects and arrays are stored with the JSON type). */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** Every value a field can hold; each round-trips exactly, keeping its type. */
export type FieldValue = string | number | bigint | boolean | Date | Uint8Array | JsonValue;

export type FieldType = 'string' | 'number' | 'bigint' | 'boolean' | 'date' | 'json' | 'bytes';

const TYPE_CODE: Record<FieldType, number> = {
  string: 0x01,
  number: 0x02,
  bigint: 0x03,
  boolean: 0x04,
  date: 0x05,
  json: 0x06,
  bytes: 0x07,
};
const CODE_TYPE = new Map(Object.entries(TYPE_CODE).map(([t, c]) => [c, t as FieldType]));

/** Padding blocks from 8 bytes to 4 KiB (spec/field-v1.md §3). */
export const MIN_PAD_BLOCK = 8;
export const MAX_PAD_BLOCK = 4096;

/** The type a value is stored as. */
export function typeOf(value: FieldValue): FieldType {
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'number':
      return 'number';
    case 'bigint':
      return 'bigint';
    case 'boolean':
      return 'boolean';
    default:
      if (value instanceof Date) return 'date';
      if (value instanceof Uint8Array) return 'bytes';
      return 'json';
  }
}

/**
 * spec §3: plaintext = type || pad_flag || value_bytes || [0x80 || 0x00*]
 *
 * `minLength` (re-encryption only) pads to at least that many bytes, the length of the padded
 * plaintext being replaced, so that a rotation never reveals a shorter length than before.
 */
export function encodeValue(
  operation: string,
  value: FieldValue,
  padBlock?: number,
  minLength?: number,
): Uint8Array {
  if (typeof value === 'string' && padBlock === undefined && minLength === undefined) {
    const length = Buffer.byteLength(value, 'utf8');
    const out = Buffer.allocUnsafe(2 + length);
    out[0] = TYPE_CODE.string;
    out[1] = 0;
    out.write(value, 2, 'utf8');
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  }
  const type = typeOf(value);
  let body: Uint8Array;
  switch (type) {
    case 'string':
      body = utf8(value as string);
      break;
    case 'number': {
      body = new Uint8Array(8);
      new DataView(body.buffer).setFloat64(0, value as number);
      break;
    }
    case 'bigint':
      body = utf8((value as bigint).toString(10));
      break;
    case 'boolean':
      body = Uint8Array.of(value ? 1 : 0);
      break;
    case 'date': {
      const ms = (value as Date).getTime();
      if (!Number.isFinite(ms))
        throw new FieldsError('INVALID_ARGUMENT', operation, 'invalid Date');
      body = new Uint8Array(8);
      new DataView(body.buffer).setBigInt64(0, BigInt(ms));
      break;
    }
    case 'bytes':
      body = value as Uint8Array;
      break;
    case 'json': {
      let text: string | undefined;
      try {
        text = JSON.stringify(value);
      } catch {
        text = undefined;
      }
      if (text === undefined)
        throw new FieldsError('INVALID_ARGUMENT', operation, 'value is not JSON-serialisable');
      body = utf8(text);
      break;
    }
  }
  if (padBlock === undefined && minLength === undefined) {
    const out = new Uint8Array(2 + body.length);
    out[0] = TYPE_CODE[type];
    out.set(body, 2);
    return out;
  }
  if (
    padBlock !== undefined &&
    (!Number.isInteger(padBlock) || padBlock < MIN_PAD_BLOCK || padBlock > MAX_PAD_BLOCK)
  ) {
    throw new FieldsError(
      'INVALID_ARGUMENT',
      operation,
      `"padTo" expected an integer from ${MIN_PAD_BLOCK} to ${MAX_PAD_BLOCK}`,
    );
  }
  // spec §3, re-encryption: at least the old padded length, then up to the block (if any).
  const unpadded = Math.max(2 + body.length + 1, minLength ?? 0);
  const block = padBlock ?? 1;
  const out = new Uint8Array(Math.ceil(unpadded / block) * block);
  out[0] = TYPE_CODE[type];
  out[1] = 0x01;
  out.set(body, 2);
  out[2 + body.length] = 0x80;
  return out;
}

/** Inverse of {@link encodeValue}; any malformed plaintext is `DECRYPTION_FAILED` (spec §3). */
export function decodeValue(operation: string, plaintext: Uint8Array): FieldValue {
  if (plaintext[0] === 0x01 && plaintext[1] === 0) {
    try {
      return utf8Decode(plaintext.subarray(2));
    } catch {
      throw new FieldsError('DECRYPTION_FAILED', operation, 'decryption failed');
    }
  }
  const fail = () => new FieldsError('DECRYPTION_FAILED', operation, 'decryption failed');
  const type = CODE_TYPE.get(plaintext[0] ?? -1);
  const padFlag = plaintext[1];
  if (!type || (padFlag !== 0 && padFlag !== 1)) throw fail();
  let end = plaintext.length;
  if (padFlag === 1) {
    while (end > 2 && plaintext[end - 1] === 0) end--;
    if (end <= 2 || plaintext[end - 1] !== 0x80) throw fail();
    end--;
  }
  const body = plaintext.subarray(2, end);
  try {
    switch (type) {
      case 'string':
        return utf8Decode(body);
      case 'number':
        if (body.length !== 8) throw fail();
        return new DataView(body.buffer, body.byteOffset, 8).getFloat64(0);
      case 'bigint': {
        const text = utf8Decode(body);
        if (!/^(0|-?[1-9][0-9]*)$/.test(text)) throw fail();
        return BigInt(text);
      }
      case 'boolean':
        if (body.length !== 1 || body[0]! > 1) throw fail();
        return body[0] === 1;
      case 'date': {
        if (body.length !== 8) throw fail();
        const ms = new DataView(body.buffer, body.byteOffset, 8).getBigInt64(0);
        const date = new Date(Number(ms));
        if (!Number.isFinite(date.getTime()) || BigInt(date.getTime()) !== ms) throw fail();
        return date;
      }
      case 'json':
        return JSON.parse(utf8Decode(body)) as JsonValue;
      case 'bytes':
        return body.slice();
    }
  } catch (err) {
    if (FieldsError.is(err)) throw err;
    throw fail();
  }
}
