// Generates blind-index-v1.json from spec/field-v1.md §1 and §6 with node:crypto only,
// independently of src/. Deterministic (keys from SHA-256 of labels). Kept forever: add, never
// change.
//
//   npx tsx packages/fields/test/vectors/generate-blind-index.ts
import { createHash, createHmac, hkdfSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const det = (label: string, n: number) =>
  createHash('sha256').update(`coffer-field-vectors/${label}`).digest().subarray(0, n);
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const lp = (s: string) => Buffer.concat([u16(Buffer.byteLength(s)), Buffer.from(s, 'utf8')]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

type Normalizer = 'trim' | 'casefold' | 'nfc';
interface Spec {
  tenant?: string;
  table: string;
  column: string;
  name: string;
  bits?: number;
  normalize?: Normalizer[];
  version?: number;
}
/** A typed input as field-v1.json writes values: bigint as decimal, date as ms, bytes as hex. */
type Input = { type: string; json: unknown };

// §1: B = HKDF-SHA256(I_w, salt = empty, info = "coffer/v1/blind-index" || 0x00 || lp(t) || lp(c) || lp(n), 32)
function indexKey(root: Buffer, s: Spec): Buffer {
  const info = Buffer.concat([
    Buffer.from('coffer/v1/blind-index\0'),
    lp(s.table),
    lp(s.column),
    lp(s.name),
  ]);
  return Buffer.from(hkdfSync('sha256', root, Buffer.alloc(0), info, 32));
}

const NORMALISE: Record<Normalizer, (x: string) => string> = {
  trim: (x) => x.trim(),
  casefold: (x) => x.toLowerCase(),
  nfc: (x) => x.normalize('NFC'),
};

// §3 without padding: type || 0x00 || value_bytes (strings normalised first, §6).
function encode(input: Input, s: Spec): Buffer {
  const tagged = (type: number, body: Buffer) => Buffer.concat([Buffer.from([type, 0]), body]);
  switch (input.type) {
    case 'string': {
      let v = input.json as string;
      for (const n of s.normalize ?? []) v = NORMALISE[n](v);
      return tagged(0x01, Buffer.from(v, 'utf8'));
    }
    case 'number': {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(input.json as number);
      return tagged(0x02, b);
    }
    case 'bigint':
      return tagged(0x03, Buffer.from(input.json as string));
    case 'boolean':
      return tagged(0x04, Buffer.from([input.json ? 1 : 0]));
    case 'date': {
      const b = Buffer.alloc(8);
      b.writeBigInt64BE(BigInt(input.json as number));
      return tagged(0x05, b);
    }
    case 'json':
      return tagged(0x06, Buffer.from(JSON.stringify(input.json)));
    case 'bytes':
      return tagged(0x07, Buffer.from(input.json as string, 'hex'));
    default:
      throw new Error(`unknown type ${input.type}`);
  }
}

// §6: message = tenant_flag || [lp(tenant)] || (uint32_be(len(part)) || part)*, then HMAC and
// truncation to `bits` (unused low bits of the last byte zero), lowercase hex.
function index(root: Buffer, s: Spec, inputs: Input[]): string {
  const tenant =
    s.tenant === undefined ? Buffer.from([0]) : Buffer.concat([Buffer.from([1]), lp(s.tenant)]);
  const parts = inputs.map((i) => encode(i, s));
  const message = Buffer.concat([tenant, ...parts.flatMap((p) => [u32(p.length), p])]);
  const tag = createHmac('sha256', indexKey(root, s)).update(message).digest();
  const bits = s.bits ?? 32;
  const out = tag.subarray(0, Math.ceil(bits / 8));
  if (bits % 8) out[out.length - 1]! &= (0xff << (8 - (bits % 8))) & 0xff;
  return out.toString('hex');
}

const keys = { 1: det('index-key-1', 32), 2: det('index-key-2', 32) };
const email: Spec = { table: 'users', column: 'email', name: 'email_eq' };
const str = (json: string): Input => ({ type: 'string', json });
const vectors: object[] = [];
const add = (id: string, spec: Spec, value: Input | Input[], expectIndex?: string) => {
  const inputs = Array.isArray(value) ? value : [value];
  const version = (spec.version ?? 2) as 1 | 2;
  vectors.push({
    id,
    spec,
    ...(Array.isArray(value) ? { values: value } : { value }),
    expect: expectIndex === undefined ? { index: index(keys[version], spec, inputs) } : expectIndex,
  });
};

add('string', email, str('alice@example.com'));
add('string-empty', email, str(''));
add('string-non-ascii', email, str('Zoë 🐈'));
add(
  'normalised',
  { ...email, normalize: ['trim', 'casefold', 'nfc'] },
  str('  Cafe\u0301@EXAMPLE.com '),
);
add(
  'normalised-same',
  { ...email, normalize: ['trim', 'casefold', 'nfc'] },
  str('caf\u00e9@example.com'),
);
add('not-normalised', email, str('  Cafe\u0301@EXAMPLE.com '));
add('tenant', { ...email, tenant: 'acme' }, str('alice@example.com'));
add('other-index-name', { ...email, name: 'email_other' }, str('alice@example.com'));
add('key-version-1', { ...email, version: 1 }, str('alice@example.com'));
add('bits-8', { ...email, bits: 8 }, str('alice@example.com'));
add('bits-13', { ...email, bits: 13 }, str('alice@example.com'));
add('bits-256', { ...email, bits: 256 }, str('alice@example.com'));
add('number', email, { type: 'number', json: -1.5 });
add('bigint', email, { type: 'bigint', json: '-12345678901234567890' });
add('boolean', email, { type: 'boolean', json: true });
add('date', email, { type: 'date', json: 1795752000000 });
add('json', email, { type: 'json', json: { a: [1, 2, { b: null }] } });
add('bytes', email, { type: 'bytes', json: '00ff07' });
add('compound', { ...email, normalize: ['casefold'] }, [str('ACME'), { type: 'number', json: 7 }]);
add('compound-one', email, [str('alice@example.com')]);
add('compound-shifted', email, [str('ab'), str('c')]);
add('compound-shifted-2', email, [str('a'), str('bc')]);
// Negative cases: refused as caller mistakes, nothing computed.
add('bits-7', { ...email, bits: 7 }, str('x'), 'INVALID_ARGUMENT');
add('bits-257', { ...email, bits: 257 }, str('x'), 'INVALID_ARGUMENT');
// Names are looked up as own properties: inherited ones are not normalisers.
for (const n of ['toString', 'constructor', 'lowercase'])
  add(`normaliser-${n}`, { ...email, normalize: [n as Normalizer] }, str('x'), 'INVALID_ARGUMENT');

const doc = {
  format: 'coffer blind index v1 (spec/field-v1.md §6)',
  generator: 'packages/fields/test/vectors/generate-blind-index.ts',
  indexKeys: { 1: keys[1].toString('hex'), 2: keys[2].toString('hex') },
  notes:
    'spec.version defaults to the newest (2); value/values as in field-v1.json (bigint decimal, date epoch ms, bytes hex); expect is { index } or an error code',
  vectors: vectors.map((v) =>
    typeof (v as { expect: unknown }).expect === 'string'
      ? { ...v, expect: { error: (v as { expect: string }).expect } }
      : v,
  ),
};
writeFileSync(
  join(dirname(fileURLToPath(import.meta.url)), 'blind-index-v1.json'),
  `${JSON.stringify(doc, null, 2)}\n`,
);
console.log(`blind-index-v1.json: ${vectors.length} vectors`);
