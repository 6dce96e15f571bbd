import { FieldsError } from '../errors.js';

/**
 * KMIP's Tag-Type-Length-Value encoding (KMIP 1.4 §9.1): a 3-byte tag, a 1-byte type, a 4-byte
 * big-endian length of the value without padding, then the value padded with zeros to a multiple
 * of 8 bytes. Structures hold a sequence of items and nothing else.
 *
 * The decoder is strict because its input comes off the network: every length must match its
 * type, padding must be zero, text must be UTF-8, and the items must fill their parent exactly.
 * Anything else is a `PROVIDER_ERROR`.
 */

/** Biggest message we encode or accept. Our requests and the answers to them fit in 1 KiB; a
 * bigger answer is not one we asked for, and a peer must not make us buffer megabytes. */
export const MAX_TTLV_MESSAGE_BYTES = 64 * 1024;

/** Deepest structure nesting we accept. The deepest reply we parse (Get: message, batch item,
 * payload, key, key block, key value) is 6 levels; the cap stops stack exhaustion. */
export const MAX_TTLV_DEPTH = 16;

const HEADER_BYTES = 8;

/** Item type codes (KMIP 1.4 §9.1.1.2). Date-Time Extended (KMIP 2.0) is not used here. */
const TYPE_CODES = {
  structure: 0x01,
  integer: 0x02,
  longInteger: 0x03,
  bigInteger: 0x04,
  enumeration: 0x05,
  boolean: 0x06,
  textString: 0x07,
  byteString: 0x08,
  dateTime: 0x09,
  interval: 0x0a,
} as const;

export type TtlvType = keyof typeof TYPE_CODES;

const TYPE_NAMES = new Map<number, TtlvType>(
  Object.entries(TYPE_CODES).map(([name, code]) => [code, name as TtlvType]),
);

export type TtlvStructure = {
  readonly tag: number;
  readonly type: 'structure';
  readonly value: readonly TtlvItem[];
};

export type TtlvItem =
  | TtlvStructure
  | { readonly tag: number; readonly type: 'integer'; readonly value: number }
  | { readonly tag: number; readonly type: 'longInteger'; readonly value: bigint }
  | { readonly tag: number; readonly type: 'bigInteger'; readonly value: Uint8Array }
  | { readonly tag: number; readonly type: 'enumeration'; readonly value: number }
  | { readonly tag: number; readonly type: 'boolean'; readonly value: boolean }
  | { readonly tag: number; readonly type: 'textString'; readonly value: string }
  | { readonly tag: number; readonly type: 'byteString'; readonly value: Uint8Array }
  | { readonly tag: number; readonly type: 'dateTime'; readonly value: bigint }
  | { readonly tag: number; readonly type: 'interval'; readonly value: number };

type ItemOf<T extends TtlvType> = Extract<TtlvItem, { type: T }>;

function malformed(reason: string): FieldsError {
  return new FieldsError('PROVIDER_ERROR', 'provider.kmip', `malformed kmip message: ${reason}`);
}

const hex = (tag: number): string => `0x${tag.toString(16).padStart(6, '0')}`;

const padded = (length: number): number => (length + 7) & ~7;

// KMIP tags are 0x42xxxx (standard) or 0x54xxxx (extensions); nothing else is a tag.
function isTag(tag: number): boolean {
  const prefix = tag >>> 16;
  return prefix === 0x42 || prefix === 0x54;
}

// ---------------------------------------------------------------------------------------------
// Constructors

export const ttlv = {
  structure: (tag: number, value: readonly TtlvItem[]): TtlvStructure => ({
    tag,
    type: 'structure',
    value,
  }),
  integer: (tag: number, value: number): TtlvItem => ({ tag, type: 'integer', value }),
  enumeration: (tag: number, value: number): TtlvItem => ({ tag, type: 'enumeration', value }),
  boolean: (tag: number, value: boolean): TtlvItem => ({ tag, type: 'boolean', value }),
  textString: (tag: number, value: string): TtlvItem => ({ tag, type: 'textString', value }),
  byteString: (tag: number, value: Uint8Array): TtlvItem => ({ tag, type: 'byteString', value }),
};

// ---------------------------------------------------------------------------------------------
// Encoding

const utf8 = new TextEncoder();

function valueLength(item: TtlvItem): number {
  switch (item.type) {
    case 'structure':
      return item.value.reduce((n, child) => n + HEADER_BYTES + padded(valueLength(child)), 0);
    case 'integer':
    case 'enumeration':
    case 'interval':
      return 4;
    case 'longInteger':
    case 'dateTime':
    case 'boolean':
      return 8;
    case 'bigInteger':
      return item.value.length;
    case 'textString':
      return utf8.encode(item.value).length;
    case 'byteString':
      return item.value.length;
  }
}

function encodeInto(item: TtlvItem, view: DataView, out: Uint8Array, offset: number): number {
  if (!isTag(item.tag)) throw new TypeError(`kmip: ${hex(item.tag)} is not a kmip tag`);
  const length = valueLength(item);
  view.setUint8(offset, item.tag >>> 16);
  view.setUint16(offset + 1, item.tag & 0xffff);
  view.setUint8(offset + 3, TYPE_CODES[item.type]);
  view.setUint32(offset + 4, length);
  const at = offset + HEADER_BYTES;
  switch (item.type) {
    case 'structure': {
      let cursor = at;
      for (const child of item.value) cursor = encodeInto(child, view, out, cursor);
      break;
    }
    case 'integer':
      view.setInt32(at, item.value);
      break;
    case 'enumeration':
    case 'interval':
      view.setUint32(at, item.value);
      break;
    case 'longInteger':
    case 'dateTime':
      view.setBigInt64(at, item.value);
      break;
    case 'boolean':
      view.setBigUint64(at, item.value ? 1n : 0n);
      break;
    case 'textString':
      out.set(utf8.encode(item.value), at);
      break;
    case 'bigInteger':
    case 'byteString':
      out.set(item.value, at);
      break;
  }
  // The buffer starts zeroed, so padding needs no writing.
  return at + padded(length);
}

/** Encodes one item (usually a whole Request Message). Throws on our own mistakes only. */
export function encodeTtlv(item: TtlvItem): Uint8Array {
  const total = HEADER_BYTES + padded(valueLength(item));
  if (total > MAX_TTLV_MESSAGE_BYTES) {
    throw new FieldsError(
      'INVALID_ARGUMENT',
      'provider.kmip',
      `request of ${total} bytes exceeds the ${MAX_TTLV_MESSAGE_BYTES}-byte cap`,
    );
  }
  const out = new Uint8Array(total);
  encodeInto(item, new DataView(out.buffer), out, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

// A copy, never a view: callers wipe the message buffer once decoded (and a Buffer's slice()
// is a view).
const copy = (bytes: Uint8Array, at: number, length: number): Uint8Array =>
  new Uint8Array(bytes.subarray(at, at + length));

const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function expectLength(tag: number, type: TtlvType, length: number, expected: number): void {
  if (length !== expected) {
    throw malformed(`${type} ${hex(tag)} has length ${length}, expected ${expected}`);
  }
}

function decodeAt(
  bytes: Uint8Array,
  view: DataView,
  offset: number,
  end: number,
  depth: number,
): { item: TtlvItem; next: number } {
  if (end - offset < HEADER_BYTES) throw malformed('truncated item header');
  const tag = (view.getUint8(offset) << 16) | view.getUint16(offset + 1);
  if (!isTag(tag)) throw malformed(`${hex(tag)} is not a kmip tag`);
  const type = TYPE_NAMES.get(view.getUint8(offset + 3));
  if (type === undefined) throw malformed(`unknown item type ${view.getUint8(offset + 3)}`);
  const length = view.getUint32(offset + 4);
  const at = offset + HEADER_BYTES;
  const next = at + padded(length);
  if (length > end - at || next > end) throw malformed(`item ${hex(tag)} overruns its parent`);
  for (let i = at + length; i < next; i++) {
    if (bytes[i] !== 0) throw malformed(`item ${hex(tag)} has non-zero padding`);
  }

  switch (type) {
    case 'structure': {
      if (depth >= MAX_TTLV_DEPTH) throw malformed(`nesting deeper than ${MAX_TTLV_DEPTH}`);
      const value: TtlvItem[] = [];
      let cursor = at;
      const stop = at + length;
      while (cursor < stop) {
        const child = decodeAt(bytes, view, cursor, stop, depth + 1);
        value.push(child.item);
        cursor = child.next;
      }
      return { item: { tag, type, value }, next };
    }
    case 'integer':
      expectLength(tag, type, length, 4);
      return { item: { tag, type, value: view.getInt32(at) }, next };
    case 'enumeration':
    case 'interval':
      expectLength(tag, type, length, 4);
      return { item: { tag, type, value: view.getUint32(at) }, next };
    case 'longInteger':
    case 'dateTime':
      expectLength(tag, type, length, 8);
      return { item: { tag, type, value: view.getBigInt64(at) }, next };
    case 'boolean': {
      expectLength(tag, type, length, 8);
      const raw = view.getBigUint64(at);
      if (raw > 1n) throw malformed(`boolean ${hex(tag)} is neither 0 nor 1`);
      return { item: { tag, type, value: raw === 1n }, next };
    }
    case 'bigInteger':
      if (length === 0 || length % 8 !== 0) {
        throw malformed(`big integer ${hex(tag)} has length ${length}, not a multiple of 8`);
      }
      return { item: { tag, type, value: copy(bytes, at, length) }, next };
    case 'textString':
      try {
        return {
          item: { tag, type, value: utf8Strict.decode(bytes.subarray(at, at + length)) },
          next,
        };
      } catch {
        throw malformed(`text string ${hex(tag)} is not utf-8`);
      }
    case 'byteString':
      return { item: { tag, type, value: copy(bytes, at, length) }, next };
  }
}

/**
 * Decodes exactly one item filling all of `bytes`.
 *
 * @throws {FieldsError} `PROVIDER_ERROR` when the bytes are not canonical TTLV or exceed the caps.
 */
export function decodeTtlv(bytes: Uint8Array): TtlvItem {
  if (bytes.length > MAX_TTLV_MESSAGE_BYTES) {
    throw malformed(
      `message of ${bytes.length} bytes exceeds the ${MAX_TTLV_MESSAGE_BYTES}-byte cap`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { item, next } = decodeAt(bytes, view, 0, bytes.length, 0);
  if (next !== bytes.length) throw malformed('trailing bytes after the message');
  return item;
}

/**
 * Reads the total size (header included) a message announces from its first 8 bytes, so a reader
 * knows how much to wait for; rejects sizes over the cap before any of the body arrives.
 */
export function ttlvMessageSize(header: Uint8Array): number {
  if (header.length < HEADER_BYTES) throw malformed('truncated message header');
  const view = new DataView(header.buffer, header.byteOffset, HEADER_BYTES);
  if (view.getUint8(3) !== TYPE_CODES.structure) throw malformed('message is not a structure');
  const length = view.getUint32(4);
  if (length > MAX_TTLV_MESSAGE_BYTES - HEADER_BYTES) {
    throw malformed(`message of ${length} bytes exceeds the ${MAX_TTLV_MESSAGE_BYTES}-byte cap`);
  }
  return HEADER_BYTES + padded(length);
}

// ---------------------------------------------------------------------------------------------
// Reading structures

/** The one child of `parent` with `tag`, which must have `type`; undefined when absent. */
export function optionalField<T extends TtlvType>(
  parent: TtlvStructure,
  tag: number,
  type: T,
): ItemOf<T> | undefined {
  let found: TtlvItem | undefined;
  for (const child of parent.value) {
    if (child.tag !== tag) continue;
    if (found !== undefined) throw malformed(`field ${hex(tag)} appears more than once`);
    found = child;
  }
  if (found === undefined) return undefined;
  if (found.type !== type)
    throw malformed(`field ${hex(tag)} is a ${found.type}, expected ${type}`);
  return found as ItemOf<T>;
}

/** Like {@link optionalField}, but a missing field is malformed. */
export function requiredField<T extends TtlvType>(
  parent: TtlvStructure,
  tag: number,
  type: T,
): ItemOf<T> {
  const found = optionalField(parent, tag, type);
  if (found === undefined) throw malformed(`field ${hex(tag)} is missing`);
  return found;
}

/** Every child of `parent` with `tag` (a repeated field), each of which must have `type`. */
export function repeatedField<T extends TtlvType>(
  parent: TtlvStructure,
  tag: number,
  type: T,
): ItemOf<T>[] {
  const out: ItemOf<T>[] = [];
  for (const child of parent.value) {
    if (child.tag !== tag) continue;
    if (child.type !== type)
      throw malformed(`field ${hex(tag)} is a ${child.type}, expected ${type}`);
    out.push(child as ItemOf<T>);
  }
  return out;
}

/** Requires `item` to be a structure with `tag`. */
export function asStructure(item: TtlvItem, tag: number): TtlvStructure {
  if (item.tag !== tag || item.type !== 'structure') {
    throw malformed(`expected structure ${hex(tag)}, got ${item.type} ${hex(item.tag)}`);
  }
  return item;
}
